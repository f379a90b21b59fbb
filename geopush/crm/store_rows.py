"""The stores CSV (`external_id,name,timezone,lat,lon[,opening_hours,categories]`)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from geopush.crm.csv_stream import CsvKind, Row, RowParser
from geopush.crm.csv_values import columns_getter, show, width_error


def store_parser(positions: dict[str, int], width: int) -> RowParser:
    # The same checks as POST /v1/stores, so a store imported is a store the API accepts.
    from geopush.errors import Invalid
    from geopush.places.stores import parse_store

    get = columns_getter(positions, ("external_id", "name", "timezone", "lat", "lon"))
    hours_at = positions.get("opening_hours")
    categories_at = positions.get("categories")

    def parse(line: int, fields: list[str]) -> Row | str:
        if len(fields) != width:
            return width_error(fields, width)
        external_id, name, timezone, lat, lon = get(fields)
        body: dict[str, Any] = {"external_id": external_id, "name": name,
                                "timezone": timezone}
        try:
            body["location"] = {"lat": float(lat), "lon": float(lon)}
        except ValueError:
            return f"lat, lon: not numbers: {show(lat)}, {show(lon)}"
        if hours_at is not None:
            raw = fields[hours_at].strip()
            try:
                body["opening_hours"] = json.loads(raw) if raw else None
            except ValueError:
                return "opening_hours: not JSON"
        if categories_at is not None:
            body["categories"] = [c.strip() for c in fields[categories_at].split(";")
                                  if c.strip()]
        try:
            store = parse_store(body, partial=False)
        except Invalid as exc:
            return exc.message
        hours = store.get("opening_hours")
        return (line, store["external_id"], store["name"], store["timezone"], store["lat"],
                store["lon"], None if hours is None else json.dumps(hours),
                store.get("categories"))

    return parse


# Whether the file's opening hours and categories replace the stored ones is spelled into
# the statement (true/false, from the file's header, never from its rows), and the time is
# the new row's default: on a Citus cluster `stores` is a reference table, and Citus 14
# drops the parameters of an ON CONFLICT … DO UPDATE fed by a temporary table, and refuses
# now() there.
_UPSERT_STORES = """
INSERT INTO stores (store_id, external_id, name, timezone, lat, lon, opening_hours, categories)
SELECT gen_random_uuid(), external_id, name, timezone, lat, lon,
       opening_hours::jsonb, coalesce(categories, '{{}}')
FROM (
    SELECT DISTINCT ON (external_id) * FROM _import_stores
    ORDER BY external_id, line DESC
) latest ORDER BY external_id
ON CONFLICT (external_id) DO UPDATE
SET name = EXCLUDED.name, timezone = EXCLUDED.timezone, lat = EXCLUDED.lat,
    lon = EXCLUDED.lon,
    opening_hours = CASE WHEN {hours} THEN EXCLUDED.opening_hours ELSE stores.opening_hours END,
    categories = CASE WHEN {categories} THEN EXCLUDED.categories ELSE stores.categories END,
    updated_at = EXCLUDED.updated_at
RETURNING (xmax = 0) AS created, external_id, store_id
"""
_LINK_TRANSACTIONS = """
UPDATE transactions t SET store_id = up.store_id
FROM unnest($1::text[], $2::uuid[]) AS up(external_id, store_id)
WHERE t.store_external_id = up.external_id AND t.store_id IS DISTINCT FROM up.store_id
"""


async def merge_stores(conn: asyncpg.Connection, columns: frozenset[str]) -> dict[str, int]:
    """Upsert by external_id (the last line wins); a column the file lacks keeps its value.

    Transactions imported before their store existed are linked to it now, so they count
    for conversions from here on. Two statements: on a Citus cluster `transactions` is
    distributed by customer, and its update cannot read a modifying CTE's rows.
    """
    rows = await conn.fetch(_UPSERT_STORES.format(
        hours="true" if "opening_hours" in columns else "false",
        categories="true" if "categories" in columns else "false"))
    status = await conn.execute(_LINK_TRANSACTIONS, [r["external_id"] for r in rows],
                                [r["store_id"] for r in rows])
    created = sum(1 for r in rows if r["created"])
    return {"created": created, "updated": len(rows) - created,
            "transactions_linked": int(status.split()[-1])}


STORES = CsvKind(
    name="stores",
    required=("external_id", "name", "timezone", "lat", "lon"),
    optional=("opening_hours", "categories"),
    staging_table="_import_stores",
    staging_ddl="CREATE TEMP TABLE _import_stores (line integer, external_id text, name text,"
                " timezone text, lat double precision, lon double precision,"
                " opening_hours text, categories text[]) ON COMMIT DROP",
    staging_columns=("line", "external_id", "name", "timezone", "lat", "lon",
                     "opening_hours", "categories"),
    row_parser=store_parser,
    merge=merge_stores,
)
