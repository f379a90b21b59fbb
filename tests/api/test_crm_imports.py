"""CRM imports over HTTP and the CLI: row errors by line, duplicates, all-or-nothing files."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.api_client import Api, Reply, iso

TX_HEADER = "transaction_id,customer_id,store_external_id,ts,amount,category\n"
CUSTOMER_HEADER = "customer_id,first_name,language,created_at\n"
CSV = {"Content-Type": "text/csv"}
RECENT = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)


async def post_csv(api: Api, what: str, body: str | bytes, role: str = "marketer",
                   headers: dict[str, str] | None = None) -> Reply:
    data = body.encode() if isinstance(body, str) else body
    return await api.as_role(role, "POST", f"/v1/{what}/import", data=data,
                             headers=headers or CSV)


async def count(db: asyncpg.Connection, table: str) -> int:
    return await db.fetchval(f"SELECT count(*) FROM {table}")  # table names are constants


TRICKY = (
    "\ufeffa,b,c\r\n"
    'plain,"quoted, comma","say ""hi"""\r\n'
    "\r\n"
    '"multi\nline\nfield",é漢字,"trailing\r\nCRLF"\n'
    "last,row,no newline"
).encode()
TRICKY_RECORDS = [
    (1, ["a", "b", "c"]),
    (2, ["plain", "quoted, comma", 'say "hi"']),
    (4, ["multi\nline\nfield", "é漢字", "trailing\r\nCRLF"]),
    (8, ["last", "row", "no newline"]),
]


def test_records_and_lines_do_not_depend_on_where_chunks_are_cut() -> None:
    from geopush.crm.csv_stream import CsvRecords

    for cut in range(len(TRICKY) + 1):
        for second_cut in (cut, min(cut + 3, len(TRICKY))):
            records = CsvRecords()
            found = records.feed(TRICKY[:cut]) + records.feed(TRICKY[cut:second_cut])
            found += records.feed(TRICKY[second_cut:]) + records.feed(b"", final=True)
            assert found == TRICKY_RECORDS, (cut, second_cut)


def test_a_truncated_quote_fails_only_at_the_end() -> None:
    from geopush.crm.csv_stream import CsvRecords, ImportFailed

    records = CsvRecords()
    assert records.feed(b'a,b\n1,"open\n') == [(1, ["a", "b"])]
    assert records.feed(b"still open\n") == []
    with pytest.raises(ImportFailed) as failed:
        records.feed(b"", final=True)
    assert failed.value.line == 2 and "not valid CSV" in failed.value.reason


async def test_transactions_report_bad_rows_by_line_and_import_the_rest(
    api: Api, db: asyncpg.Connection
) -> None:
    store = await api.store(external_id="BJ-1")
    t = iso(RECENT)
    body = (
        TX_HEADER
        + f"T1,C1,BJ-1,{t},12.50,coffee\n"                      # line 2: at a known store
        + f"T2,C1,,{t},3,tea\n"                                 # 3: online sale, no store
        + f"T3,C2,NOWHERE,{t},-4.20,\n"                         # 4: unknown store, refund
        + "\n"                                                  # 5: blank, ignored
        + "T4,C2,BJ-1,yesterday,1,coffee\n"                     # 6: bad ts
        + "T5,C2,BJ-1,2024-03-01T10:00:00,1,coffee\n"           # 7: no zone offset
        + f"T6,C2,BJ-1,{t},12;50,coffee\n"                      # 8: bad amount
        + f"T7,,BJ-1,{t},1,coffee\n"                            # 9: no customer
        + f"T8,C3,BJ-1,{t},1\n"                                 # 10: a field short
        + f'T9,C3,BJ-1,{t},7,"hot\nchocolate"\n'                # 11-12: quoted newline
        + f",C3,BJ-1,{t},1,coffee\n"                            # 13: no transaction id
    )
    reply = (await post_csv(api, "transactions", body)).ok(200)
    assert reply["inserted"] == 4 and reply["duplicates"] == 0
    assert reply["rows"] == 10 and reply["error_count"] == 6
    assert [(e["line"], e["reason"].split(":")[0]) for e in reply["errors"]] == [
        (6, "ts"), (7, "ts"), (8, "amount"), (9, "customer_id"),
        (10, "expected 6 fields, got 5"), (13, "transaction_id"),
    ]
    assert "zone offset" in reply["errors"][1]["reason"]
    assert reply["customers_created"] == 3
    assert set(reply["segments"]["segments"]) == {"new", "good", "best", "at_risk", "inactive"}

    rows = {r["transaction_id"]: r for r in await db.fetch("SELECT * FROM transactions")}
    assert set(rows) == {"T1", "T2", "T3", "T9"}
    assert str(rows["T1"]["store_id"]) == store["id"]
    assert rows["T2"]["store_id"] is None and rows["T2"]["store_external_id"] is None
    assert rows["T3"]["store_id"] is None and rows["T3"]["store_external_id"] == "NOWHERE"
    assert str(rows["T3"]["amount"]) == "-4.20" and rows["T3"]["category"] is None
    assert rows["T9"]["category"] == "hot\nchocolate"
    assert rows["T1"]["ts"] == RECENT


