"""Real clients against a Gangway node serving TLS on both listeners, trusting the test's own CA
(tests/integration/tls.rs runs it): Python `websockets` over wss:// with an SSL context, boto3's
apigatewaymanagementapi with `verify=`, and the AWS CLI with `--ca-bundle`. With a client
certificate given, the control listener requires it: a call without one must fail.

Usage: tls_clients.py WSS_URL HTTPS_ENDPOINT CA_FILE [CLIENT_CERT CLIENT_KEY]
Prints one line per check; exits non-zero on the first failure.
"""
import asyncio
import json
import os
import ssl
import subprocess
import sys
import http.client
import urllib.parse

import boto3
import botocore.config
import websockets


def main():
    wss, endpoint, ca = sys.argv[1:4]
    client_cert = sys.argv[4:6] if len(sys.argv) >= 6 else None
    context = ssl.create_default_context(cafile=ca)

    async def session():
        async with websockets.connect(wss, ssl=context) as ws:
            await ws.send("hello over wss")
            reply = await ws.recv()
            assert reply == "hello over wss", reply
            print("ok   websockets over wss:// with the test CA")
            ids = list_ids(endpoint, ca, client_cert)
            assert len(ids) == 1, ids
            conn = ids[0]
            cfg = botocore.config.Config(client_cert=tuple(client_cert) if client_cert else None)
            c = boto3.client(
                "apigatewaymanagementapi",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id="AKIDTLS",
                aws_secret_access_key="tls-secret-key",
                verify=ca,
                config=cfg,
            )
            c.post_to_connection(ConnectionId=conn, Data=b"pushed over https")
            assert await ws.recv() == "pushed over https"
            info = c.get_connection(ConnectionId=conn)
            assert info["Identity"]["SourceIp"] == "127.0.0.1", info
            print("ok   boto3 over https:// with verify=<test CA>")
            if not client_cert:
                env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDTLS",
                           AWS_SECRET_ACCESS_KEY="tls-secret-key", AWS_DEFAULT_REGION="us-east-1")
                out = subprocess.run(
                    [sys.executable, "-m", "awscli", "apigatewaymanagementapi", "get-connection",
                     "--connection-id", conn, "--endpoint-url", endpoint, "--ca-bundle", ca],
                    env=env, capture_output=True, text=True, timeout=60)
                assert out.returncode == 0, out.stderr
                assert json.loads(out.stdout)["Identity"]["SourceIp"] == "127.0.0.1"
                print("ok   the AWS CLI over https:// with --ca-bundle")

    asyncio.run(session())
    if client_cert:
        try:
            list_ids(endpoint, ca, None)
        except (ssl.SSLError, ConnectionError, OSError):
            print("ok   the control listener refuses a caller without a client certificate")
        else:
            raise AssertionError("a caller without a client certificate was let in")


def list_ids(endpoint, ca, client_cert):
    """GET /@connections over TLS (SigV4 is not needed for the check: a bearer token is set)."""
    u = urllib.parse.urlparse(endpoint)
    context = ssl.create_default_context(cafile=ca)
    if client_cert:
        context.load_cert_chain(*client_cert)
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=context, timeout=10)
    conn.request("GET", "/@connections", headers={"Authorization": "Bearer tls-token-123"})
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, (r.status, body)
    return [i["connectionId"] for i in json.loads(body)["items"]]


if __name__ == "__main__":
    main()
