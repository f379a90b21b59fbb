"""The binary COPY of the preview's events reads back as the rows it holds: times to the
microsecond, the nil uuid (a NULL store or device) as None, keys and devices numbered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import numpy as np
import pytest

from geopush.codes import EventType
from geopush.foresight import columns
from geopush.foresight.columns import from_copy, from_events

AT = datetime(2026, 11, 30, 12, 0, 0, 123_456, tzinfo=UTC)
FENCE, STORE, DEVICE = (str(UUID(int=i)) for i in (0xF1, 0x51, 0xD1))
NIL = str(UUID(int=0))
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _copy(rows: list[tuple[datetime, datetime, int, str, str, str]]) -> bytes:
    """What PostgreSQL sends for `SELECT COPY_COLUMNS ...` in binary."""
    out = np.zeros(len(rows), dtype=columns._ROW)
    for name, length in columns._LENGTHS.items():
        out[name] = length
    for i, (now, ts, kind, fence, store, device) in enumerate(rows):
        out[i]["now"] = (now - PG_EPOCH) // timedelta(microseconds=1)
        out[i]["ts"] = (ts - PG_EPOCH) // timedelta(microseconds=1)
        out[i]["type"] = kind
        for name, value in (("fence", fence), ("store", store), ("device", device)):
            out[i][name] = np.frombuffer(UUID(value).bytes, dtype="V16")[0]
    return columns._SIGNATURE + bytes(8) + out.tobytes() + b"\xff\xff"


def test_a_binary_copy_reads_back_as_its_rows() -> None:
    rows = [(AT, AT - timedelta(seconds=2), 0, FENCE, STORE, DEVICE),
            (AT + timedelta(microseconds=1), AT, 2, FENCE, NIL, NIL),
            (AT + timedelta(days=3), AT, 1, FENCE, STORE, DEVICE)]
    got = from_copy(_copy(rows))
    want = from_events([(r[0], r[1], (EventType.ENTER, EventType.DWELL, EventType.EXIT)[r[2]],
                         r[3], None if r[4] == NIL else r[4], None if r[5] == NIL else r[5])
                        for r in rows])
    assert got.now_us.tolist() == want.now_us.tolist()
    assert got.ts_us.tolist() == want.ts_us.tolist()
    assert [got.keys[k] for k in got.key.tolist()] == [want.keys[k] for k in want.key.tolist()]
    assert [got.devices[d] for d in got.device.tolist()] == [DEVICE, None, DEVICE]
    assert len(from_copy(_copy([]))) == 0


def test_a_copy_of_another_shape_is_refused() -> None:
    with pytest.raises(ValueError):
        from_copy(b"not a copy")
    data = bytearray(_copy([(AT, AT, 0, FENCE, STORE, DEVICE)]))
    data[19 + 4] = 9  # the length before created_at no longer says 8 bytes
    with pytest.raises(ValueError):
        from_copy(bytes(data))