async def test_duplicates_are_counted_within_the_file_and_against_the_database(
    api: Api, db: asyncpg.Connection
) -> None:
    t = iso(RECENT)
    first = TX_HEADER + f"T1,C1,,{t},1,a\nT2,C1,,{t},2,a\nT2,C1,,{t},99,a\nT1,C2,,{t},98,a\n"
    reply = (await post_csv(api, "transactions", first)).ok(200)
    assert (reply["inserted"], reply["duplicates"]) == (2, 2)
    second = TX_HEADER + f"T2,C1,,{t},5,a\nT3,C1,,{t},3,a\n"
    reply = (await post_csv(api, "transactions", second)).ok(200)
    assert (reply["inserted"], reply["duplicates"]) == (1, 1)
    amounts = dict(await db.fetch("SELECT transaction_id, amount::int FROM transactions"))
    assert amounts == {"T1": 1, "T2": 2, "T3": 3}  # the first line of a repeated id wins


async def _many_good_rows(n: int) -> str:
    t = iso(RECENT)
    return TX_HEADER + "".join(f"T{i},C{i % 97},,{t},1.5,food\n" for i in range(n))


@pytest.mark.parametrize("tail, reason", [
    ('X1,C1,,2024-03-01T10:00:00Z,1,"never closed\n', "not valid CSV"),
    ("\xff\xfe garbage", "not UTF-8"),
    ("x" * (1024 * 1024 + 10), "longer than 1 MiB"),
])
async def test_a_broken_file_writes_nothing_even_after_many_good_rows(
    api: Api, db: asyncpg.Connection, tail: str, reason: str
) -> None:
    # 60,000 good rows first: several COPY batches have been merged when the break shows.
    body = (await _many_good_rows(60_000)).encode() + tail.encode("latin-1")
    reply = await post_csv(api, "transactions", body)
    assert reply.status == 400, reply.body
    assert reply.body["error"]["code"] == "invalid_csv"
    assert reason in reply.body["error"]["message"]
    assert reply.body["error"]["details"][0]["line"] == 60_002
    assert await count(db, "transactions") == 0
    assert await count(db, "customers") == 0


@pytest.mark.parametrize("body, reason", [
    (b"", "empty file"),
    (b"id,who,when\n1,2,3\n", "wrong header"),
    (b'{"transactions": []}', "wrong header"),
    (b"transaction_id,customer_id,store_external_id,ts,amount,category,ts\n", "repeats ts"),
])
async def test_not_a_transactions_csv_is_refused(api: Api, db: asyncpg.Connection,
                                                 body: bytes, reason: str) -> None:
    reply = await post_csv(api, "transactions", body)
    assert reply.status == 400, reply.body
    assert reason in reply.body["error"]["message"]
    assert await count(db, "transactions") == 0


async def test_header_columns_in_any_order_extra_ones_ignored(api: Api,
                                                              db: asyncpg.Connection) -> None:
    body = ("\ufeffAmount,ts,customer_id,transaction_id,category,store_external_id,note,,\n"
            f"7,{iso(RECENT)},C1,T1,tea,,hello,,\n")
    reply = (await post_csv(api, "transactions", body)).ok(200)
    assert reply["inserted"] == 1 and reply["ignored_columns"] == ["note"]
    assert await db.fetchval("SELECT amount::int FROM transactions") == 7


