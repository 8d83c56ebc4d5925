"""A local stand-in for the AWS Lambda Invoke API, for tests/integration/aws_lambda.rs.

    lambda_endpoint.py ACCESS_KEY SECRET_KEY REGION [SESSION_TOKEN]

Prints `listening PORT` once it serves on 127.0.0.1. Every call must carry a SigV4 signature
for service `lambda` in REGION by ACCESS_KEY, which botocore recomputes from the request as
received (method, path, query, signed headers, body); otherwise it answers as Lambda does
(403 `InvalidSignatureException` / `UnrecognizedClientException`). It answers
`POST /2015-03-31/functions/{FunctionName}/invocations[?Qualifier=]` like Lambda: 404
`ResourceNotFoundException` for unknown functions, the handler's return value as the payload,
`X-Amz-Function-Error: Unhandled` with Lambda's error payload when it raises.

The functions are the AWS WebSocket chat sample's handlers (onconnect, ondisconnect,
sendmessage) in their Lambda shape, unchanged in what they answer, calling back through boto3's
`apigatewaymanagementapi` at the endpoint the test registers (`POST /_control` with the
control URL), plus a few for edge cases. `GET /_calls` lists every invocation seen (function,
qualifier, route key, connection id, whether its signature verified).

It also hands out the same credentials (with SESSION_TOKEN) the ways the SDK's credential
chain fetches them: STS `AssumeRoleWithWebIdentity` at `POST /` (for `AWS_ENDPOINT_URL_STS`;
the token must be `web-identity-token`) and the instance metadata service (IMDSv2) under
`/latest/` (for `AWS_EC2_METADATA_SERVICE_ENDPOINT`).
"""
import datetime
import hmac
import json
import sys
import threading
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS_KEY, SECRET_KEY, REGION = sys.argv[1:4]
SESSION_TOKEN = sys.argv[4] if len(sys.argv) > 4 else None
ACCOUNT = "123456789012"

lock = threading.Lock()
calls = []
connections = set()
control = {"url": None}


# --- the chat sample's handlers (Lambda proxy results, as on AWS) ---------------------------

def on_connect(event, context):
    if (event.get("queryStringParameters") or {}).get("who") == "mallory":
        return {"statusCode": 403, "body": "Forbidden."}
    with lock:
        connections.add(event["requestContext"]["connectionId"])
    return {"statusCode": 200, "body": "Connected."}


def on_disconnect(event, context):
    with lock:
        connections.discard(event["requestContext"]["connectionId"])
    return {"statusCode": 200, "body": "Disconnected."}


def send_message(event, context):
    data = json.loads(event["body"])["data"]
    api = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=control["url"],
        region_name=REGION,
        aws_access_key_id="unused",
        aws_secret_access_key="unused",
    )
    with lock:
        targets = sorted(connections)
    for connection_id in targets:
        try:
            api.post_to_connection(ConnectionId=connection_id, Data=data.encode())
        except api.exceptions.GoneException:
            with lock:
                connections.discard(connection_id)
    return {"statusCode": 200, "body": "Data sent."}


def echo(event, context):
    return {"statusCode": 200, "body": f"{event['body']} ({context['qualifier']})"}


def boom(event, context):
    raise KeyError("body")


def nothing(event, context):
    return None


FUNCTIONS = {
    "chat-connect": on_connect,
    "chat-disconnect": on_disconnect,
    "chat-send": send_message,
    "echo": echo,
    "boom": boom,
    "nothing": nothing,
}


# --- SigV4, checked with botocore ------------------------------------------------------------

def verify(method, raw_path, headers, body):
    """`headers` has lowercase names. None when the request is signed by ACCESS_KEY/SECRET_KEY for lambda in REGION, else
    (error type, message)."""
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return ("MissingAuthenticationTokenException", "Missing Authentication Token")
    fields = dict(
        part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(",")
    )
    akid, date, region, service, _ = fields["Credential"].split("/")
    if akid != ACCESS_KEY:
        return ("UnrecognizedClientException", "The security token included in the request is invalid.")
    if service != "lambda" or region != REGION:
        return ("InvalidSignatureException", f"Credential should be scoped to {REGION}/lambda.")
    if SESSION_TOKEN is not None and headers.get("x-amz-security-token") != SESSION_TOKEN:
        return ("UnrecognizedClientException", "The security token included in the request is invalid.")
    amz_date = headers.get("x-amz-date", "")
    stamp = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    if abs((datetime.datetime.now(datetime.timezone.utc) - stamp).total_seconds()) > 300:
        return ("InvalidSignatureException", "Signature expired.")
    signed = fields["SignedHeaders"].split(";")
    request = AWSRequest(
        method=method,
        url=f"http://{headers['host']}{raw_path}",
        data=body,
        headers={name: headers[name] for name in signed if name in headers},
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN), "lambda", REGION)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, fields["Signature"]):
        return ("InvalidSignatureException", "The request signature we calculated does not match the signature you provided.")
    return None


