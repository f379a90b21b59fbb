"""Streamed CSV imports: bytes in chunks → checked rows → COPY into staging → one merge.

A CSV file is never held in memory: bytes arrive in chunks (an HTTP body or a file), are
decoded and cut into records as they come, each record is checked by its kind's row parser
(`customer_rows`, `transaction_rows`, `store_rows`), and the good ones are COPYed in batches
(`copy_records_to_table`, binary) into a temporary staging table. `INSERT … SELECT … ON
CONFLICT` then moves them into place, so the duplicate checks (within the file and against
the database) and store lookups are set operations in PostgreSQL, not a query per row.
Transactions, the big files, are merged batch by batch while the next batch is parsed;
customers and stores once at the end (their last line wins).

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
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from geopush.errors import DomainError, Invalid

#: Good rows sent to PostgreSQL per COPY.
COPY_ROWS = 25_000
#: Per-row errors kept in the answer; the rest are only counted.
MAX_ERRORS = 1000
#: Longest unfinished record kept while waiting for more bytes (a line with no end, or a
#: quote never closed, is not a CRM export).
MAX_RECORD_CHARS = 1024 * 1024
FILE_CHUNK = 1024 * 1024

Row = tuple[Any, ...]
RowParser = Callable[[int, list[str]], "Row | str"]


class ImportFailed(Invalid):
    """The file as a whole cannot be imported; nothing was written (400 `invalid_csv`)."""

    code = "invalid_csv"

    def __init__(self, reason: str, line: int | None = None) -> None:
        where = reason if line is None else f"line {line}: {reason}"
        DomainError.__init__(self, f"{where}; nothing was imported",
                             details=[] if line is None else [{"line": line, "reason": reason}])
        self.field = None
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


def read_header(kind: CsvKind, line: int, fields: list[str]
                ) -> tuple[dict[str, int], list[str]]:
    """Column positions by name, and the columns ignored; ImportFailed when one is missing."""
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
            positions, ignored = read_header(kind, line, fields)
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


async def file_chunks(path: Path, progress: Any = None) -> AsyncGenerator[bytes, None]:
    """The file's bytes in chunks, read off the event loop, advancing a progress bar."""
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, FILE_CHUNK):
            if progress is not None:
                progress.update(len(chunk))
            yield chunk
    finally:
        handle.close()