async def test_only_the_first_thousand_row_errors_are_listed(api: Api) -> None:
    body = TX_HEADER + "".join(f"T{i},C1,,not-a-time,1,a\n" for i in range(1500))
    reply = (await post_csv(api, "transactions", body)).ok(200)
    assert reply["error_count"] == 1500 and len(reply["errors"]) == 1000
    assert reply["errors"][-1]["line"] == 1001


async def test_customers_upsert_with_dates_or_times(api: Api, db: asyncpg.Connection) -> None:
    body = (CUSTOMER_HEADER
            + "C1,Ann,fr-CA,2024-03-01\n"
            + "C2,Bo,en,2024-03-01T10:30:00+02:00\n"
            + "C3,,,\n"
            + "C4,Dee,not a language,2024-03-01\n"
            + "C5,Eve,en,2024-13-01\n"
            + "C1,Annie,fr,2024-03-01\n")  # the later line wins
    reply = (await post_csv(api, "customers", body)).ok(200)
    assert reply["upserted"] == 3 and reply["error_count"] == 2
    assert [(e["line"], e["reason"].split(":")[0]) for e in reply["errors"]] == [
        (5, "language"), (6, "created_at")]
    assert reply["segments"]["customers"] == 3

    ann = (await api.as_role("marketer", "GET", "/v1/customers/C1")).ok(200)
    assert ann["first_name"] == "Annie" and ann["language"] == "fr"
    assert ann["created_at"] == "2024-03-01T00:00:00Z"  # a date is midnight UTC
    assert ann["segment"] == "inactive" and ann["devices"] == 0
    assert ann["frequency"] == 0 and ann["r"] is None and ann["recency_days"] is None
    bo = (await api.as_role("marketer", "GET", "/v1/customers/C2")).ok(200)
    assert bo["created_at"] == "2024-03-01T08:30:00Z"

    # A file without a creation date keeps the known one.
    (await post_csv(api, "customers", CUSTOMER_HEADER + "C1,Ann,fr,\n")).ok(200)
    created = await db.fetchval("SELECT created_at FROM customers WHERE customer_id = 'C1'")
    assert created == datetime(2024, 3, 1, tzinfo=UTC)


async def test_a_customer_named_by_transactions_first_is_completed_later(
    api: Api, db: asyncpg.Connection
) -> None:
    (await post_csv(api, "transactions", TX_HEADER + f"T1,C9,,{iso(RECENT)},5,tea\n")).ok(200)
    bare = (await api.as_role("marketer", "GET", "/v1/customers/C9")).ok(200)
    assert bare["first_name"] is None and bare["frequency"] == 1 and bare["segment"] == "new"
    (await post_csv(api, "customers", CUSTOMER_HEADER + "C9,Zoe,en,2020-01-01\n")).ok(200)
    named = (await api.as_role("marketer", "GET", "/v1/customers/C9")).ok(200)
    assert named["first_name"] == "Zoe" and named["frequency"] == 1
    assert named["amount"] == 5.0 and named["categories"] == ["tea"] and named["types"] == 1


async def test_imports_need_a_marketer_and_a_csv_body(api: Api, db: asyncpg.Connection
                                                      ) -> None:
    body = TX_HEADER + f"T1,C1,,{iso(RECENT)},1,a\n"
    assert (await post_csv(api, "transactions", body, role="ops")).status == 403
    assert (await api.call("POST", "/v1/transactions/import", data=body.encode(),
                           headers=CSV)).status == 401
    wrong = await post_csv(api, "transactions", body,
                           headers={"Content-Type": "application/json"})
    assert wrong.status == 415 and wrong.body["error"]["code"] == "unsupported_media_type"
    assert await count(db, "transactions") == 0


async def test_an_import_over_max_import_bytes_is_413_and_writes_nothing(
    start_server: Any, db: asyncpg.Connection
) -> None:
    from tests.conftest import ADMIN_KEY

    server = await start_server(limits={"max_import_bytes": 4096})
    body = (await _many_good_rows(200)).encode()  # about 7 KB
    assert len(body) > 4096
    async with Api(server.url, ADMIN_KEY) as api:
        reply = await post_csv(api, "transactions", body)
        assert reply.status == 413 and reply.body["error"]["code"] == "too_large"

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: caught mid-stream
            for i in range(0, len(body), 1000):
                yield body[i:i + 1000]

        reply = await api.as_role("marketer", "POST", "/v1/transactions/import",
                                  data=chunked(), headers=CSV)
        assert reply.status == 413
        small = (await _many_good_rows(50)).encode()
        assert (await post_csv(api, "transactions", small)).ok(200)["inserted"] == 50
    assert await count(db, "transactions") == 50


