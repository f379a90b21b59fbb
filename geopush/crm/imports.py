"""Streamed imports: CRM customers and transactions, stores (CSV), geofences (GeoJSON).

A CSV file is never held in memory: bytes arrive in chunks (an HTTP body or a file), are
decoded and cut into records as they come, each record is checked, and the good ones are
COPYed in batches (`copy_records_to_table`, binary) into a temporary staging table.
`INSERT … SELECT … ON CONFLICT` then moves them into place, so the duplicate checks (within
the file and against the database) and store lookups are set operations in PostgreSQL, not
a query per row. Transactions, the big files, are merged batch by batch while the next
batch is parsed; customers and stores once at the end (their last line wins).

Everything happens in one transaction: a file that turns out not to be CSV, to have the
wrong header, or to end inside a quoted field writes nothing (`ImportFailed`), even after
batches were merged, while a bad row is skipped and reported with its line number.

Line numbers are physical lines of the file (the header is line 1); a record whose quoted
field spans lines is reported at its first line.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
import io
import json
import re
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import asyncpg

from geopush.config import Config

#: Good rows sent to PostgreSQL per COPY.
COPY_ROWS = 25_000
#: Per-row errors kept in the answer; the rest are only counted.
MAX_ERRORS = 1000
#: Longest unfinished record kept while waiting for more bytes (a line with no end, or a
#: quote never closed, is not a CRM export).
MAX_RECORD_CHARS = 1024 * 1024
FILE_CHUNK = 1024 * 1024
MAX_ID_LEN = 200
MAX_TEXT_LEN = 500

Row = tuple[Any, ...]
RowParser = Callable[[int, list[str]], "Row | str"]


class ImportFailed(Exception):
    """The file as a whole cannot be imported; nothing was written."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line

    def __str__(self) -> str:
        return self.reason if self.line is None else f"line {self.line}: {self.reason}"


class CsvRecords:
    """Incremental CSV parsing: bytes in, `(line, fields)` of every complete record out.

    Each `feed` parses the complete lines received so far with the standard `csv` module
    (strict). When a chunk ends inside a quoted field, the reader runs out of lines in the
    middle of a record: that record is kept and parsed again once more bytes arrive, so
    record boundaries are exactly the `csv` module's, wherever the chunks were cut.
    """

    def __init__(self) -> None:
        # utf-8-sig: spreadsheet exports often start with a byte order mark.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._pending = ""
        self._lines_done = 0

    def feed(self, data: bytes, *, final: bool = False) -> list[tuple[int, list[str]]]:
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            near = self._lines_done + self._pending.count("\n") + data[: exc.start].count(b"\n")
            raise ImportFailed("not UTF-8 text", near + 1) from None
        text = self._pending + text
        if final:
            complete, rest = text, ""
        else:
            cut = text.rfind("\n") + 1
            complete, rest = text[:cut], text[cut:]
        out: list[tuple[int, list[str]]] = []
        consumed = 0
        if complete:
            source = io.StringIO(complete, newline="\n")
            reader = csv.reader(source, strict=True)
            while True:
                start_pos, start_line = source.tell(), reader.line_num
                try:
                    fields = next(reader)
                except StopIteration:
                    consumed = reader.line_num
                    break
                except csv.Error as exc:
                    if not final and source.tell() == len(complete):
                        # Ran out of lines inside this record: wait for the rest of it.
                        rest = complete[start_pos:] + rest
                        consumed = start_line
                        break
                    raise ImportFailed(f"not valid CSV: {exc}",
                                       self._lines_done + start_line + 1) from None
                if fields:  # a blank line is no record
                    out.append((self._lines_done + start_line + 1, fields))
        self._lines_done += consumed
        self._pending = rest
        if len(rest) > MAX_RECORD_CHARS:
            raise ImportFailed("a line longer than 1 MiB, or a quote never closed",
                               self._lines_done + 1)
        return out


@dataclass
class RowErrors:
    """Per-row errors: the first `MAX_ERRORS` kept, all counted."""

    items: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0

    def add(self, line: int, reason: str) -> None:
        self.count += 1
        if len(self.items) < MAX_ERRORS:
            self.items.append({"line": line, "reason": reason})


