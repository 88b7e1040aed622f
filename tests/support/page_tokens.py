"""Page tokens for the gRPC test scripts (common/include/common/page_token.h): MAC'd
ones under the tests' own PAGE_TOKEN_KEY, changed ones, and the old unMAC'd format.
grpc_support.py re-exports every name, so the scripts use them from there.
"""
import base64
import hashlib
import hmac
import uuid

# A key the tests give the services they start (PAGE_TOKEN_KEY), so they can MAC
# tokens of their own: what a leaked key or a server bug would let a client send.
PAGE_TOKEN_KEY = "5ea7c0ffee" * 6 + "0123"  # 32 bytes as hex
POS_MAX = 253402300799999999  # PAGE_TOKEN_POS_MAX


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def page_token(kind, scope, pos, row_id=None, key=PAGE_TOKEN_KEY, version=1, flags=None):
    """A page token MAC'd under `key` (hex) as page_token.h documents, with any fields."""
    k = bytes.fromhex(key)
    body = bytes([version, (1 if row_id else 0) if flags is None else flags])
    body += (pos & (1 << 64) - 1).to_bytes(8, "big")
    if row_id:
        body += uuid.UUID(row_id).bytes
    body += hmac.new(k, b"scope\0" + kind.encode() + b"\0" + scope.encode(),
                     hashlib.sha256).digest()[:16]
    mac = hmac.new(k, b"shop page token\0" + kind.encode() + b"\0" + body, hashlib.sha256)
    return b64url(body + mac.digest())


def tampered(token):
    """token with each of its bytes changed in turn (one low bit flipped)."""
    raw = unb64url(token)
    for i in range(len(raw)):
        yield b64url(raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1:])


def plain_forgeries(row_id, scope):
    """The tokens of the old, unMAC'd format (base64url of "<µs>:<id>:<scope>"), the
    issue's 2^63-1 among them."""
    for us in ("9223372036854775807", "-9223372036854775808", "1714564800123456", "1e300"):
        yield b64url(("%s:%s:%s" % (us, row_id, scope)).encode())
