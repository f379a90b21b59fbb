"""The browser pages: `GET /console` (marketers), `GET /dashboard` (ops) and their assets.

The HTML, JavaScript, CSS and vendored libraries are package data under `geopush/web/`,
read with importlib.resources like the migrations, so an installed geopush serves them with
no CDN and no network (it may run where none is reachable). The pages hold no data and need
no key to load: each asks for a key and keeps it in sessionStorage, then reads the JSON API
like any other client. A Content-Security-Policy keeps scripts to this origin.

The console learns which API routes this build has from a JSON block in the page (no
request, so a section whose endpoint is missing shows "not available" without a failed
fetch in the browser console), and the tile URL from `[console] tile_url`.
"""

from __future__ import annotations

import json
import mimetypes
import re
from importlib import resources
from importlib.resources.abc import Traversable
from urllib.parse import urlsplit

from aiohttp import web

from geopush.api.openapi import documented
from geopush.api.runtime import RUNTIME

_WEB = "web"
# Asset paths are plain relative names: no "..", no leading slash, known extensions only.
_ASSET = re.compile(r"^(?:[A-Za-z0-9_.-]+/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*"
                    r"\.(?:js|css|png|svg|txt|json)$|^(?:[A-Za-z0-9_-]+/)*LICENSE$")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
          ".png": "image/png", ".txt": "text/plain", ".json": "application/json"}
# Assets change only with the package version; an hour of caching is plenty for a console.
_ASSET_CACHE = "public, max-age=3600"


def _web_file(relative: str) -> Traversable:
    node = resources.files("geopush").joinpath(_WEB)
    for part in relative.split("/"):
        node = node.joinpath(part)
    return node


def _csp(tile_url: str = "") -> str:
    img = "'self' data:"
    if tile_url:
        parts = urlsplit(tile_url.replace("{s}", "a"))
        origin = f"{parts.scheme}://{parts.netloc}"
        # `{s}` subdomains (a.tile..., b.tile...) are allowed with a wildcard.
        img += " " + (origin.replace("://a.", "://*.", 1) if "{s}" in tile_url else origin)
    # Leaflet and uPlot position elements with inline style attributes, hence
    # 'unsafe-inline' for styles only; scripts come from this origin alone.
    return ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src {img}; connect-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


def _page(name: str, csp: str, replacements: dict[str, str] | None = None) -> web.Response:
    text = _web_file(name).read_text(encoding="utf-8")
    for marker, value in (replacements or {}).items():
        text = text.replace(marker, value)
    return web.Response(
        text=text, content_type="text/html", charset="utf-8",
        headers={"Content-Security-Policy": csp, "Cache-Control": "no-store",
                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"},
    )


def _api_routes(app: web.Application) -> list[str]:
    """"METHOD /path/{template}" of every API route this process serves."""
    out = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/v1/") and route.method != "HEAD":
            out.add(f"{route.method} {path}")
    return sorted(out)


def _json_block(value: object) -> str:
    # Inside <script type="application/json">: "<" must not close the element.
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")


@documented("The marketers' console (asks for a key in the page)", media="text/html",
            response={"type": "string"})
async def console(request: web.Request) -> web.Response:
    """The marketers' console; its settings travel in the page, not in another request."""
    tile_url = request.app[RUNTIME].config.console.tile_url
    settings = {"tile_url": tile_url, "routes": _api_routes(request.app)}
    return _page("console.html", _csp(tile_url), {"__GEOPUSH_SETTINGS__": _json_block(settings)})


@documented("The ops dashboard (asks for a key in the page)", media="text/html",
            response={"type": "string"})
async def dashboard(request: web.Request) -> web.Response:
    """The ops dashboard; like the console it carries code, not data."""
    tile_url = request.app[RUNTIME].config.console.tile_url
    settings = {"tile_url": tile_url, "routes": _api_routes(request.app)}
    return _page("dashboard.html", _csp(tile_url),
                 {"__GEOPUSH_SETTINGS__": _json_block(settings)})


@documented("A packaged file of the console or dashboard", media="*/*", response={}, errors=(404,))
async def asset(request: web.Request) -> web.Response:
    relative = request.match_info["path"]
    if not _ASSET.match(relative) or ".." in relative:
        raise web.HTTPNotFound()
    node = _web_file(relative)
    if not node.is_file():
        raise web.HTTPNotFound()
    suffix = "." + relative.rsplit(".", 1)[1] if "." in relative.rsplit("/", 1)[-1] else ""
    content_type = _TYPES.get(suffix) or mimetypes.guess_type(relative)[0] or "text/plain"
    return web.Response(body=node.read_bytes(), content_type=content_type,
                        headers={"Cache-Control": _ASSET_CACHE,
                                 "X-Content-Type-Options": "nosniff"})


@documented("The icon", media="image/svg+xml", response={})
async def favicon(request: web.Request) -> web.Response:
    return web.Response(body=_web_file("favicon.svg").read_bytes(),
                        content_type="image/svg+xml", headers={"Cache-Control": _ASSET_CACHE})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/console", console),
        web.get("/dashboard", dashboard),
        web.get("/static/{path:.+}", asset),
        web.get("/favicon.ico", favicon),
    ]