@dataclass(frozen=True)
class CsvKind:
    """One kind of CSV import: its columns, its staging table, its rows and its merge."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    staging_table: str
    staging_ddl: str
    staging_columns: tuple[str, ...]
    # Given the header's column positions and width, a function checking one record.
    row_parser: Callable[[dict[str, int], int], RowParser]
    # Moves the staged rows into place; gets the header's columns, returns the counts.
    merge: Callable[[asyncpg.Connection, frozenset[str]], Awaitable[dict[str, int]]]
    # Merge (and empty the staging table) after every COPY batch, while the next batch is
    # parsed, instead of once at the end; the counts of the merges are added up.
    merge_each_batch: bool = False
    # CRM data: hold the segments lock (shared) while importing, so a recompute never
    # interleaves with it (see crm.segments), and recompute segments afterwards.
    feeds_segments: bool = False


# --- values ---------------------------------------------------------------------------

_AMOUNT = re.compile(r"[+-]?(?:\d{1,18}(?:\.\d{0,6})?|\.\d{1,6})")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,4}")
_parse_iso = datetime.fromisoformat


def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "…")


def _time(value: str, name: str) -> datetime | str:
    try:
        parsed = _parse_iso(value)
    except ValueError:
        return f"{name}: not an RFC 3339 time: {_show(value)}"
    if parsed.tzinfo is None:
        return f"{name}: needs a time zone offset (e.g. Z or +02:00): {_show(value)}"
    return parsed


def _created_at(value: str) -> datetime | str | None:
    """A date (taken as midnight UTC) or an RFC 3339 time; empty is unknown."""
    if not value:
        return None
    if len(value) == 10:
        try:
            d = date.fromisoformat(value)
        except ValueError:
            return f"created_at: not a date or an RFC 3339 time: {_show(value)}"
        return datetime(d.year, d.month, d.day, tzinfo=UTC)
    return _time(value, "created_at")


def _width_error(fields: list[str], width: int) -> str:
    return f"expected {width} fields, got {len(fields)}"


def _columns_getter(positions: dict[str, int], names: tuple[str, ...]
                    ) -> Callable[[list[str]], tuple[str, ...]]:
    idx = [positions[n] for n in names]
    getter = itemgetter(*idx)
    strip = str.strip
    return lambda fields: tuple(map(strip, getter(fields)))


# --- customers -------------------------------------------------------------------------

def _customer_parser(positions: dict[str, int], width: int) -> RowParser:
    get = _columns_getter(positions, ("customer_id", "first_name", "language", "created_at"))

    def parse(line: int, fields: list[str]) -> Row | str:
        if len(fields) != width:
            return _width_error(fields, width)
        customer_id, first_name, language, created_raw = get(fields)
        if not customer_id:
            return "customer_id: is empty"
        if len(customer_id) > MAX_ID_LEN:
            return f"customer_id: longer than {MAX_ID_LEN} characters"
        if len(first_name) > MAX_TEXT_LEN:
            return f"first_name: longer than {MAX_TEXT_LEN} characters"
        if language and not _LANGUAGE.fullmatch(language):
            return f"language: not a language tag such as fr or fr-CA: {_show(language)}"
        created_at = _created_at(created_raw)
        if isinstance(created_at, str):
            return created_at
        return (line, customer_id, first_name or None, language or None, created_at)

    return parse


async def _merge_customers(conn: asyncpg.Connection, columns: frozenset[str]
                           ) -> dict[str, int]:
    # The last line naming a customer wins (an export listing someone twice lists the
    # newer record last). A file with no created_at keeps a known one. Rows are written in
    # id order, so two imports of overlapping files lock rows in the same order.
    upserted = await conn.fetchval("""
        WITH up AS (
            INSERT INTO customers (customer_id, first_name, language, created_at)
            SELECT customer_id, first_name, language, created_at FROM (
                SELECT DISTINCT ON (customer_id) customer_id, first_name, language, created_at
                FROM _import_customers ORDER BY customer_id, line DESC
            ) latest ORDER BY customer_id
            ON CONFLICT (customer_id) DO UPDATE
            SET first_name = EXCLUDED.first_name, language = EXCLUDED.language,
                created_at = coalesce(EXCLUDED.created_at, customers.created_at),
                imported_at = now()
            RETURNING 1
        )
        SELECT count(*) FROM up
    """)
    return {"upserted": upserted}


CUSTOMERS = CsvKind(
    name="customers",
    required=("customer_id", "first_name", "language", "created_at"),
    optional=(),
    staging_table="_import_customers",
    staging_ddl="CREATE TEMP TABLE _import_customers (line integer, customer_id text,"
                " first_name text, language text, created_at timestamptz) ON COMMIT DROP",
    staging_columns=("line", "customer_id", "first_name", "language", "created_at"),
    row_parser=_customer_parser,
    merge=_merge_customers,
    feeds_segments=True,
)


# --- transactions ----------------------------------------------------------------------

def _transaction_parser(positions: dict[str, int], width: int) -> RowParser:
    get = _columns_getter(positions, ("transaction_id", "customer_id", "store_external_id",
                                      "ts", "amount", "category"))
    amount_ok = _AMOUNT.fullmatch

    def parse(line: int, fields: list[str]) -> Row | str:
        if len(fields) != width:
            return _width_error(fields, width)
        transaction_id, customer_id, store, ts_raw, amount, category = get(fields)
        if not transaction_id:
            return "transaction_id: is empty"
        if not customer_id:
            return "customer_id: is empty"
        if (len(transaction_id) > MAX_ID_LEN or len(customer_id) > MAX_ID_LEN
                or len(store) > MAX_ID_LEN or len(category) > MAX_ID_LEN):
            return f"an id or category longer than {MAX_ID_LEN} characters"
        ts = _time(ts_raw, "ts")
        if isinstance(ts, str):
            return ts
        if not amount_ok(amount):
            return f"amount: not a decimal number: {_show(amount)}"
        return (line, transaction_id, customer_id, store or None, ts, amount, category or None)

    return parse


_MERGE_TRANSACTIONS = """
WITH ins AS (
    INSERT INTO transactions (transaction_id, customer_id, store_external_id, store_id, ts,
                              amount, category)
    SELECT t.transaction_id, t.customer_id, t.store_external_id, s.store_id, t.ts,
           t.amount::numeric, t.category
    FROM _import_transactions t
    LEFT JOIN stores s ON s.external_id = t.store_external_id
    ORDER BY t.line
    ON CONFLICT (transaction_id) DO NOTHING
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


async def _merge_transactions(conn: asyncpg.Connection, columns: frozenset[str]
                              ) -> dict[str, int]:
    """Insert one staged batch; a transaction_id already stored or staged twice is skipped.

    Batches are merged in file order and each in line order, so the first line of a
    repeated transaction_id wins. ON CONFLICT always probes the unique index: an anti-join
    (NOT EXISTS) saved a fifth of the merge time but was planned as a scan of the whole,
    growing table whenever its statistics were stale (a quadratic import). A customer met
    here for the first time gets a bare record, so FRAT covers them before a customers
    import names them.
    """
    row = await conn.fetchrow(_MERGE_TRANSACTIONS)
    return {"inserted": row["inserted"], "duplicates": row["staged"] - row["inserted"],
            "customers_created": row["customers_created"]}


TRANSACTIONS = CsvKind(
    name="transactions",
    required=("transaction_id", "customer_id", "store_external_id", "ts", "amount",
              "category"),
    optional=(),
    staging_table="_import_transactions",
    staging_ddl="CREATE TEMP TABLE _import_transactions (line integer, transaction_id text,"
                " customer_id text, store_external_id text, ts timestamptz, amount text,"
                " category text) ON COMMIT DROP",
    staging_columns=("line", "transaction_id", "customer_id", "store_external_id", "ts",
                     "amount", "category"),
    row_parser=_transaction_parser,
    merge=_merge_transactions,
    merge_each_batch=True,
    feeds_segments=True,
)


# --- stores ----------------------------------------------------------------------------

def _store_parser(positions: dict[str, int], width: int) -> RowParser:
    # The same checks as POST /v1/stores, so a store imported is a store the API accepts.
    from geopush.api.errors import ApiError
    from geopush.api.stores import parse_store

    get = _columns_getter(positions, ("external_id", "name", "timezone", "lat", "lon"))
    hours_at = positions.get("opening_hours")
    categories_at = positions.get("categories")

    def parse(line: int, fields: list[str]) -> Row | str:
        if len(fields) != width:
            return _width_error(fields, width)
        external_id, name, timezone, lat, lon = get(fields)
        body: dict[str, Any] = {"external_id": external_id, "name": name,
                                "timezone": timezone}
        try:
            body["location"] = {"lat": float(lat), "lon": float(lon)}
        except ValueError:
            return f"lat, lon: not numbers: {_show(lat)}, {_show(lon)}"
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
        except ApiError as exc:
            return exc.message
        hours = store.get("opening_hours")
        return (line, store["external_id"], store["name"], store["timezone"], store["lat"],
                store["lon"], None if hours is None else json.dumps(hours),
                store.get("categories"))

    return parse


async def _merge_stores(conn: asyncpg.Connection, columns: frozenset[str]) -> dict[str, int]:
    # Upsert by external_id (the last line wins); a column the file lacks keeps its value.
    # Transactions imported before their store existed are linked to it now, so they count
    # for conversions from here on.
    row = await conn.fetchrow("""
        WITH up AS (
            INSERT INTO stores (store_id, external_id, name, timezone, lat, lon,
                                opening_hours, categories)
            SELECT gen_random_uuid(), external_id, name, timezone, lat, lon,
                   opening_hours::jsonb, coalesce(categories, '{}')
            FROM (
                SELECT DISTINCT ON (external_id) * FROM _import_stores
                ORDER BY external_id, line DESC
            ) latest ORDER BY external_id
            ON CONFLICT (external_id) DO UPDATE
            SET name = EXCLUDED.name, timezone = EXCLUDED.timezone, lat = EXCLUDED.lat,
                lon = EXCLUDED.lon,
                opening_hours = CASE WHEN $1 THEN EXCLUDED.opening_hours
                                     ELSE stores.opening_hours END,
                categories = CASE WHEN $2 THEN EXCLUDED.categories ELSE stores.categories END,
                updated_at = now()
            RETURNING (xmax = 0) AS created, external_id, store_id
        ), linked AS (
            UPDATE transactions t SET store_id = up.store_id
            FROM up WHERE t.store_id IS NULL AND t.store_external_id = up.external_id
            RETURNING 1
        )
        SELECT count(*) FILTER (WHERE created) AS created,
               count(*) FILTER (WHERE NOT created) AS updated,
               (SELECT count(*) FROM linked) AS transactions_linked
        FROM up
    """, "opening_hours" in columns, "categories" in columns)
    return dict(row)


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
    row_parser=_store_parser,
    merge=_merge_stores,
)

