"""Moved to `geopush.api.runtime` (the HTTP layer's per-process state); this name stays
only so code written against the old path keeps importing until it is updated."""

from geopush.api.runtime import RUNTIME, Runtime, utc_now

__all__ = ["RUNTIME", "Runtime", "utc_now"]
