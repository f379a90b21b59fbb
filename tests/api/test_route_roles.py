"""Each route's role is declared once, in `@documented(auth=...)`, and enforced from there:
every key-authenticated route answers 401 without a key and 403 to a role it does not name,
before it looks at its path, query or body."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from geopush.codes import Role
from tests.api_client import Api
from tests.conftest import RunningServer

API = Path(__file__).resolve().parents[2] / "geopush" / "api"
SOME_ID = "00000000-0000-4000-8000-000000000000"


async def test_every_key_route_refuses_without_a_key_and_to_other_roles(
    api: Api, server: RunningServer
) -> None:
    from geopush.api.openapi import documented_routes

    checked = 0
    for method, path, doc in documented_routes(server.app):
        if doc is None or doc.auth.scheme != "apiKey":
            continue
        url = re.sub(r"\{[^}]+\}", SOME_ID, path)
        anonymous = await api.call(method, url)
        assert anonymous.status == 401, (method, path)
        for role in (Role.APP, Role.MARKETER, Role.OPS):
            if role in doc.auth.roles:
                continue
            refused = await api.as_role(role.value, method, url)
            assert refused.status == 403, (method, path, role)
            assert refused.body["error"]["code"] == "forbidden"
        checked += 1
    assert checked > 40


def test_no_handler_checks_its_role_by_hand():
    calls = [f"{path.name}:{node.lineno}" for path in API.glob("*.py") if path.name != "auth.py"
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "require_role"]
    assert not calls, calls
