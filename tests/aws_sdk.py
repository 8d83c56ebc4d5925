"""Drives a running Gangway node with the real AWS clients (boto3 and the AWS CLI).

Called by tests/aws_sdk.rs with: ENDPOINT CONNECTION_ID GONE_ID ACCESS_KEY SECRET_KEY.
Prints one line per check; exits non-zero on the first failure.
"""
import json
import os
import subprocess
import sys

import boto3
import botocore.exceptions

endpoint, conn_id, gone_id, akid, secret = sys.argv[1:6]


def client(secret_key=secret, key_id=akid):
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret_key,
    )


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}", flush=True)
    if not ok:
        sys.exit(1)


c = client()
r = c.post_to_connection(ConnectionId=conn_id, Data=b"from boto3")
check("boto3 post_to_connection", r["ResponseMetadata"]["HTTPStatusCode"] == 200)

r = c.get_connection(ConnectionId=conn_id)
check("boto3 get_connection", r["Identity"]["SourceIp"] == "127.0.0.1" and "ConnectedAt" in r, str(r.get("Identity")))

try:
    c.post_to_connection(ConnectionId=gone_id, Data=b"x")
    check("boto3 GoneException", False, "no exception")
except c.exceptions.GoneException as e:
    check("boto3 GoneException", e.response["ResponseMetadata"]["HTTPStatusCode"] == 410)

try:
    client(secret_key="wrong-secret").post_to_connection(ConnectionId=conn_id, Data=b"x")
    check("boto3 wrong secret -> ForbiddenException", False, "accepted")
except botocore.exceptions.ClientError as e:
    check("boto3 wrong secret -> ForbiddenException", e.response["Error"]["Code"] == "ForbiddenException", str(e))

try:
    client(key_id="AKIDUNKNOWN").get_connection(ConnectionId=conn_id)
    check("boto3 unknown key -> ForbiddenException", False, "accepted")
except botocore.exceptions.ClientError as e:
    check("boto3 unknown key -> ForbiddenException", e.response["Error"]["Code"] == "ForbiddenException", str(e))

aws = os.path.join(os.path.dirname(sys.executable), "aws")
env = dict(os.environ, AWS_ACCESS_KEY_ID=akid, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION="us-east-1")
p = subprocess.run([aws, "apigatewaymanagementapi", "post-to-connection", "--endpoint-url", endpoint,
                    "--connection-id", conn_id, "--data", "from cli"], env=env, capture_output=True, text=True)
check("aws cli post-to-connection", p.returncode == 0, p.stderr.strip())
p = subprocess.run([aws, "apigatewaymanagementapi", "get-connection", "--endpoint-url", endpoint,
                    "--connection-id", conn_id], env=env, capture_output=True, text=True)
check("aws cli get-connection", p.returncode == 0 and json.loads(p.stdout)["Identity"]["SourceIp"] == "127.0.0.1", p.stderr.strip())
p = subprocess.run([aws, "apigatewaymanagementapi", "post-to-connection", "--endpoint-url", endpoint,
                    "--connection-id", gone_id, "--data", "x"], env=env, capture_output=True, text=True)
check("aws cli GoneException", p.returncode == 255 and "GoneException" in p.stderr, p.stderr.strip())
bad_env = dict(env, AWS_SECRET_ACCESS_KEY="wrong-secret")
p = subprocess.run([aws, "apigatewaymanagementapi", "post-to-connection", "--endpoint-url", endpoint,
                    "--connection-id", conn_id, "--data", "x"], env=bad_env, capture_output=True, text=True)
check("aws cli wrong secret refused", p.returncode != 0 and "ForbiddenException" in p.stderr, p.stderr.strip())

r = c.delete_connection(ConnectionId=conn_id)
check("boto3 delete_connection", r["ResponseMetadata"]["HTTPStatusCode"] == 204)
