"""Attacks on the control API's SigV4 check, with requests signed by botocore (an independent
signer) and then tampered with. Called by tests/security.rs with:
ENDPOINT CONNECTION_ID ACCESS_KEY SECRET_KEY.

Prints one line per check; exits non-zero on the first failure.
"""
import hashlib
import hmac
import json
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

endpoint, conn_id, akid, secret = sys.argv[1:5]
creds = Credentials(akid, secret)


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}", flush=True)
    if not ok:
        sys.exit(1)


def signed(method, url, body, extra_headers=None, credentials=creds):
    """Headers botocore signs for this request (service execute-api)."""
    req = AWSRequest(method=method, url=url, data=body, headers=dict(extra_headers or {}))
    SigV4Auth(credentials, "execute-api", "eu-west-1").add_auth(req)
    return dict(req.headers.items())


def send(method, url, body, headers):
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


post_url = f"{endpoint}/@connections/{conn_id}"
batch_url = f"{endpoint}/@batch"

# The baseline: a signed push is accepted.
h = signed("POST", post_url, b"harmless")
status, _, _ = send("POST", post_url, b"harmless", h)
check("signed push accepted", status == 200, str(status))

# Item 1: a captured request replayed with another body, its hash header claiming the original.
original_hash = hashlib.sha256(b"harmless").hexdigest()
replay = dict(h, **{"x-amz-content-sha256": original_hash})
status, body, _ = send("POST", post_url, b"evil", replay)
check("replayed push with another body refused", status == 403, f"{status} {body}")
status, body, _ = send("POST", post_url, b"evil", h)
check("replayed push without the hash header refused", status == 403, f"{status} {body}")

# The header, when sent and right, is fine (the JS SDK v3 sends it).
hh = signed("POST", post_url, b"with hash", {"x-amz-content-sha256": hashlib.sha256(b"with hash").hexdigest()})
status, body, _ = send("POST", post_url, b"with hash", hh)
check("signed push with a correct x-amz-content-sha256 accepted", status == 200, f"{status} {body}")

# UNSIGNED-PAYLOAD: botocore signs with that literal instead of the body's hash.
hu = signed("POST", post_url, b"unsigned", {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
status, body, _ = send("POST", post_url, b"unsigned", hu)
check("UNSIGNED-PAYLOAD refused", status == 403, f"{status} {body}")

# The same replay against /@batch: one harmless batch must not become any batch.
harmless = json.dumps([{"channel": "nobody-listens", "data": "hi"}]).encode()
hb = signed("POST", batch_url, harmless)
status, _, _ = send("POST", batch_url, harmless, hb)
check("signed batch accepted", status == 200, str(status))
evil = json.dumps([{"connectionId": conn_id, "data": "pwned"}]).encode()
status, body, _ = send("POST", batch_url, evil, dict(hb, **{"x-amz-content-sha256": hashlib.sha256(harmless).hexdigest()}))
check("replayed batch with another body refused", status == 403, f"{status} {body}")


# Item 3: requests signed correctly but without host or x-amz-date among the signed headers,
# or with a malformed scope date, signed by hand (botocore always signs both).
def hand_signed(signed_names, scope_date=None):
    now = datetime.now(timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = now.strftime("%Y%m%d") if scope_date is None else scope_date
    host = endpoint.split("//", 1)[1].split("/", 1)[0]
    path = "/" + endpoint.split("//", 1)[1].split("/", 1)[1] + f"/@connections/{conn_id}"
    headers = {"host": host, "x-amz-date": amz_date}
    names = sorted(signed_names)
    canonical_headers = "".join(f"{n}:{headers[n]}\n" for n in names)
    canonical = "\n".join(["POST", path.replace("@", "%40"), "", canonical_headers, ";".join(names),
                           hashlib.sha256(b"x").hexdigest()])
    scope = f"{date}/eu-west-1/execute-api/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (date, "eu-west-1", "execute-api", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    auth = f"AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders={';'.join(names)}, Signature={sig}"
    return {"Authorization": auth, "X-Amz-Date": amz_date}


status, body, _ = send("POST", post_url, b"x", hand_signed(["host", "x-amz-date"]))
check("hand-signed baseline accepted", status == 200, f"{status} {body}")
status, body, _ = send("POST", post_url, b"x", hand_signed(["x-amz-date"]))
check("host not signed refused", status == 403, f"{status} {body}")
status, body, _ = send("POST", post_url, b"x", hand_signed(["host"]))
check("x-amz-date not signed refused", status == 403, f"{status} {body}")
status, body, _ = send("POST", post_url, b"x", hand_signed(["host", "x-amz-date"], scope_date=""))
check("empty scope date refused", status == 403, f"{status} {body}")
status, body, _ = send("POST", post_url, b"x", hand_signed(["host", "x-amz-date"], scope_date="2026-1-1"))
check("malformed scope date refused", status == 403, f"{status} {body}")

# Unknown keys and wrong secrets read the same (no key enumeration).
wrong = signed("POST", post_url, b"x", credentials=Credentials(akid, "wrong-secret"))
s1, b1, _ = send("POST", post_url, b"x", wrong)
unknown = signed("POST", post_url, b"x", credentials=Credentials("AKIDNOSUCHKEY", secret))
s2, b2, _ = send("POST", post_url, b"x", unknown)
check("unknown key and wrong secret answer alike", s1 == s2 == 403 and b1 == b2, f"{s1} {b1} / {s2} {b2}")