async def test_a_larger_body_than_max_body_bytes_is_fine_for_an_import(
    api: Api, db: asyncpg.Connection
) -> None:
    body = await _many_good_rows(40_000)  # ~1.8 MB, past the 1 MiB JSON body limit
    assert len(body) > 1024 * 1024
    assert (await post_csv(api, "transactions", body)).ok(200)["inserted"] == 40_000


async def test_customer_profile_and_erasure(api: Api, db: asyncpg.Connection) -> None:
    (await post_csv(api, "customers", CUSTOMER_HEADER + "C 1,Ann,fr,2024-03-01\n")).ok(200)
    (await post_csv(api, "transactions", TX_HEADER + f"T1,C 1,,{iso(RECENT)},5,tea\n")).ok(200)
    await api.device("tok-erasure", customer_id="C 1")
    profile = (await api.as_role("marketer", "GET", "/v1/customers/C%201")).ok(200)
    assert profile["customer_id"] == "C 1" and profile["devices"] == 1
    assert (await api.as_role("ops", "GET", "/v1/customers/C%201")).status == 403

    assert (await api.as_role("marketer", "DELETE", "/v1/customers/C%201")).status == 204
    assert (await api.as_role("marketer", "GET", "/v1/customers/C%201")).status == 404
    assert (await api.as_role("marketer", "DELETE", "/v1/customers/C%201")).status == 404
    assert (await api.as_role("marketer", "DELETE", "/v1/customers/nobody")).status == 404
    # The sale stays for the stores' totals, under no customer; the device is unlinked.
    assert await db.fetchval("SELECT customer_id FROM transactions") == ""
    assert await db.fetchval("SELECT count(*) FROM devices WHERE customer_id IS NOT NULL") == 0
    segments = (await api.as_role("marketer", "GET", "/v1/segments")).ok(200)
    assert sum(segments["segments"].values()) == 0


# --- the CLI -----------------------------------------------------------------------------

async def run_cli(database_url: str, cwd: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOPUSH_")}
    env["GEOPUSH_DATABASE_URL"] = database_url
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("geopush")), *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_cli_imports_stores_geofences_customers_and_transactions(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    stores = tmp_path / "stores.csv"
    stores.write_text(
        "external_id,name,timezone,lat,lon,opening_hours,categories\n"
        'BJ-1,Wangfujing,Asia/Shanghai,39.9087,116.3975,"{""mon"": [[""08:00"", ""21:00""]]}",'
        "coffee;food\n"
        "BJ-2,Sanlitun,Asia/Shanghai,39.93,116.45,,\n"
        "BJ-3,Nowhere,Mars/Olympus,1,2,,\n", encoding="utf-8")
    rc, out, err = await run_cli(database_url, tmp_path, "import", "stores", str(stores))
    assert rc == 0, err
    result = json.loads(out)
    assert (result["created"], result["updated"], result["error_count"]) == (2, 0, 1)
    assert result["errors"][0]["line"] == 4 and "timezone" in result["errors"][0]["reason"]
    bj1 = await db.fetchrow("SELECT * FROM stores WHERE external_id = 'BJ-1'")
    assert bj1["opening_hours"] == {"mon": [["08:00", "21:00"]]}
    assert list(bj1["categories"]) == ["coffee", "food"]

    fences = tmp_path / "fences.geojson"
    fences.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [116.3975, 39.9087]},
         "properties": {"radius_m": 150, "name": "door", "store_external_id": "BJ-1"}},
    ]}))
    rc, out, err = await run_cli(database_url, tmp_path, "import", "geofences", str(fences))
    assert rc == 0, err
    assert json.loads(out)["created"] == 1
    assert await db.fetchval("SELECT g.store_id = s.store_id FROM geofences g, stores s"
                             " WHERE s.external_id = 'BJ-1'")

    customers = tmp_path / "customers.csv"
    customers.write_text(CUSTOMER_HEADER + "C1,Ann,fr,2024-03-01\n")
    rc, out, err = await run_cli(database_url, tmp_path, "import", "customers", str(customers))
    assert rc == 0, err
    assert json.loads(out)["upserted"] == 1

    transactions = tmp_path / "transactions.csv"
    t = iso(RECENT)
    transactions.write_text(TX_HEADER + f"T1,C1,BJ-1,{t},5,coffee\nT2,C1,BJ-9,{t},5,coffee\n")
    rc, out, err = await run_cli(database_url, tmp_path, "import", "transactions",
                                 str(transactions))
    assert rc == 0, err
    result = json.loads(out)
    assert result["inserted"] == 2 and result["segments"]["segments"]["new"] == 1
    assert await db.fetchval("SELECT count(*) FROM transactions WHERE store_id IS NULL") == 1

    # A store created later picks up the sales already imported under its external id.
    later = tmp_path / "later.csv"
    later.write_text("external_id,name,timezone,lat,lon\nBJ-9,Late,Asia/Shanghai,39.9,116.4\n"
                     "BJ-2,Sanlitun North,Asia/Shanghai,39.94,116.45\n")
    rc, out, err = await run_cli(database_url, tmp_path, "import", "stores", str(later))
    assert rc == 0, err
    result = json.loads(out)
    assert (result["created"], result["updated"], result["transactions_linked"]) == (1, 1, 1)
    assert await db.fetchval("SELECT count(*) FROM transactions WHERE store_id IS NULL") == 0

    rc, out, err = await run_cli(database_url, tmp_path, "segments", "recompute")
    assert rc == 0, err
    assert json.loads(out)["segments"] == {"new": 1, "good": 0, "best": 0, "at_risk": 0,
                                           "inactive": 0}


