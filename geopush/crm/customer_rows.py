"""The customers CSV (`customer_id,first_name,language,created_at`): its rows and merge.

An optional `last_name` column is read for its initial only (leaderboards show "first name
and initial", SPEC 11): the rest of the name is never stored.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from pydantic import ValidationError

from geopush.crm.csv_stream import CsvKind, Row, RowParser
from geopush.crm.csv_values import columns_getter, width_error
from geopush.crm.customers import CustomerRecord
from geopush.fields import problems
from geopush.loyalty.rules import initial_of


def customer_parser(positions: dict[str, int], width: int) -> RowParser:
    """Each row checked by `CustomerRecord`; an empty field is an absent one."""
    get = columns_getter(positions, ("customer_id", "first_name", "language", "created_at"))
    last_at = positions.get("last_name")
    validate = CustomerRecord.model_validate

    def parse(line: int, fields: list[str]) -> Row | str:
        if len(fields) != width:
            return width_error(fields, width)
        customer_id, first_name, language, created_at = get(fields)
        body = {"customer_id": customer_id}
        if first_name:
            body["first_name"] = first_name
        if language:
            body["language"] = language
        if created_at:
            body["created_at"] = created_at
        try:
            customer = validate(body)
        except ValidationError as exc:
            return problems(exc)[0]
        initial = None if last_at is None else initial_of(fields[last_at])
        return (line, customer.customer_id, customer.first_name, customer.language,
                customer.created_at, initial)

    return parse


async def merge_customers(conn: asyncpg.Connection, columns: frozenset[str]
                          ) -> dict[str, int]:
    # The last line naming a customer wins (an export listing someone twice lists the
    # newer record last). A file with no created_at keeps a known one. Rows are written in
    # id order, so two imports of overlapping files lock rows in the same order.
    # A file without last_name keeps the initial a former import gave.
    upserted = await conn.fetchval("""
        WITH up AS (
            INSERT INTO customers (customer_id, first_name, language, created_at,
                                   last_initial)
            SELECT customer_id, first_name, language, created_at, last_initial FROM (
                SELECT DISTINCT ON (customer_id) customer_id, first_name, language, created_at,
                       last_initial
                FROM _import_customers ORDER BY customer_id, line DESC
            ) latest ORDER BY customer_id
            ON CONFLICT (customer_id) DO UPDATE
            SET first_name = EXCLUDED.first_name, language = EXCLUDED.language,
                created_at = coalesce(EXCLUDED.created_at, customers.created_at),
                last_initial = CASE WHEN $1 THEN EXCLUDED.last_initial
                                    ELSE customers.last_initial END,
                imported_at = $2::timestamptz
            RETURNING 1
        )
        SELECT count(*) FROM up
    """, "last_name" in columns, datetime.now(UTC))  # a value: Citus refuses now() here
    return {"upserted": upserted}


CUSTOMERS = CsvKind(
    name="customers",
    required=("customer_id", "first_name", "language", "created_at"),
    optional=("last_name",),
    staging_table="_import_customers",
    staging_ddl="CREATE TEMP TABLE _import_customers (line integer, customer_id text,"
                " first_name text, language text, created_at timestamptz, last_initial text)"
                " ON COMMIT DROP",
    staging_columns=("line", "customer_id", "first_name", "language", "created_at",
                     "last_initial"),
    row_parser=customer_parser,
    merge=merge_customers,
    feeds_segments=True,
)
