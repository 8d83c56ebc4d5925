#!/usr/bin/env python3
"""A tiny Gangway backend (Python standard library only), for the README walkthrough.

Receives Gangway's webhook calls (AWS Lambda-proxy WebSocket events), checks each call's
X-Gangway-Signature, prints the event, and answers:
  POST /connect     200 with {"context": {...}} (401 when the query has token=bad)
  POST /message     200 with a JSON reply (sent back to the client on two-way routes)
  POST /disconnect  200

Run: WEBHOOK_SECRET=change-me python3 examples/backend.py   (listens on 127.0.0.1:3000)
BACKEND_HOST sets the address it binds (default 127.0.0.1; deploy/compose.yaml uses 0.0.0.0).
"""
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ.get("WEBHOOK_SECRET", "change-me").encode()
HOST = os.environ.get("BACKEND_HOST", "127.0.0.1")
TOLERANCE_SECS = 300


def verify(header: str, body: bytes) -> bool:
    """Checks `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > TOLERANCE_SECS:
        return False
    expected = hmac.new(SECRET, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not verify(self.headers.get("X-Gangway-Signature", ""), body):
            self.answer(401, {"message": "bad signature"})
            return
        event = json.loads(body)
        ctx = event["requestContext"]
        print(f"{ctx['eventType']:<10} route={ctx['routeKey']:<12} connection={ctx['connectionId']}"
              f" body={event.get('body')!r}", flush=True)
        if self.path == "/connect":
            query = event.get("queryStringParameters") or {}
            if query.get("token") == "bad":
                self.answer(401, {"message": "go away"})
            else:
                self.answer(200, {"context": {"principalId": query.get("user", "anonymous")}})
        elif self.path == "/message":
            user = (ctx.get("authorizer") or {}).get("principalId", "?")
            self.answer(200, {"reply": f"hello {user}", "youSent": event.get("body")})
        else:
            self.answer(200, {})

    def answer(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    print(f"backend listening on http://{HOST}:3000", flush=True)
    ThreadingHTTPServer((HOST, 3000), Handler).serve_forever()
