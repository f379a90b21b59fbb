"""`X-Geopush-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">` (SPEC section 15).

The timestamp is inside the signed text so a receiver can refuse old replays; the body is
signed byte for byte as sent, so a receiver must verify the raw body before parsing it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Geopush-Signature"
# A receiver should refuse a signature older than this (what `verify` does by default).
DEFAULT_TOLERANCE_S = 300


def signature(secret: str, t: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `t.body` under `secret`."""
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, now: float | None = None) -> str:
    """The header value for `body`, signed now."""
    t = int(time.time() if now is None else now)
    return f"t={t},v1={signature(secret, t, body)}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None,
           tolerance_s: float = DEFAULT_TOLERANCE_S) -> bool:
    """True when `header` signs `body` with `secret` within `tolerance_s` of now.

    What a store's system does with each alert; the tests' receiver uses it.
    """
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - t) > tolerance_s:
        return False
    expected = signature(secret, t, body)
    return any(hmac.compare_digest(expected, v) for v in parts.get("v1", []))
