"""`POST /v1/projects/{project_id}/messages:send`, checked and answered like FCM HTTP v1.

Order of checks, as FCM: the bearer token, then the body, then (emulator only) injected
failures. Every request is counted as an attempt, whatever its answer, so tests can see
how often the sender — or the SDK behind its back — tried a token.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from geopush.emulator.errors import (
    FcmErrorCode,
    fcm_error_body,
    http_status,
    unauthenticated_body,
)
from geopush.emulator.state import STATE, EmulatorState, now_iso
from geopush.emulator.validation import Violation, check_send_body, target_of

# nginx's "no response" status: only our access log sees it, the client sees a closed socket.
_DROPPED_STATUS = 444
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"

log = logging.getLogger(__name__)


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _invalid_argument(violations: list[Violation]) -> web.Response:
    body = fcm_error_body(FcmErrorCode.INVALID_ARGUMENT, violations[0].description)
    body["error"]["details"].append(
        {
            "@type": _BAD_REQUEST_TYPE,
            "fieldViolations": [
                {"field": v.field, "description": v.description} for v in violations
            ],
        }
    )
    return web.json_response(body, status=400)


async def _read_json(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError:
        return None


def _fail(
    state: EmulatorState, target: str | None, code: FcmErrorCode, retry_after: int | None
) -> web.Response:
    state.record_attempt(target, http_status(code), code.value)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.json_response(fcm_error_body(code), status=http_status(code), headers=headers)


async def send_message(request: web.Request) -> web.StreamResponse:
    """Check, maybe fail on purpose, else record the message and answer its name."""
    state = request.app[STATE]
    project_id = request.match_info["project_id"]
    received_at = now_iso()
    body = await _read_json(request)
    target = target_of(body)

    token = _bearer(request)
    if token is None or not state.token_valid(token):
        state.record_attempt(target, 401, "UNAUTHENTICATED")
        log.info("send refused: missing or unknown bearer token")
        return web.json_response(unauthenticated_body(), status=401)

    violations = check_send_body(body)
    if violations:
        state.record_attempt(target, 400, FcmErrorCode.INVALID_ARGUMENT.value)
        log.info("send refused: %s: %s", violations[0].field, violations[0].description)
        return _invalid_argument(violations)

    injection = state.failures.next_injection(target) if target is not None else None
    if injection is not None:
        if injection.delay_s:
            await asyncio.sleep(injection.delay_s)
        if injection.drop:
            state.record_attempt(target, None, "DROPPED")
            log.info("send dropped on purpose")
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=_DROPPED_STATUS)
        if injection.error is not None:
            log.info("send failed on purpose: %s", injection.error.value)
            return _fail(state, target, injection.error, injection.retry_after)

    state.record_attempt(target, 200, None)
    if body.get("validate_only"):
        # FCM's dry run: checked, not delivered, and this fixed name.
        return web.json_response({"name": f"projects/{project_id}/messages/fake_message_id"})
    name = state.record_message(project_id, body["message"], received_at)
    # DEBUG only: one line per message would drown a demo's log, and it names the token.
    log.debug("message %s accepted for %s", name, target)
    return web.json_response({"name": name})