CSV_KINDS: dict[str, CsvKind] = {k.name: k for k in (CUSTOMERS, TRANSACTIONS, STORES)}


# --- the import ------------------------------------------------------------------------

def _header(kind: CsvKind, line: int, fields: list[str]) -> tuple[dict[str, int], list[str]]:
    """Column positions by name; ImportFailed when a required column is missing."""
    names = [f.strip().lower() for f in fields]
    expected = ",".join(kind.required)
    duplicated = sorted({n for n in names if names.count(n) > 1 and n})
    if duplicated:
        raise ImportFailed(f"header repeats {', '.join(duplicated)}; expected {expected}", line)
    missing = [c for c in kind.required if c not in names]
    if missing:
        raise ImportFailed(
            f"wrong header: expected {expected}; missing {', '.join(missing)}", line)
    positions = {n: i for i, n in enumerate(names) if n}
    known = set(kind.required) | set(kind.optional)
    ignored = [n for n in names if n and n not in known]
    return positions, ignored


async def _off_loop(take: Callable[[list[tuple[int, list[str]]]], None],
                    records: CsvRecords, chunk: bytes, *, final: bool = False) -> None:
    """Cut and check one chunk of CSV in a thread: a 1 MiB chunk is tens of milliseconds of
    work that must not hold the event loop (and the pings and `/healthz` sharing it)."""
    await asyncio.to_thread(lambda: take(records.feed(chunk, final=final)))


