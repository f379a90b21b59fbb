"""The OpenAPI 3.1 document of every route, built from the routes and their request models.

Each handler carries its documentation next to it, one decorator:

    @documented("List stores", auth=BY_STATS, query=PAGE)
    async def list_stores(request): ...

`openapi_document(app)` walks `app.router`, so a route is documented exactly where it is
served (path parameters come from the route itself); request bodies are the pydantic models
the handler validates with, so the schema cannot drift from the check. A route without
`@documented` makes the document incomplete, which a test refuses (`undocumented_routes`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from geopush.codes import Role

H = TypeVar("H", bound=Callable[..., Any])

ATTRIBUTE = "__openapi__"
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


@dataclass(frozen=True)
class Query:
    """One query parameter."""

    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Auth:
    """Who may call: a role key, a device token, or anyone.

    This declaration is also the check: for an "apiKey" route, `geopush.api.auth`'s
    middleware refuses (401/403) any key whose role is not in `roles` (admin always may),
    before the handler runs.
    """

    scheme: str | None  # "apiKey", "deviceToken" or None (public)
    description: str
    roles: tuple[Role, ...] = ()


PUBLIC = Auth(None, "No credentials.")
BY_ADMIN = Auth("apiKey", "An `admin` key.")
BY_MARKETER = Auth("apiKey", "A `marketer` or `admin` key.", (Role.MARKETER,))
BY_STATS = Auth("apiKey", "A `marketer`, `ops` or `admin` key.", (Role.MARKETER, Role.OPS))
BY_OPS = Auth("apiKey", "An `ops` or `admin` key.", (Role.OPS,))
BY_APP = Auth("apiKey", "An `app` or `admin` key.", (Role.APP,))
BY_DEVICE = Auth("deviceToken", "The `device_token` returned at registration.")

PAGE = (
    Query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
          "Items per page."),
    Query("cursor", {"type": "string"}, "The `next_cursor` of the previous page."),
)

STORE_ID = Query("store_id", {"type": "string", "format": "uuid"}, "Only this store.")
SINCE = Query("since", {"type": "string", "format": "date-time"}, "From this time on.")
CSV_BODY = {"text/csv": {"type": "string", "description": "CSV with a header line."}}
FEATURE_COLLECTION = {
    "type": "object",
    "required": ["type", "features"],
    "description": "Point features need properties.radius_m; properties.name,"
                   " store_external_id and dwell_s are optional.",
    "properties": {"type": {"const": "FeatureCollection"},
                   "features": {"type": "array", "items": {"type": "object"}}},
}


def text_queries(*names: str) -> tuple[Query, ...]:
    return tuple(Query(name, {"type": "string"}) for name in names)


def int_query(name: str, lo: int, hi: int) -> Query:
    return Query(name, {"type": "integer", "minimum": lo, "maximum": hi})


@dataclass(frozen=True)
class Doc:
    summary: str
    auth: Auth = PUBLIC
    description: str = ""
    body: type[BaseModel] | None = None
    # A request body that is not a JSON model: media type -> schema (CSV, GeoJSON).
    body_media: dict[str, dict[str, Any]] = field(default_factory=dict)
    query: tuple[Query, ...] = ()
    status: int = 200
    # The success answer: its media type and schema (None media: no content, as 204).
    media: str | None = "application/json"
    response: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    # Error statuses beyond those every route of its kind can answer.
    errors: tuple[int, ...] = ()
    tag: str = ""


def documented(summary: str, **fields: Any) -> Callable[[H], H]:
    """Attach the route's documentation to its handler."""
    doc = Doc(summary, **fields)

    def attach(handler: H) -> H:
        setattr(handler, ATTRIBUTE, doc)
        return handler

    return attach


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message", "details"],
        "properties": {
            "code": {"type": "string", "examples": ["invalid"]},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {
                "type": "object",
                "description": "For a bad field: `field` (a dotted path) and `message`.",
            }},
        },
    }},
}
_STATUS_TEXT = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No content",
    400: "Malformed or invalid request", 401: "No or bad credentials",
    403: "Role, consent or identity refused", 404: "Not found", 405: "Method not allowed",
    408: "Request body too slow", 409: "Conflict", 413: "Too large",
    415: "Unsupported media type", 422: "Invalid geometry or semantics",
    429: "Rate limited (see Retry-After)", 503: "Not ready or database down (see Retry-After)",
}


def _path(canonical: str) -> tuple[str, list[str]]:
    names = _PARAM.findall(canonical)
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", canonical), names


def documented_routes(app: web.Application) -> list[tuple[str, str, Doc | None]]:
    """(method, OpenAPI path, doc or None) of every route, HEAD twins left out."""
    out = []
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS"):
            continue
        resource = route.resource
        if resource is None:
            continue
        path, _ = _path(resource.canonical)
        out.append((route.method, path, getattr(route.handler, ATTRIBUTE, None)))
    return out


def undocumented_routes(app: web.Application) -> list[str]:
    return [f"{m} {p}" for m, p, doc in documented_routes(app) if doc is None]


def _error_statuses(method: str, path: str, doc: Doc) -> list[int]:
    statuses = set(doc.errors) | {503}
    if doc.auth.scheme is not None:
        statuses |= {401}
    if doc.auth.scheme == "apiKey":
        statuses |= {403}
    if "{" in path:
        statuses |= {404}
    if doc.query:
        statuses |= {400}
    if doc.body is not None or doc.body_media:
        statuses |= {400, 408, 413}
    return sorted(statuses)


