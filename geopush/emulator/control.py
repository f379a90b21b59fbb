"""The emulator's own API, for tests and demos: what was received, and what should fail.

GET    /messages[?token=]   {"messages": [{name, project_id, received_at, message}], "count"}
DELETE /messages            forget messages and attempts
GET    /attempts[?token=]   {"attempts": [{token, at, status, error}], "count"}
GET    /failures            {"failures": [runtime rules with their remaining counts]}
POST   /failures            {"token", "error", "times", "retry_after", "delay_s", "drop"}
DELETE /failures            forget runtime rules, restart prefix counts
POST   /reset               all of the above (issued OAuth tokens survive)
GET    /healthz             {"status": "ok"}
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from geopush.emulator.failures import FailureRule, RuleError, parse_code
from geopush.emulator.state import STATE


def _bad_rule(message: str) -> web.Response:
    return web.json_response({"error": {"code": "invalid_rule", "message": message}}, status=400)


async def list_messages(request: web.Request) -> web.Response:
    messages = request.app[STATE].messages(request.query.get("token"))
    return web.json_response({"messages": messages, "count": len(messages)})


async def clear_messages(request: web.Request) -> web.Response:
    request.app[STATE].clear_messages()
    return web.Response(status=204)


async def list_attempts(request: web.Request) -> web.Response:
    attempts = request.app[STATE].attempts(request.query.get("token"))
    return web.json_response({"attempts": [a.as_json() for a in attempts], "count": len(attempts)})


def _optional_number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(f"{key} must be a number or null")
    return value


def rule_from_json(body: object) -> tuple[str, FailureRule]:
    """The token and rule a `POST /failures` body asks for; RuleError saying what is wrong."""
    if not isinstance(body, dict):
        raise RuleError("body must be a JSON object")
    unknown = set(body) - {"token", "error", "times", "retry_after", "delay_s", "drop"}
    if unknown:
        raise RuleError(f"unknown fields: {', '.join(sorted(unknown))}")
    token = body.get("token")
    if not isinstance(token, str) or not token:
        raise RuleError('token must be a non-empty string ("*" for every token)')
    error = body.get("error")
    if error is not None and not isinstance(error, str):
        raise RuleError("error must be a string or null")
    times = _optional_number(body, "times")
    retry_after = _optional_number(body, "retry_after")
    if (times is not None and times != int(times)) or (
        retry_after is not None and retry_after != int(retry_after)
    ):
        raise RuleError("times and retry_after must be whole numbers")
    drop = body.get("drop", False)
    if not isinstance(drop, bool):
        raise RuleError("drop must be a boolean")
    rule = FailureRule(
        error=parse_code(error) if error else None,
        times=int(times) if times is not None else None,
        retry_after=int(retry_after) if retry_after is not None else None,
        delay_s=_optional_number(body, "delay_s") or 0.0,
        drop=drop,
    )
    return token, rule


async def add_failure(request: web.Request) -> web.Response:
    try:
        token, rule = rule_from_json(await request.json())
    except ValueError as exc:  # RuleError, or a body that is not JSON
        return _bad_rule(str(exc))
    request.app[STATE].failures.set_rule(token, rule)
    return web.json_response({"status": "ok"}, status=201)


async def list_failures(request: web.Request) -> web.Response:
    return web.json_response({"failures": request.app[STATE].failures.describe()})


async def clear_failures(request: web.Request) -> web.Response:
    request.app[STATE].failures.clear()
    return web.Response(status=204)


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.Response(status=204)


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats())


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/messages", list_messages)
    app.router.add_delete("/messages", clear_messages)
    app.router.add_get("/attempts", list_attempts)
    app.router.add_get("/failures", list_failures)
    app.router.add_post("/failures", add_failure)
    app.router.add_delete("/failures", clear_failures)
    app.router.add_post("/reset", reset)
    app.router.add_get("/stats", stats)
    app.router.add_get("/healthz", healthz)
