"""Stored visit events as columns of integers, the form the fast replay walks.

A million asyncpg Records and as many `ReplayEvent` dataclasses cost seconds before any
decision is made; here the events arrive as one binary COPY parsed by numpy in one go:
times become epoch microseconds (exact, no float), and the repeated ids (devices; the
trigger, geofence and store of each event) become indexes into short lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import numpy as np
import numpy.typing as npt

from geopush.codes import EventType

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]

#: A visit key: what `candidate_offers` looks at (trigger, geofence, store).
Key = tuple[EventType, str, str | None]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# PostgreSQL's binary timestamptz counts microseconds from 2000-01-01 UTC.
_PG_EPOCH_US = 946_684_800_000_000
_TYPES = (EventType.ENTER, EventType.DWELL, EventType.EXIT)
_NIL = b"\0" * 16
_SIGNATURE = b"PGCOPY\n\xff\r\n\0"
# One row: field count; then (length, value) for created_at, ts, type code, geofence, store
# and device, every one NOT NULL (the query coalesces store and device to the nil uuid).
_ROW = np.dtype([
    ("n", ">i2"), ("l_now", ">i4"), ("now", ">i8"), ("l_ts", ">i4"), ("ts", ">i8"),
    ("l_type", ">i4"), ("type", ">i2"), ("l_fence", ">i4"), ("fence", "V16"),
    ("l_store", ">i4"), ("store", "V16"), ("l_device", ">i4"), ("device", "V16"),
])
_LENGTHS = {"n": 6, "l_now": 8, "l_ts": 8, "l_type": 2, "l_fence": 16, "l_store": 16,
            "l_device": 16}


#: The select list of a query whose binary COPY (`copy_from_query(..., format="binary")`)
#: `from_copy` parses: the type as a code, store and device never NULL.
COPY_COLUMNS = (
    "created_at, ts, (CASE type WHEN 'enter' THEN 0 WHEN 'dwell' THEN 1 ELSE 2 END)::int2,"
    " geofence_id, coalesce(store_id, '00000000-0000-0000-0000-000000000000'::uuid),"
    " coalesce(device_id, '00000000-0000-0000-0000-000000000000'::uuid)")


def to_us(value: datetime) -> int:
    """Epoch microseconds of an aware datetime, in integers (no float rounding)."""
    return (value - EPOCH) // _US


@dataclass(frozen=True)
class EventColumns:
    """Events in decision order: `now_us`/`ts_us` epoch µs of `created_at` and of the
    device time, `key` an index into `keys`, `device` an index into `devices` (None: an
    event whose device row is gone)."""

    now_us: I64
    ts_us: I64
    key: I32
    keys: list[Key]
    device: I32
    devices: list[str | None]

    def __len__(self) -> int:
        return len(self.now_us)

    def take(self, picked: npt.NDArray[np.bool_]) -> EventColumns:
        """The events where `picked` is true, in the same order."""
        return EventColumns(self.now_us[picked], self.ts_us[picked], self.key[picked],
                            self.keys, self.device[picked], self.devices)


def from_events(rows: Sequence[tuple[datetime, datetime, EventType | str, str, str | None,
                                     str | None]]) -> EventColumns:
    """Columns of rows (now, ts, type, geofence_id, store_id, device_id) as the Records
    path reads them; for tests and small inputs."""
    keys: dict[Key, int] = {}
    devices: dict[str | None, int] = {}
    n = len(rows)
    now, ts = np.empty(n, np.int64), np.empty(n, np.int64)
    key, device = np.empty(n, np.int32), np.empty(n, np.int32)
    for i, (at, when, kind, fence, store, dev) in enumerate(rows):
        now[i], ts[i] = to_us(at), to_us(when)
        key[i] = keys.setdefault((EventType(kind), fence, store), len(keys))
        device[i] = devices.setdefault(dev, len(devices))
    return EventColumns(now, ts, key, list(keys), device, list(devices))


def from_copy(data: bytes | bytearray) -> EventColumns:
    """Parse the binary COPY of `copy_query`."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a binary COPY")
    extension = int.from_bytes(data[15:19], "big")
    start = 19 + extension
    if len(data) < start + 2 or data[-2:] != b"\xff\xff":
        raise ValueError("binary COPY without its trailer")
    body = memoryview(data)[start:len(data) - 2]
    if len(body) % _ROW.itemsize:
        raise ValueError("binary COPY rows of an unexpected size")
    rows = np.frombuffer(body, dtype=_ROW)
    for name, expected in _LENGTHS.items():
        if len(rows) and not bool(np.all(rows[name] == expected)):
            raise ValueError(f"binary COPY column {name} of an unexpected length")
    now = rows["now"].astype(np.int64) + _PG_EPOCH_US
    ts = rows["ts"].astype(np.int64) + _PG_EPOCH_US
    fences, fence_idx = _ids(rows["fence"])
    stores, store_idx = _ids(rows["store"])
    devices, device_idx = _ids(rows["device"])
    kind = rows["type"].astype(np.int64)
    combined = (kind * len(stores) + store_idx) * max(len(fences), 1) + fence_idx
    unique, key = np.unique(combined, return_inverse=True)
    keys: list[Key] = []
    for value in unique.tolist():
        rest, f = divmod(value, max(len(fences), 1))
        t, s = divmod(rest, max(len(stores), 1))
        fence = fences[f]
        assert fence is not None
        keys.append((_TYPES[t], fence, stores[s]))
    return EventColumns(now, ts, key.astype(np.int32).reshape(-1), keys,
                        device_idx.astype(np.int32), devices)


def _ids(column: npt.NDArray[np.void]) -> tuple[list[str | None], npt.NDArray[np.int64]]:
    """Distinct uuids (as text; the nil uuid as None) and each row's index among them.

    Sorted as two native 64-bit halves (`np.unique(axis=0)` on the 16 bytes took seconds)."""
    pairs = np.ascontiguousarray(column).view(">u8").reshape(-1, 2).astype(np.uint64)
    if not len(pairs):
        return [], np.zeros(0, np.int64)
    high, low = pairs[:, 0], pairs[:, 1]
    order = np.lexsort((low, high))
    high, low = high[order], low[order]
    first = np.ones(len(order), np.bool_)
    first[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
    index = np.empty(len(order), np.int64)
    index[order] = np.cumsum(first) - 1
    names: list[str | None] = []
    for h, lo in zip(high[first].tolist(), low[first].tolist(), strict=True):
        raw = int(h).to_bytes(8, "big") + int(lo).to_bytes(8, "big")
        names.append(None if raw == _NIL else str(UUID(bytes=raw)))
    return names, index
