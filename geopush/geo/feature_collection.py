"""Incremental reading of a GeoJSON FeatureCollection: bytes in, complete features out.

A geofence import can be 100 MiB. Decoding it whole (`json.loads`) holds the process for
seconds and its objects take several times the file's size. This reader takes the bytes
as they arrive and hands out each feature as soon as its last byte is in, so the work per
call is proportional to the bytes given, and only one feature is ever held undecoded.

Only the top level is scanned here (`{`, keys, `:`, `,`, the `features` array); every
value, and every feature, is decoded by the standard library's C decoder (`raw_decode`).
A value cut by the end of the bytes received so far is simply retried when more come.

Pure: values in, values out; `FeatureCollectionError` says why the text is refused.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

from geopush.errors import Invalid

#: The longest single feature (or other top-level value) kept while waiting for its end.
#: The API's own limit on a geometry (2,000 vertices) is about 60 KB of JSON.
MAX_FEATURE_CHARS = 4 * 1024 * 1024

_WHITESPACE = " \t\n\r"
_NUMBER_CHARS = "0123456789.eE+-"
_decoder = json.JSONDecoder()


class FeatureCollectionError(Invalid, ValueError):
    """The text is not a GeoJSON FeatureCollection (or not JSON at all) (400)."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message)


class _Incomplete(Exception):
    """The value runs past the bytes received so far."""


class FeatureCollectionReader:
    """Feed bytes with `feed`; each call returns the features completed by them.

    After the final feed, `collection_type` is the top-level `type` (the caller checks it
    is "FeatureCollection") and `has_features` says whether a `features` array was seen.
    """

    def __init__(self, max_feature_chars: int = MAX_FEATURE_CHARS) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._text = ""
        self._pos = 0
        self._max = max_feature_chars
        # Where the scanner is: "start" ("{"), "first_key" (a key or "}"), "key",
        # "colon", "value", "key_sep" ("," or "}"), "features" ("["), "first_item"
        # (a feature or "]"), "item", "item_sep" ("," or "]"), "end".
        self._state = "start"
        self._key: Any = ""
        self._retry_at = 0
        self.collection_type: Any = None
        self.has_features = False
        self.features_seen = 0

    def feed(self, data: bytes, *, final: bool = False) -> list[Any]:
        try:
            text = self._utf8.decode(data, final)
        except UnicodeDecodeError as exc:
            raise FeatureCollectionError(f"not UTF-8 text: {exc.reason}") from None
        self._text = self._text[self._pos:] + text
        self._pos = 0
        out: list[Any] = []
        if not final and len(self._text) < self._retry_at:
            return out  # the value cut last time cannot be whole yet: wait for more bytes
        try:
            self._scan(out, final)
            self._retry_at = 0
        except _Incomplete:
            if final:
                raise FeatureCollectionError("the JSON text ends too early") from None
            pending = len(self._text) - self._pos
            if pending > self._max:
                raise FeatureCollectionError(
                    f"a feature longer than {self._max} characters") from None
            # Decode a cut value again only once the bytes waiting have doubled, so a long
            # value arriving in small pieces costs linear, not quadratic, work.
            self._retry_at = 2 * pending
        if final and self._state != "end":
            raise FeatureCollectionError("the JSON text ends too early")
        return out

    # --- the scanner ------------------------------------------------------------------

    def _scan(self, out: list[Any], final: bool) -> None:
        while True:
            c = self._next_char()
            state = self._state
            if not c:
                if state == "end":
                    return
                raise _Incomplete
            if state == "start":
                if c != "{":
                    raise FeatureCollectionError("expected a JSON object (a FeatureCollection)")
                self._pos += 1
                self._state = "first_key"
            elif state in ("first_key", "key_sep"):
                if c == "}":
                    self._pos += 1
                    self._state = "end"
                elif state == "first_key":
                    self._state = "key"
                elif c == ",":
                    self._pos += 1
                    self._state = "key"
                else:
                    raise FeatureCollectionError(f"expected ',' or '}}' at character {self._pos}")
            elif state == "key":
                if c != '"':
                    raise FeatureCollectionError(
                        f"expected a member name at character {self._pos}")
                self._key = self._value(final)
                self._state = "colon"
            elif state == "colon":
                if c != ":":
                    raise FeatureCollectionError(f"expected ':' at character {self._pos}")
                self._pos += 1
                self._state = "features" if self._key == "features" else "value"
            elif state == "value":
                value = self._value(final)
                if self._key == "type":
                    self.collection_type = value
                self._state = "key_sep"
            elif state == "features":
                if c != "[":
                    raise FeatureCollectionError("'features' must be an array")
                self._pos += 1
                self.has_features = True
                self._state = "first_item"
            elif state in ("first_item", "item_sep"):
                if c == "]":
                    self._pos += 1
                    self._state = "key_sep"
                elif state == "first_item":
                    self._state = "item"
                elif c == ",":
                    self._pos += 1
                    self._state = "item"
                else:
                    raise FeatureCollectionError(
                        f"expected ',' or ']' after feature {self.features_seen - 1}")
            elif state == "item":
                out.append(self._value(final))
                self.features_seen += 1
                self._state = "item_sep"
            else:  # "end": only whitespace may follow
                raise FeatureCollectionError("unexpected text after the JSON object")

    def _next_char(self) -> str:
        """The next non-blank character (blanks before it consumed); "" at the end."""
        text, pos = self._text, self._pos
        while pos < len(text) and text[pos] in _WHITESPACE:
            pos += 1
        self._pos = pos
        return text[pos] if pos < len(text) else ""

    def _value(self, final: bool) -> Any:
        """Decode the value at the position, or _Incomplete when it may not be whole yet."""
        text, pos = self._text, self._pos
        try:
            value, end = _decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            # Cut by the end of the bytes so far, not wrong: retried with more bytes.
            cut = exc.msg.startswith("Unterminated string") or exc.pos >= len(text) - 6
            if cut and not final:
                raise _Incomplete from None
            raise FeatureCollectionError(f"not valid JSON: {exc}") from None
        except RecursionError:
            raise FeatureCollectionError("not valid JSON: nested too deeply") from None
        if not final and (end >= len(text) or (
                isinstance(value, int | float) and not text[end:].strip(_NUMBER_CHARS))):
            raise _Incomplete  # a number may go on in the next bytes: wait for them
        self._pos = end
        return value

