"""The OpenAPI document covers every route, the reference page renders it without any CDN,
and Schemathesis, run against the document and a real server, finds no 5xx, no non-JSON
error and no answer that breaks its own schema."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path

import pytest

from geopush.api.openapi import undocumented_routes
from geopush.app import create_app
from tests.api_client import Api
from tests.conftest import ADMIN_KEY


def test_every_route_is_documented(make_config) -> None:
    app = create_app(make_config())
    assert undocumented_routes(app) == [], (
        "document each route with @documented(...) next to its handler (geopush/api/openapi.py)")


async def test_document_lists_every_route_with_bodies_and_errors(api: Api, server) -> None:
    doc = (await api.call("GET", "/v1/openapi.json")).ok(200)
    assert doc["openapi"].startswith("3.1")
    served = set()
    for route in server.app.router.routes():
        if route.method not in ("HEAD", "OPTIONS"):
            path = re.sub(r"\{([^}:]+)(:[^}]*)?\}", r"{\1}", route.resource.canonical)
            served.add((route.method.lower(), path))
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == served
    register = doc["paths"]["/v1/devices"]["post"]
    ref = register["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"fcm_token", "platform", "locale", "timezone"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
    assert {"201", "400", "401", "403", "429"} <= set(register["responses"])
    error = register["responses"]["400"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    store = doc["paths"]["/v1/stores/{store_id}"]["get"]
    assert store["parameters"][0] == {"name": "store_id", "in": "path", "required": True,
                                      "schema": {"type": "string"}}
    assert "404" in store["responses"]
    assert {p["name"] for p in doc["paths"]["/v1/stores"]["get"]["parameters"]} == {
        "limit", "cursor"}


async def test_docs_page_is_self_contained(api: Api) -> None:
    reply = await api.call("GET", "/docs")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/html")
    assert "/v1/openapi.json" in reply.body
    # Nothing fetched from elsewhere: no external script, style or font.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", reply.body)


async def test_docs_page_has_the_pages_protections_and_still_renders(api: Api) -> None:
    """CSP, nosniff and no framing, as on /console, and its own inline code still runs."""
    from tests.browser import chromium, watched_page

    reply = await api.call("GET", "/docs")
    csp = reply.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    async with chromium() as browser, watched_page(browser) as w:
        await w.page.goto(api.base_url + "/docs")
        await w.page.wait_for_selector("details#post_pings, details summary")
        assert await w.page.locator("details").count() > 20
        assert w.errors == []


@pytest.mark.slow
async def test_schemathesis_finds_nothing(start_server, tmp_path: Path) -> None:
    """A bounded run (a fixed seed, a few examples per operation) with an admin key."""
    server = await start_server(server={"run_sender": False})
    st = Path(sys.executable).with_name("st")
    args = [
        str(st), "run", f"{server.url}/v1/openapi.json",
        "-H", f"Authorization: Bearer {ADMIN_KEY}",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                    "response_schema_conformance",
        "--phases", "examples,fuzzing", "--max-examples", "5", "--seed", "7",
        "--workers", "1", "--request-timeout", "20", "--no-shrink",
        "--exclude-path-regex", "^/v1/openapi.json$",
        "--suppress-health-check", "all", "--warnings", "off",
    ]
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        cwd=tmp_path)  # its own files (.schemathesis/) stay out of the work tree
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    text = out.decode(errors="replace")
    summary = [line for line in text.splitlines() if re.search(
        r"\d+ (passed|failed|errored|skipped)|API Operations|Test cases|Test Phases", line)]
    print(f"schemathesis in {time.monotonic() - started:.1f} s:", *summary, sep="\n  ")
    assert proc.returncode == 0, text[-6000:]