async def test_cli_refuses_a_broken_file_and_writes_nothing(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_text(TX_HEADER + f'T1,C1,,{iso(RECENT)},5,"tea\n')
    rc, out, err = await run_cli(database_url, tmp_path, "import", "transactions", str(broken))
    assert rc == 1 and out == ""
    assert "not valid CSV" in err and "nothing was imported" in err
    assert "Traceback" not in err
    assert await count(db, "transactions") == 0


async def test_cli_transactions_import_refreshes_the_basket_rules(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """As after an import over HTTP, the rules and recommendations are mined again."""
    t = iso(RECENT)
    path = tmp_path / "baskets.csv"
    path.write_text(
        "transaction_id,customer_id,store_external_id,ts,amount,category,line\n"
        f"T1,C1,,{t},5,coffee,1\nT1,C1,,{t},3,bakery,2\n"
        f"T2,C2,,{t},5,coffee,1\nT2,C2,,{t},3,bakery,2\nT3,C3,,{t},2,tea,1\n")
    rc, out, err = await run_cli(database_url, tmp_path, "import", "transactions", str(path))
    assert rc == 0, err
    result = json.loads(out)
    assert result["basket_rules"]["baskets"] == 3
    rules = {(tuple(r["antecedent"]), tuple(r["consequent"]))
             for r in await db.fetch("SELECT antecedent, consequent FROM basket_rules")}
    assert (("coffee",), ("bakery",)) in rules
    assert await db.fetchval("SELECT count(*) FROM basket_runs") == 1


async def test_a_store_row_is_checked_as_the_api_checks_a_store(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    # One model for both (places.stores.StoreCreate). The CSV path's own checks once let a
    # category of any length through, which POST /v1/stores refused (at most 100 chars).
    long = "x" * 101
    stores = tmp_path / "stores.csv"
    stores.write_text("external_id,name,timezone,lat,lon,categories\n"
                      f"BJ-L,Long,Asia/Shanghai,39.9,116.4,{long}\n", encoding="utf-8")
    rc, out, err = await run_cli(database_url, tmp_path, "import", "stores", str(stores))
    assert rc == 0, err
    [error] = json.loads(out)["errors"]
    assert error["line"] == 2 and error["reason"].startswith("categories.0: ")
    answer = await api.as_role("marketer", "POST", "/v1/stores", json={
        "external_id": "BJ-L", "name": "Long", "timezone": "Asia/Shanghai",
        "location": {"lat": 39.9, "lon": 116.4}, "categories": [long]})
    assert answer.status == 400
    assert answer.body["error"]["message"] == error["reason"]
