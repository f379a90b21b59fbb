"""The incremental FeatureCollection reader: the same features wherever the bytes are cut,
and a clear refusal of anything that is not a FeatureCollection."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geopush.geo.feature_collection import FeatureCollectionError, FeatureCollectionReader


def read(text: str, cuts: list[int]) -> tuple[FeatureCollectionReader, list[Any]]:
    data = text.encode()
    reader, out, at = FeatureCollectionReader(), [], 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        out += reader.feed(data[at:cut])
        at = max(at, cut)
    out += reader.feed(data[at:], final=True)
    return reader, out


COLLECTION = {
    "type": "FeatureCollection", "name": "shops é", "bbox": [1, 2.5, 3e2, -4],
    "features": [
        {"type": "Feature", "id": i, "properties": {"name": f"n\"{i}ä", "radius_m": 12.5e1},
         "geometry": {"type": "Point", "coordinates": [116.4 + i, -39.9]}}
        for i in range(20)
    ],
}


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=40),
       indent=st.sampled_from([None, 1]))
def test_the_same_features_wherever_the_bytes_are_cut(cuts: list[int], indent: Any) -> None:
    reader, features = read(json.dumps(COLLECTION, indent=indent, ensure_ascii=False), cuts)
    assert features == COLLECTION["features"]
    assert reader.collection_type == "FeatureCollection" and reader.has_features
    assert reader.features_seen == 20


def test_numbers_cut_in_the_middle_are_read_whole() -> None:
    text = '{"features": [12, 3.5e10, -7], "type": 123}'
    reader, out = read(text, list(range(len(text))))  # a byte at a time
    assert out == [12, 3.5e10, -7] and reader.collection_type == 123


@pytest.mark.parametrize("text", [
    "[]", '{"features": {}}', '{"type": "x",}', '{"a" 1}', '{"features": [1 2]}',
    '{"features": [1,]}', "{}x", '{"a": 1', "", '{"a": tru}', '{"features": [{"a": 1}]]}',
    '{"features": [[[[' + "[" * 100_000,
])
def test_what_is_not_a_json_object_with_a_features_array_is_refused(text: str) -> None:
    for cuts in ([], [1, 3, 7], list(range(0, len(text), 5))):
        with pytest.raises(FeatureCollectionError):
            read(text, cuts)


def test_bytes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(FeatureCollectionError, match="UTF-8"):
        FeatureCollectionReader().feed(b'{"features": ["\xff"]}', final=True)


def test_a_feature_longer_than_the_limit_is_refused_before_its_end_arrives() -> None:
    reader = FeatureCollectionReader(max_feature_chars=1000)
    reader.feed(b'{"features": [{"name": "')
    with pytest.raises(FeatureCollectionError, match="longer than 1000"):
        for _ in range(20):
            reader.feed(b"x" * 100)