async def import_csv(conn: asyncpg.Connection, kind: CsvKind,
                     chunks: AsyncIterable[bytes]) -> dict[str, Any]:
    """Import one CSV stream in one transaction on `conn`; the counts and row errors.

    Raises ImportFailed (nothing written) when the stream is not a CSV file of this kind;
    exceptions raised by `chunks` (e.g. a size limit) also roll everything back.

    For a kind merged batch by batch, the merge of one batch runs in PostgreSQL while this
    process parses the next, so the two halves of the work share the machine's cores.
    """
    records = CsvRecords()
    errors = RowErrors()
    parse: RowParser | None = None
    positions: dict[str, int] = {}
    ignored: list[str] = []
    batch: list[Row] = []
    rows = 0
    totals: Counter[str] = Counter()
    merging: asyncio.Task[dict[str, int]] | None = None

    def take(found: list[tuple[int, list[str]]]) -> None:
        nonlocal parse, positions, ignored, rows
        start = 0
        if parse is None and found:
            line, fields = found[0]
            positions, ignored = _header(kind, line, fields)
            parse = kind.row_parser(positions, len(fields))
            start = 1
        if parse is None:
            return
        add_error, append = errors.add, batch.append
        for line, fields in found[start:] if start else found:
            result = parse(line, fields)
            if isinstance(result, str):
                add_error(line, result)
            else:
                append(result)
        rows += len(found) - start

    async def merge_batch() -> dict[str, int]:
        counts = await kind.merge(conn, frozenset(positions))
        await conn.execute(f"TRUNCATE {kind.staging_table}")
        return counts

    async def settle() -> None:
        nonlocal merging
        if merging is not None:
            task, merging = merging, None
            totals.update(await task)

    async def flush() -> None:
        nonlocal merging
        await settle()
        if batch:
            await conn.copy_records_to_table(kind.staging_table, records=batch,
                                             columns=list(kind.staging_columns))
            batch.clear()
            if kind.merge_each_batch:
                merging = asyncio.create_task(merge_batch())

    async with conn.transaction():
        try:
            if kind.feeds_segments:
                from geopush.crm.segments import SEGMENTS_LOCK

                await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", SEGMENTS_LOCK)
            await conn.execute("SET LOCAL work_mem = '64MB'")
            await conn.execute(kind.staging_ddl)
            async for chunk in chunks:
                await _off_loop(take, records, chunk)
                if len(batch) >= COPY_ROWS:
                    await flush()
            await _off_loop(take, records, b"", final=True)
            if parse is None:
                raise ImportFailed(
                    f"empty file; expected the header {','.join(kind.required)}")
            await flush()
            await settle()
            if not kind.merge_each_batch:
                totals.update(await kind.merge(conn, frozenset(positions)))
        finally:
            if merging is not None:
                # The connection must be idle before the transaction can roll back.
                with contextlib.suppress(Exception):
                    await merging
    result: dict[str, Any] = dict(totals)
    result.update(rows=rows, errors=errors.items, error_count=errors.count)
    if ignored:
        result["ignored_columns"] = ignored
    return result


