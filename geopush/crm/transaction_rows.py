"""The transactions CSV: one row per transaction line, the lines of a transaction a basket.

Columns `transaction_id,customer_id,store_external_id,ts,amount,category`, and optionally
`line` (a positive integer, 1 when absent or empty) and `product`. A row is unique by
(`transaction_id`, `line`), so a file without `line` imports exactly as single-line
transactions always did: a repeated transaction_id is a duplicate.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg
from pydantic import ValidationError

from geopush.crm.csv_stream import CsvKind, Row, RowParser
from geopush.crm.csv_values import columns_getter, width_error
from geopush.crm.transactions import TransactionRecord
from geopush.fields import problems

_LINE = re.compile(r"\d{1,9}")


def transaction_parser(positions: dict[str, int], width: int) -> RowParser:
    """Each row checked by `TransactionRecord` (a model per row costs about 1 µs more than
    the hand-written checks it replaced; see the commit and docs/BENCHMARKS.md). An empty
    optional field is an absent one."""
    get = columns_getter(positions, ("transaction_id", "customer_id", "store_external_id",
                                     "ts", "amount", "category"))
    line_at = positions.get("line")
    product_at = positions.get("product")
    validate = TransactionRecord.model_validate
    line_number = _LINE.fullmatch

    def parse(line: int, fields: list[str]) -> Row | str:
        if len(fields) != width:
            return width_error(fields, width)
        transaction_id, customer_id, store, ts, amount, category = get(fields)
        body: dict[str, Any] = {"transaction_id": transaction_id, "customer_id": customer_id,
                                "ts": ts, "amount": amount}
        if store:
            body["store_external_id"] = store
        if category:
            body["category"] = category
        if line_at is not None:
            raw = fields[line_at].strip()
            if raw:  # digits as the number they are; other text is refused by the model
                body["line"] = int(raw) if line_number(raw) else raw
        if product_at is not None:
            product = fields[product_at].strip()
            if product:
                body["product"] = product
        try:
            t = validate(body)
        except ValidationError as exc:
            return problems(exc)[0]
        return (line, t.transaction_id, t.line, t.customer_id, t.store_external_id, t.ts,
                t.amount, t.category, t.product)

    return parse


_MERGE_TRANSACTIONS = """
WITH ins AS (
    INSERT INTO transactions (transaction_id, line, customer_id, store_external_id, store_id,
                              ts, amount, category, product)
    SELECT t.transaction_id, t.line, t.customer_id, t.store_external_id, s.store_id, t.ts,
           t.amount::numeric, t.category, t.product
    FROM _import_transactions t
    LEFT JOIN stores s ON s.external_id = t.store_external_id
    ORDER BY t.file_line
    ON CONFLICT (transaction_id, line) DO NOTHING
    RETURNING customer_id
), new_customers AS (
    INSERT INTO customers (customer_id)
    SELECT DISTINCT customer_id FROM ins ORDER BY customer_id
    ON CONFLICT (customer_id) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins) AS inserted,
       (SELECT count(*) FROM new_customers) AS customers_created,
       (SELECT count(*) FROM _import_transactions) AS staged
"""


async def merge_transactions(conn: asyncpg.Connection, columns: frozenset[str]
                             ) -> dict[str, int]:
    """Insert one staged batch; a (transaction_id, line) already stored or staged twice is
    skipped.

    Batches are merged in file order and each in line order, so the first line of a
    repeated (transaction_id, line) wins. ON CONFLICT always probes the unique index: an
    anti-join (NOT EXISTS) saved a fifth of the merge time but was planned as a scan of the
    whole, growing table whenever its statistics were stale (a quadratic import). A
    customer met here for the first time gets a bare record, so FRAT covers them before a
    customers import names them.
    """
    row = await conn.fetchrow(_MERGE_TRANSACTIONS)
    return {"inserted": row["inserted"], "duplicates": row["staged"] - row["inserted"],
            "customers_created": row["customers_created"]}


TRANSACTIONS = CsvKind(
    name="transactions",
    required=("transaction_id", "customer_id", "store_external_id", "ts", "amount",
              "category"),
    optional=("line", "product"),
    staging_table="_import_transactions",
    staging_ddl="CREATE TEMP TABLE _import_transactions (file_line integer,"
                " transaction_id text, line integer, customer_id text,"
                " store_external_id text, ts timestamptz, amount text, category text,"
                " product text) ON COMMIT DROP",
    staging_columns=("file_line", "transaction_id", "line", "customer_id",
                     "store_external_id", "ts", "amount", "category", "product"),
    row_parser=transaction_parser,
    merge=merge_transactions,
    merge_each_batch=True,
    feeds_segments=True,
)
