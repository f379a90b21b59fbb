"""`POST /v1/keys`: an admin makes keys for marketers, ops and apps; shown once."""

from __future__ import annotations

from aiohttp import web

from geopush.api.auth import require_role
from geopush.api.body import field_error, get_str, read_object
from geopush.codes import Role
from geopush.runtime import RUNTIME
from geopush.store.keys import create_key


async def post_key(request: web.Request) -> web.Response:
    await require_role(request)  # admin only
    body = await read_object(request)
    role_name = get_str(body, "role", required=True)
    try:
        role = Role(role_name)
    except ValueError:
        raise field_error("role", f"must be one of {', '.join(r.value for r in Role)}") from None
    name = get_str(body, "name", default="", max_len=200) or ""
    created = await create_key(request.app[RUNTIME].pool, role, name)
    return web.json_response(created, status=201)


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/keys", post_key)]
