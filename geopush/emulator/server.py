"""`geopush fcm-emulator`: the app factory and the blocking runner the CLI calls."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from geopush.emulator import control
from geopush.emulator.credentials import write_service_account
from geopush.emulator.errors import FcmErrorCode, fcm_error_body
from geopush.emulator.oauth import token_endpoint
from geopush.emulator.send import send_message
from geopush.emulator.state import STATE, EmulatorState

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8086
DEFAULT_PROJECT_ID = "geopush-emulator"
TOKEN_PATH = "/token"
SEND_PATH = "/v1/projects/{project_id}/messages:send"

log = logging.getLogger(__name__)


@web.middleware
async def _internal_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A bug in the emulator answers like FCM's INTERNAL, so the SDK still parses it."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("emulator error on %s %s", request.method, request.path)
        return web.json_response(fcm_error_body(FcmErrorCode.INTERNAL), status=500)


def create_app(state: EmulatorState | None = None) -> web.Application:
    """The emulator app; pass `state` to share or inspect it from the caller."""
    app = web.Application(middlewares=[_internal_errors])
    app[STATE] = state if state is not None else EmulatorState()
    app.router.add_post(TOKEN_PATH, token_endpoint)
    app.router.add_post(SEND_PATH, send_message)
    control.add_routes(app)
    return app


def base_url(host: str, port: int) -> str:
    """`http://host:port`, with IPv6 hosts bracketed."""
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    credentials_path: Path | None = None,
    project_id: str = DEFAULT_PROJECT_ID,
) -> None:
    """Serve until interrupted. With `credentials_path`, first write a service-account JSON
    whose `token_uri` is this emulator, so `[fcm] credentials_file` can point at it."""
    if not _is_loopback(host):
        # The control API has no authentication: anyone who can reach it can read messages.
        log.warning("FCM emulator listening on %s, not loopback: it has no authentication", host)
    if credentials_path is not None and port == 0:
        raise ValueError("a credentials file needs a fixed port: its token_uri names it")
    url = base_url(host, port)
    if credentials_path is not None:
        write_service_account(credentials_path, f"{url}{TOKEN_PATH}", project_id)
        print(f"service account for project {project_id} written to {credentials_path}")
    print(f"FCM emulator on {url}  (endpoint for [fcm] endpoint; GET {url}/messages)")
    web.run_app(create_app(), host=host, port=port, print=None, access_log=None)
