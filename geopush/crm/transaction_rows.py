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


# The (transaction_id, line) pairs of this batch already stored, under any customer: the
# key is (customer_id, transaction_id, line), so that transactions can be distributed by
# customer on a Citus cluster (SPEC section 9), and a line repeated under another customer
# is found here, by the `transactions_line` index, instead of by the key. `imported_at` is
# this transaction's now(), read from the staging side: the purchase points find the rows
# an import inserted by it, and a Citus worker's default would be its own transaction's.
_STAGED_IDS = "SELECT array_agg(DISTINCT transaction_id) FROM _import_transactions"
_STORED = """
SELECT transaction_id, line FROM transactions WHERE transaction_id = ANY($1::text[])
"""
_MERGE_TRANSACTIONS = """
WITH ins AS (
    INSERT INTO transactions (transaction_id, line, customer_id, store_external_id, store_id,
                              ts, amount, category, product, imported_at)
    SELECT t.transaction_id, t.line, t.customer_id, t.store_external_id, s.store_id, t.ts,
           t.amount::numeric, t.category, t.product, now()
    FROM (SELECT DISTINCT ON (transaction_id, line) * FROM _import_transactions
          ORDER BY transaction_id, line, file_line) t
    LEFT JOIN stores s ON s.external_id = t.store_external_id
    WHERE (t.transaction_id, t.line) NOT IN (SELECT * FROM unnest($1::text[], $2::int[]))
    ORDER BY t.file_line
    ON CONFLICT (customer_id, transaction_id, line) DO NOTHING
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

    Batches are merged in file order, so the first line of a repeated (transaction_id,
    line) wins: within a batch the first in the file, across batches and files the one
    stored. The stored pairs are looked up by the batch's ids (an index probe each), then
    left out of the insert; ON CONFLICT on the key still catches a concurrent import of
    the same line for the same customer. An anti-join (NOT EXISTS) against the table was
    planned as a scan of the whole, growing table whenever its statistics were stale (a
    quadratic import), and a Citus cluster cannot run it. A customer met here for the
    first time gets a bare record, so FRAT covers them before a customers import names
    them.
    """
    ids = await conn.fetchval(_STAGED_IDS) or []
    stored = await conn.fetch(_STORED, ids) if ids else []
    row = await conn.fetchrow(_MERGE_TRANSACTIONS, [r["transaction_id"] for r in stored],
                              [r["line"] for r in stored])
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
