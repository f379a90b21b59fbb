"""The OAuth2 token endpoint a service account's `token_uri` points at (RFC 7523 grant).

google-auth's service-account credentials POST a form `grant_type=urn:ietf:params:oauth:
grant-type:jwt-bearer&assertion=<JWT>`; the JWT is signed with the account's private key.
The emulator does not check the signature (it never saw the public key) but does check the
JWT is well formed and names an issuer, an audience and a scope, so a credentials file that
would never work against Google fails here too.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from typing import Any

from aiohttp import web

from geopush.emulator.state import STATE

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Clock skew allowed between the signer and the emulator, as Google allows.
_SKEW_S = 300

log = logging.getLogger(__name__)


class InvalidAssertion(ValueError):
    """The JWT assertion is not one Google would accept (the reason is the message)."""


def _b64url_json(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidAssertion(f"JWT {what} is not base64url JSON") from exc
    if not isinstance(value, dict):
        raise InvalidAssertion(f"JWT {what} is not a JSON object")
    return value


def decode_assertion(assertion: str, now: float) -> dict[str, Any]:
    """The claims of a JWT-bearer assertion; InvalidAssertion if it is malformed or expired."""
    parts = assertion.split(".")
    if len(parts) != 3 or not all(parts):
        raise InvalidAssertion("assertion is not a signed JWT (header.payload.signature)")
    header = _b64url_json(parts[0], "header")
    if not isinstance(header.get("alg"), str) or header["alg"] == "none":
        raise InvalidAssertion("JWT header has no signing algorithm")
    claims = _b64url_json(parts[1], "payload")
    for claim in ("iss", "aud", "scope"):
        if not isinstance(claims.get(claim), str) or not claims[claim]:
            raise InvalidAssertion(f"JWT has no {claim} claim")
    for claim in ("iat", "exp"):
        if not isinstance(claims.get(claim), int | float):
            raise InvalidAssertion(f"JWT has no numeric {claim} claim")
    if claims["exp"] < now - _SKEW_S:
        raise InvalidAssertion("JWT has expired")
    if claims["iat"] > now + _SKEW_S:
        raise InvalidAssertion("JWT is issued in the future")
    return claims


def _oauth_error(error: str, description: str) -> web.Response:
    # RFC 6749 section 5.2: google-auth turns this into RefreshError with the description.
    return web.json_response({"error": error, "error_description": description}, status=400)


async def token_endpoint(request: web.Request) -> web.Response:
    """`POST /token`: exchange a service-account JWT for an access token."""
    if request.content_type != "application/x-www-form-urlencoded":
        return _oauth_error("invalid_request", "expected a form-encoded body")
    form = await request.post()
    if form.get("grant_type") != JWT_BEARER_GRANT:
        return _oauth_error("unsupported_grant_type", f"grant_type must be {JWT_BEARER_GRANT}")
    assertion = form.get("assertion")
    if not isinstance(assertion, str):
        return _oauth_error("invalid_request", "missing assertion")
    try:
        claims = decode_assertion(assertion, time.time())
    except InvalidAssertion as exc:
        log.info("token request refused: %s", exc)
        return _oauth_error("invalid_grant", str(exc))
    state = request.app[STATE]
    token = state.issue_token(claims["iss"], claims["scope"])
    log.info("access token issued")
    log.debug("access token %s issued to %s", token, claims["iss"])
    return web.json_response(
        {"access_token": token, "expires_in": state.token_ttl_s, "token_type": "Bearer"}
    )
