"""Multi-line transactions: `line` and `product` columns, one basket per transaction_id."""

from __future__ import annotations

import asyncpg

from tests.api.test_crm_imports import RECENT, TX_HEADER, post_csv
from tests.api_client import Api, iso

LINES_HEADER = "transaction_id,line,customer_id,store_external_id,ts,amount,category,product\n"


async def test_an_old_file_imports_as_before_duplicates_included(
    api: Api, db: asyncpg.Connection
) -> None:
    t = iso(RECENT)
    body = TX_HEADER + (f"T1,C1,,{t},1,a\nT2,C1,,{t},2,b\nT2,C1,,{t},99,a\n"
                        f"T1,C2,,{t},98,a\nT3,C2,,{t},3,c\n")
    reply = (await post_csv(api, "transactions", body)).ok(200)
    assert (reply["inserted"], reply["duplicates"], reply["error_count"]) == (3, 2, 0)
    assert "ignored_columns" not in reply
    rows = await db.fetch("SELECT transaction_id, line, amount::int, category, product"
                          " FROM transactions ORDER BY transaction_id")
    assert [tuple(r) for r in rows] == [("T1", 1, 1, "a", None), ("T2", 1, 2, "b", None),
                                        ("T3", 1, 3, "c", None)]
    again = (await post_csv(api, "transactions", TX_HEADER + f"T3,C2,,{t},3,c\n")).ok(200)
    assert (again["inserted"], again["duplicates"]) == (0, 1)


async def test_lines_of_one_transaction_are_one_basket_and_one_visit_for_frat(
    api: Api, db: asyncpg.Connection
) -> None:
    t = iso(RECENT)
    body = (LINES_HEADER
            + f"T1,1,C1,,{t},10,computers,laptop\n"
            + f"T1,2,C1,,{t},2.5,accessories,mouse\n"
            + f"T1,3,C1,,{t},1,accessories,\n"          # no product: fine
            + f"T1,2,C1,,{t},99,food,duplicate line\n"  # (T1, 2) again: a duplicate
            + f"T2,,C1,,{t},4,food,bread\n"             # empty line: 1
            + f"T3,0,C1,,{t},4,food,\n"                 # line 0: refused
            + f"T4,two,C1,,{t},4,food,\n")              # not a number: refused
    reply = (await post_csv(api, "transactions", body)).ok(200)
    assert (reply["inserted"], reply["duplicates"]) == (4, 1)
    assert [(e["line"], e["reason"].split(":")[0]) for e in reply["errors"]] == [
        (7, "line"), (8, "line")]
    rows = await db.fetch("SELECT transaction_id, line, product FROM transactions"
                          " ORDER BY transaction_id, line")
    assert [tuple(r) for r in rows] == [("T1", 1, "laptop"), ("T1", 2, "mouse"),
                                        ("T1", 3, None), ("T2", 1, "bread")]
    profile = (await api.as_role("marketer", "GET", "/v1/customers/C1")).ok(200)
    # Two transactions (T1 with three lines, T2), their lines' amounts added up.
    assert profile["frequency"] == 2 and profile["amount"] == 17.5
    assert profile["categories"] == ["accessories", "computers", "food"]


async def test_a_basket_split_across_files_still_counts_once(
    api: Api, db: asyncpg.Connection
) -> None:
    t = iso(RECENT)
    (await post_csv(api, "transactions", LINES_HEADER + f"T1,2,C1,,{t},1,a,\n")).ok(200)
    (await post_csv(api, "transactions", LINES_HEADER + f"T1,5,C1,,{t},1,b,\n")).ok(200)
    profile = (await api.as_role("marketer", "GET", "/v1/customers/C1")).ok(200)
    assert profile["frequency"] == 1 and profile["amount"] == 2.0