async def import_stream(pool: asyncpg.Pool, config: Config, kind: str,
                        chunks: AsyncIterable[bytes], *, recompute: bool = True,
                        now: Callable[[], datetime] | None = None) -> dict[str, Any]:
    """Import a CSV stream of `kind`; after customers or transactions, recompute segments.

    The recompute runs after the import has committed, in its own transaction: the import
    stands even if it fails (the daily run will catch up), and its answer is included.
    """
    csv_kind = CSV_KINDS[kind]
    async with pool.acquire() as conn:
        result = await import_csv(conn, csv_kind, chunks)
    if recompute and csv_kind.feeds_segments:
        from geopush.crm.segments import recompute_segments

        clock = now or (lambda: datetime.now(UTC))
        result["segments"] = await recompute_segments(pool, config, clock())
    return result


async def import_geofences_file(pool: asyncpg.Pool, config: Config,
                                chunks: AsyncIterable[bytes]) -> dict[str, Any]:
    """A GeoJSON FeatureCollection, as `POST /v1/geofences/import` takes it, streamed."""
    from geopush.api.geofence_import import TooManyFeatures, import_geofence_stream
    from geopush.geo.feature_collection import FeatureCollectionError

    try:
        return await import_geofence_stream(pool, config, chunks)
    except (FeatureCollectionError, TooManyFeatures) as exc:
        raise ImportFailed(str(exc)) from None


async def _file_chunks(path: Path, progress: Any) -> AsyncIterator[bytes]:
    """The file's bytes in chunks, read off the event loop, advancing the progress bar."""
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, FILE_CHUNK):
            progress.update(len(chunk))
            yield chunk
    finally:
        handle.close()


async def run_import(pool: asyncpg.Pool, config: Config, kind: str, path: Path
                     ) -> dict[str, Any]:
    """`geopush import KIND FILE`: the import's answer, with a progress bar over bytes read.

    The CLI is the operator's own tool, so `[limits] max_import_bytes` (an HTTP limit) does
    not apply. A file that cannot be imported ends the command with its reason.
    """
    import click
    from tqdm import tqdm

    size = path.stat().st_size
    # disable=None: no bar when stderr is not a terminal (scripts, tests).
    with tqdm(total=size, unit="B", unit_scale=True, desc=f"import {kind}",
              disable=None) as progress:
        try:
            if kind != "geofences" and kind not in CSV_KINDS:
                raise ImportFailed(f"unknown import kind {kind!r}")
            async with contextlib.aclosing(_file_chunks(path, progress)) as chunks:
                if kind == "geofences":
                    return await import_geofences_file(pool, config, chunks)
                return await import_stream(pool, config, kind, chunks)
        except ImportFailed as exc:
            raise click.ClickException(f"{path}: {exc}; nothing was imported") from None
