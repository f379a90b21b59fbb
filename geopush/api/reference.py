"""`GET /v1/openapi.json` and `GET /docs`: the API reference, served by geopush itself.

The page is a few lines of plain JavaScript that render the document (no CDN, no framework:
geopush may run where nothing outside is reachable).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from aiohttp import web

from geopush import __version__
from geopush.api.openapi import documented, openapi_document

_DOCUMENT: web.AppKey[dict[str, Any]] = web.AppKey("openapi_document", dict)


@documented("This OpenAPI 3.1 document", tag="reference",
            response={"type": "object", "required": ["openapi", "paths"]})
async def openapi_json(request: web.Request) -> web.Response:
    app = request.app
    if _DOCUMENT not in app:  # the routes are fixed once serving: build it once
        app[_DOCUMENT] = openapi_document(app, __version__)
    return web.json_response(app[_DOCUMENT])


@documented("The API reference, readable in a browser", tag="reference", media="text/html",
            response={"type": "string"})
async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=DOCS_HTML, content_type="text/html", charset="utf-8",
                        headers=_DOCS_HEADERS)


def _inline_hash(html: str, tag: str) -> str:
    """The CSP source of the one inline `<tag>` block: only that exact text may run."""
    body = html.split(f"<{tag}>", 1)[1].split(f"</{tag}>", 1)[0]
    return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/openapi.json", openapi_json), web.get("/docs", docs_page)]


DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>geopush API reference</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; margin: 0; color: #1d2430; background: #f6f7f9; }
  header { background: #1d2430; color: #fff; padding: 1rem 2rem; }
  header a { color: #9cc7ff; }
  main { max-width: 70rem; margin: 0 auto; padding: 1rem 2rem 4rem; }
  nav a { margin-right: .8rem; }
  h2 { margin-top: 2rem; border-bottom: 1px solid #ccd; text-transform: capitalize; }
  details { background: #fff; border: 1px solid #dde; border-radius: 6px; margin: .4rem 0; }
  summary { cursor: pointer; padding: .5rem .8rem; }
  .m { display: inline-block; width: 4.2rem; font-weight: 700; font-family: monospace; }
  .get { color: #1769aa; } .post { color: #2e7d32; } .put { color: #8d6e00; }
  .patch { color: #6a1b9a; } .delete { color: #c62828; }
  .path { font-family: monospace; font-weight: 600; }
  .body { padding: 0 1rem 1rem; }
  table { border-collapse: collapse; margin: .4rem 0; }
  td, th { border: 1px solid #dde; padding: .2rem .5rem; text-align: left; vertical-align: top; }
  pre { background: #f0f2f5; padding: .6rem; overflow: auto; font-size: 13px; }
  .who { color: #555; }
</style>
</head>
<body>
<header><h1>geopush API</h1>
<p id="info"></p><p>Machine-readable: <a href="/v1/openapi.json">/v1/openapi.json</a></p>
</header>
<main><nav id="nav"></nav><div id="ops">Loading…</div></main>
<script>
"use strict";
const el = (tag, attrs, ...kids) => {
  const node = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
  kids.forEach(k => node.append(k));
  return node;
};
function resolve(doc, schema) {
  while (schema && schema.$ref) schema = doc.components.schemas[schema.$ref.split("/").pop()];
  return schema || {};
}
function typeOf(doc, s) {
  s = resolve(doc, s);
  if (s.enum) return s.enum.map(v => JSON.stringify(v)).join(" | ");
  if (s.anyOf) return s.anyOf.map(x => typeOf(doc, x)).join(" or ");
  if (s.type === "array") return "array of " + typeOf(doc, s.items || {});
  if (s.format) return s.type + " (" + s.format + ")";
  return Array.isArray(s.type) ? s.type.join(" | ") : (s.type || "any");
}
function fields(doc, schema, prefix, rows) {
  schema = resolve(doc, schema);
  const required = new Set(schema.required || []);
  Object.entries(schema.properties || {}).forEach(([name, sub]) => {
    const s = resolve(doc, sub);
    const limits = ["minimum", "maximum", "minLength", "maxLength", "pattern", "default"]
      .filter(k => s[k] !== undefined).map(k => k + " " + JSON.stringify(s[k])).join(", ");
    rows.push(el("tr", {}, el("td", {}, el("code", {}, prefix + name)),
      el("td", {}, typeOf(doc, sub)), el("td", {}, required.has(name) ? "yes" : ""),
      el("td", {}, [s.description || sub.description || "", limits].filter(Boolean).join("; "))));
    if (s.properties && prefix.split(".").length < 4) fields(doc, s, prefix + name + ".", rows);
  });
  return rows;
}
function table(head, rows) {
  return el("table", {}, el("tr", {}, ...head.map(h => el("th", {}, h))), ...rows);
}
function operation(doc, path, method, op) {
  const body = el("div", {class: "body"});
  if (op.description) body.append(el("p", {class: "who"}, op.description.replace(/\\*\\*/g, "")));
  if (op.parameters.length) body.append(el("h4", {}, "Parameters"), table(
    ["name", "in", "type", "required", "about"],
    op.parameters.map(p => el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in),
      el("td", {}, typeOf(doc, p.schema)), el("td", {}, p.required ? "yes" : ""),
      el("td", {}, p.description || "")))));
  if (op.requestBody) Object.entries(op.requestBody.content).forEach(([media, c]) => {
    body.append(el("h4", {}, "Body (" + media + ")"));
    const rows = fields(doc, c.schema, "", []);
    body.append(rows.length ? table(["field", "type", "required", "about"], rows)
                            : el("pre", {}, JSON.stringify(resolve(doc, c.schema), null, 2)));
  });
  body.append(el("h4", {}, "Responses"), table(["status", "meaning"],
    Object.entries(op.responses).map(([code, r]) =>
      el("tr", {}, el("td", {}, code), el("td", {}, r.description)))));
  return el("details", {id: op.operationId},
    el("summary", {}, el("span", {class: "m " + method}, method.toUpperCase()),
       el("span", {class: "path"}, path), "  ", op.summary), body);
}
fetch("/v1/openapi.json").then(r => r.json()).then(doc => {
  document.getElementById("info").textContent =
    doc.info.description + " Version " + doc.info.version + ".";
  const groups = {};
  Object.entries(doc.paths).forEach(([path, ops]) => Object.entries(ops).forEach(
    ([method, op]) => (groups[op.tags[0]] = groups[op.tags[0]] || []).push([path, method, op])));
  const root = document.getElementById("ops");
  const nav = document.getElementById("nav");
  root.textContent = "";
  Object.keys(groups).sort().forEach(tag => {
    nav.append(el("a", {href: "#tag-" + tag}, tag));
    root.append(el("h2", {id: "tag-" + tag}, tag));
    groups[tag].forEach(([path, method, op]) => root.append(operation(doc, path, method, op)));
  });
}).catch(err => { document.getElementById("ops").textContent = "Cannot load: " + err; });
</script>
</body>
</html>
"""

# The same protections as the console and the dashboard: the page's own inline script and
# style (by hash) and nothing else, no framing, no sniffing.
_DOCS_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_inline_hash(DOCS_HTML, 'script')};"
        f" style-src {_inline_hash(DOCS_HTML, 'style')}; connect-src 'self'; img-src 'self';"
        " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
