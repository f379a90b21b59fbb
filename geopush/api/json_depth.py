"""How deeply JSON nests: anything deeper than a few dozen levels is no document geopush
reads (a FeatureCollection of MultiPolygons nests 8 deep), so past MAX_DEPTH it is bad input.

Two measures of the same thing, for two sizes of body (`api/body.py` picks one). A large
body is scanned as bytes before parsing: strings are cut out first (a bracket inside a
string does not nest), then the running depth of the remaining brackets is a cumulative sum
in numpy, so a 100 MiB import costs milliseconds, not a Python loop per byte. A small one
is parsed first (`json` refuses the absurd with its own recursion guard) and its decoded
containers are measured level by level, cheaper than the byte scan for a ping batch.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

MAX_DEPTH = 32

# A JSON string: possessive, so a long string is matched in one pass without backtracking.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = np.zeros(256, dtype=np.int8)
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1
_CHUNK = 8 * 1024 * 1024


def json_depth_exceeds(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when arrays and objects in `raw` nest more than `limit` levels deep.

    For text that is not valid JSON the answer may be either; the parser then refuses it.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = 0
    for start in range(0, len(brackets), _CHUNK):
        steps = _STEP[np.frombuffer(brackets, dtype=np.uint8, count=min(
            _CHUNK, len(brackets) - start), offset=start)].astype(np.int64)
        running = np.cumsum(steps) + depth
        if running.size and int(running.max()) > limit:
            return True
        depth = int(running[-1]) if running.size else depth
    return False


_CONTAINERS = (dict, list)


def nested_deeper_than(value: object, limit: int = MAX_DEPTH) -> bool:
    """The same measure on a decoded value: its containers, one level at a time (no
    recursion, and nothing but containers is looked at twice)."""
    level: list[Any] = [value] if type(value) in _CONTAINERS else []
    depth = 1
    while level:
        if depth > limit:
            return True
        below: list[Any] = []
        for item in level:
            values = item.values() if type(item) is dict else item
            below.extend([v for v in values if type(v) is dict or type(v) is list])
        level, depth = below, depth + 1
    return False