# --- the Invoke API -------------------------------------------------------------------------

def function_and_qualifier(raw_path):
    """(name, qualifier) of an Invoke path, accepting names, partial and full ARNs."""
    parts = raw_path.split("?", 1)
    segments = parts[0].split("/")
    if len(segments) != 5 or segments[1] != "2015-03-31" or segments[2] != "functions" or segments[4] != "invocations":
        return None
    name = urllib.parse.unquote(segments[3])
    query = urllib.parse.parse_qs(parts[1]) if len(parts) > 1 else {}
    qualifier = query.get("Qualifier", [None])[0]
    pieces = name.split(":")
    if pieces[0] == "arn":
        pieces = pieces[6:]
    elif len(pieces) >= 3 and pieces[1] == "function":
        pieces = pieces[2:]
    if len(pieces) == 2:
        qualifier = qualifier or pieces[1]
    return pieces[0], qualifier or "$LATEST"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, kind, message):
        self.answer(status, {"Type": "User", "message": message}, [("x-amzn-ErrorType", kind)])

    def do_PUT(self):
        # IMDSv2: a session token first.
        if self.path == "/latest/api/token":
            self.answer(200, b"imds-session-token", [("X-aws-ec2-metadata-token-ttl-seconds", "21600")])
        else:
            self.error(404, "NotFound", "not found")

    def do_GET(self):
        imds = "/latest/meta-data/iam/security-credentials/"
        if self.path == "/_calls":
            with lock:
                self.answer(200, calls)
        elif self.path.startswith("/latest/") and self.headers.get("x-aws-ec2-metadata-token") != "imds-session-token":
            self.answer(401, b"")
        elif self.path == imds:
            self.answer(200, b"gangway-role")
        elif self.path == imds + "gangway-role":
            self.answer(200, {
                "Code": "Success",
                "LastUpdated": now_iso(0),
                "Type": "AWS-HMAC",
                "AccessKeyId": ACCESS_KEY,
                "SecretAccessKey": SECRET_KEY,
                "Token": SESSION_TOKEN,
                "Expiration": now_iso(3600),
            })
        else:
            self.error(404, "UnknownOperationException", "Unknown operation")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/_control":
            control["url"] = body.decode()
            self.answer(200, {})
            return
        if self.path == "/":
            self.assume_role_with_web_identity(urllib.parse.parse_qs(body.decode()))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        denied = verify("POST", self.path, headers, body)
        target = function_and_qualifier(self.path)
        event = json.loads(body) if body else {}
        context = event.get("requestContext", {}) if isinstance(event, dict) else {}
        with lock:
            calls.append({
                "function": target[0] if target else None,
                "qualifier": target[1] if target else None,
                "routeKey": context.get("routeKey"),
                "connectionId": context.get("connectionId"),
                "signature": "ok" if denied is None else denied[0],
            })
        if denied is not None:
            self.error(403, denied[0], denied[1])
            return
        if target is None:
            self.error(404, "UnknownOperationException", "Unknown operation")
            return
        name, qualifier = target
        function = FUNCTIONS.get(name)
        if function is None:
            self.error(404, "ResourceNotFoundException",
                       f"Function not found: arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")
            return
        executed = [("X-Amz-Executed-Version", "$LATEST" if qualifier == "$LATEST" else "1")]
        try:
            result = function(event, {"qualifier": qualifier})
        except Exception as e:  # the function's own failure, reported as Lambda does
            self.answer(200, {
                "errorMessage": str(e),
                "errorType": type(e).__name__,
                "stackTrace": traceback.format_tb(e.__traceback__),
            }, executed + [("X-Amz-Function-Error", "Unhandled")])
            return
        self.answer(200, json.dumps(result).encode(), executed)


    def assume_role_with_web_identity(self, form):
        if form.get("Action") != ["AssumeRoleWithWebIdentity"] or form.get("WebIdentityToken") != ["web-identity-token"]:
            xml = ('<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>'
                   '<Message>bad token</Message></Error><RequestId>1</RequestId></ErrorResponse>')
            self.send_response(400)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(xml)))
            self.end_headers()
            self.wfile.write(xml.encode())
            return
        xml = f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>{ACCESS_KEY}</AccessKeyId>
      <SecretAccessKey>{SECRET_KEY}</SecretAccessKey>
      <SessionToken>{SESSION_TOKEN}</SessionToken>
      <Expiration>{now_iso(3600)}</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::{ACCOUNT}:assumed-role/gangway/session</Arn>
      <AssumedRoleId>AROAGANGWAY:session</AssumedRoleId>
    </AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(xml)))
        self.end_headers()
        self.wfile.write(xml)


def now_iso(offset_secs):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_secs)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
