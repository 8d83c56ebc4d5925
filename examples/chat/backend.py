#!/usr/bin/env python3
"""The chat example's backend (Python standard library only): AWS's WebSocket chat sample
(onconnect / sendmessage / ondisconnect) on Gangway, plus the browser page.

  GET  /                 the chat page (index.html), told where the gateway listens
  POST /connect          $connect: a name from ?name=, the connection joins channel "chat"
                         (in the answer), everyone else is told "<name> joined"
  POST /sendmessage      {"action": "sendmessage", "data": "..."}: published to "chat"
  POST /disconnect       $disconnect: everyone is told "<name> left"

Every webhook call's X-Gangway-Signature is checked. Where AWS's sample keeps connection ids
in DynamoDB and posts to each, Gangway's channel does the fan-out: one publish per message.

Environment: WEBHOOK_SECRET, GANGWAY_CONTROL_URL (http://127.0.0.1:9090), GANGWAY_TOKEN,
GANGWAY_WS_URL (ws://127.0.0.1:8080/), CHAT_LISTEN (127.0.0.1:3001).
"""
import hashlib
import hmac
import json
import os
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ.get("WEBHOOK_SECRET", "chat-example-secret").encode()
CONTROL = os.environ.get("GANGWAY_CONTROL_URL", "http://127.0.0.1:9090").rstrip("/")
TOKEN = os.environ.get("GANGWAY_TOKEN", "chat-example-token")
WS_URL = os.environ.get("GANGWAY_WS_URL", "ws://127.0.0.1:8080/")
LISTEN = os.environ.get("CHAT_LISTEN", "127.0.0.1:3001")
CHANNEL = "chat"
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "index.html")

names = {}  # connection id -> name (AWS's sample keeps this in DynamoDB)
names_lock = threading.Lock()


def verify(header: str, body: bytes) -> bool:
    """Checks `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` within five minutes."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > 300:
        return False
    expected = hmac.new(SECRET, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def publish(message: dict) -> None:
    """Sends `message` to every connection in the chat channel (one request, Gangway fans out)."""
    req = urllib.request.Request(
        f"{CONTROL}/@channels/{CHANNEL}",
        data=json.dumps(message).encode(),
        headers={"Authorization": f"Bearer {TOKEN}"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        r.read()


def clean_name(raw) -> str:
    name = "".join(c for c in str(raw or "") if c.isprintable()).strip()[:32]
    return name or "anonymous"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0] not in ("/", "/index.html"):
            self.answer(404, b"not found", "text/plain")
            return
        with open(PAGE, "rb") as f:
            page = f.read().replace(b"__GANGWAY_WS_URL__", json.dumps(WS_URL).encode())
        self.answer(200, page, "text/html; charset=utf-8")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not verify(self.headers.get("X-Gangway-Signature", ""), body):
            self.answer(401, b'{"message": "bad signature"}')
            return
        event = json.loads(body)
        conn = event["requestContext"]["connectionId"]
        if self.path == "/connect":
            name = clean_name((event.get("queryStringParameters") or {}).get("name"))
            with names_lock:
                names[conn] = name
            publish({"type": "join", "name": name})
            self.answer(200, json.dumps({"channels": [CHANNEL]}).encode())
        elif self.path == "/sendmessage":
            try:
                text = str(json.loads(event.get("body") or "{}").get("data", ""))[:2000]
            except (ValueError, AttributeError):
                text = ""
            with names_lock:
                name = names.get(conn, "anonymous")
            if text:
                publish({"type": "message", "name": name, "text": text})
            self.answer(200, b"{}")
        elif self.path == "/disconnect":
            with names_lock:
                name = names.pop(conn, None)
            if name is not None:
                publish({"type": "leave", "name": name})
            self.answer(200, b"{}")
        else:
            self.answer(404, b'{"message": "no such route"}')

    def answer(self, status, data: bytes, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    host, port = LISTEN.rsplit(":", 1)
    print(f"chat backend on http://{LISTEN}/ (gateway {WS_URL}, control {CONTROL})", flush=True)
    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()
