"""The transactions CSV: one row per transaction line, the lines of a transaction a basket.

Columns `transaction_id,customer_id,store_external_id,ts,amount,category`, and optionally
`line` (a positive integer, 1 when absent or empty) and `product`. A row is unique by
(`transaction_id`, `line`), so a file without `line` imports exactly as single-line
transactions always did: a repeated transaction_id is a duplicate.
"""

from __future__ import annotations

import re

import asyncpg

from geopush.crm.csv_stream import CsvKind, Row, RowParser
from geopush.crm.csv_values import MAX_ID_LEN, columns_getter, rfc3339, show, width_error

_AMOUNT = re.compile(r"[+-]?(?:\d{1,18}(?:\.\d{0,6})?|\.\d{1,6})")
_LINE = re.compile(r"\d{1,9}")


def transaction_parser(positions: dict[str, int], width: int) -> RowParser:
    get = columns_getter(positions, ("transaction_id", "customer_id", "store_external_id",
                                     "ts", "amount", "category"))
    line_at = positions.get("line")
    product_at = positions.get("product")
    amount_ok = _AMOUNT.fullmatch
    line_ok = _LINE.fullmatch

    def parse(line: int, fields: list[str]) -> Row | str:
        if len(fields) != width:
            return width_error(fields, width)
        transaction_id, customer_id, store, ts_raw, amount, category = get(fields)
        if not transaction_id:
            return "transaction_id: is empty"
        if not customer_id:
            return "customer_id: is empty"
        if (len(transaction_id) > MAX_ID_LEN or len(customer_id) > MAX_ID_LEN
                or len(store) > MAX_ID_LEN or len(category) > MAX_ID_LEN):
            return f"an id or category longer than {MAX_ID_LEN} characters"
        ts = rfc3339(ts_raw, "ts")
        if isinstance(ts, str):
            return ts
        if not amount_ok(amount):
            return f"amount: not a decimal number: {show(amount)}"
        line_no = 1
        if line_at is not None:
            raw = fields[line_at].strip()
            if raw:
                if not line_ok(raw) or int(raw) < 1:
                    return f"line: not a line number (1, 2, …): {show(raw)}"
                line_no = int(raw)
        product = None
        if product_at is not None:
            product = fields[product_at].strip() or None
            if product is not None and len(product) > MAX_ID_LEN:
                return f"product: longer than {MAX_ID_LEN} characters"
        return (line, transaction_id, line_no, customer_id, store or None, ts, amount,
                category or None, product)

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