def _operation(method: str, path: str, doc: Doc, schemas: dict[str, Any]) -> dict[str, Any]:
    _, names = _path(path)
    params: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
        for n in names
    ]
    params += [{"name": q.name, "in": "query", "required": q.required, "schema": q.schema,
                **({"description": q.description} if q.description else {})}
               for q in doc.query]
    op: dict[str, Any] = {
        "summary": doc.summary,
        "operationId": f"{method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', path)}".rstrip("_"),
        "description": "\n\n".join(x for x in (doc.description, f"**Who:** {doc.auth.description}")
                                   if x),
        "tags": [doc.tag or path.split("/")[2 if path.startswith("/v1/") else 1] or "root"],
        "parameters": params,
        "responses": {},
    }
    if doc.auth.scheme is not None:
        op["security"] = [{doc.auth.scheme: []}]
    if doc.body is not None:
        schema = doc.body.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[doc.body.__name__] = schema
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{doc.body.__name__}"}}
        }}
    elif doc.body_media:
        op["requestBody"] = {"required": True, "content": {
            media: {"schema": schema} for media, schema in doc.body_media.items()}}
    ok: dict[str, Any] = {"description": _STATUS_TEXT.get(doc.status, "Success")}
    if doc.media is not None:
        ok["content"] = {doc.media: {"schema": doc.response}}
    op["responses"][str(doc.status)] = ok
    for status in _error_statuses(method, path, doc):
        op["responses"][str(status)] = {
            "description": _STATUS_TEXT.get(status, "Error"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return op


def openapi_document(app: web.Application, version: str = "0") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the documented routes of `app`."""
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for method, path, doc in documented_routes(app):
        if doc is None:
            continue
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, doc, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "geopush",
            "version": version,
            "description": "Location pings in, store visits out, offers pushed through FCM."
                           " Errors are always JSON: `{\"error\": {\"code\", \"message\","
                           " \"details\"}}`.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer",
                           "description": "An API key (`Authorization: Bearer <key>`)."},
                "deviceToken": {"type": "http", "scheme": "bearer",
                                "description": "A device token from `POST /v1/devices`."},
            },
        },
    }


# --- answers ------------------------------------------------------------------------------

def obj(required: tuple[str, ...], **properties: Any) -> dict[str, Any]:
    """An object schema: `required` fields, the others documented and optional."""
    return {"type": "object", "required": list(required), "properties": properties}


def page_of(item: dict[str, Any]) -> dict[str, Any]:
    """The answer of a list: `{"items": [...], "next_cursor": ...}`."""
    return obj(("items", "next_cursor"), items={"type": "array", "items": item},
               next_cursor={"type": ["string", "null"]})


_TEXT = {"type": "string"}
_OPT_TEXT = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_OPT_TIME = {"type": ["string", "null"], "format": "date-time"}
_INT = {"type": "integer"}

STORE = obj(("id", "external_id", "name", "timezone", "location", "categories"),
            id=_TEXT, external_id=_TEXT, name=_TEXT, timezone=_TEXT,
            location=obj(("lat", "lon"), lat={"type": "number"}, lon={"type": "number"}),
            opening_hours={"type": ["object", "null"]},
            categories={"type": "array", "items": _TEXT}, created_at=_TIME, updated_at=_TIME)
GEOFENCE = obj(("id", "name", "store_id", "geometry", "dwell_s", "enabled", "area_m2"),
               id=_TEXT, name=_TEXT, store_id=_OPT_TEXT, geometry={"type": "object"},
               dwell_s=_INT, enabled={"type": "boolean"}, area_m2={"type": "number"},
               created_at=_TIME, updated_at=_TIME)
OFFER = obj(("id", "trigger", "status", "message"), id=_TEXT, name=_OPT_TEXT, trigger=_TEXT,
            status={"enum": ["active", "paused"]}, message={"type": "object"},
            geofence_ids={"type": "array"}, store_ids={"type": "array"})
KEY_CREATED = obj(("id", "key", "role"), id=_TEXT, key=_TEXT, role=_TEXT)
KEY = obj(("id", "name", "role", "created_at", "revoked_at"), id=_TEXT, name=_TEXT,
          role={"enum": ["admin", "marketer", "ops", "app"]}, created_at=_TIME,
          revoked_at=_OPT_TIME)
DEVICE_CREATED = obj(("device_id", "device_token"), device_id=_TEXT, device_token=_TEXT)
DEVICE = obj(("device_id", "platform", "locale", "timezone", "customer_id", "consent"),
             device_id=_TEXT, platform={"enum": ["android", "ios", "web"]}, locale=_OPT_TEXT,
             timezone=_OPT_TEXT, customer_id=_OPT_TEXT, fcm_token_active={"type": "boolean"},
             consent=obj(("location", "push", "categories"), location={"type": "boolean"},
                         push={"type": "boolean"},
                         categories={"type": ["array", "null"], "items": _TEXT}),
             created_at=_TIME, updated_at=_TIME)
PING_ANSWER = obj(("accepted", "rejected", "events"), accepted=_INT,
                  rejected={"type": "array", "items": obj(("index", "reason"), index=_INT,
                                                           reason=_TEXT)},
                  events={"type": "array", "items": obj(("type", "geofence_id", "ts"),
                                                        type=_TEXT, geofence_id=_TEXT,
                                                        ts=_TIME)})
DELIVERY = obj(("id", "offer_id", "device_id", "status", "reason", "attempts", "created_at",
                "sent_at", "fcm_message_name"),
               id=_TEXT, offer_id=_TEXT, device_id=_OPT_TEXT,
               status={"enum": ["queued", "sent", "failed", "cancelled"]}, reason=_OPT_TEXT,
               attempts=_INT, created_at=_TIME, sent_at=_OPT_TIME, fcm_message_name=_OPT_TEXT)
