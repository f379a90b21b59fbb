"""A geofence index that takes one change at the cost of one fence.

Building `GeofenceIndex` over 100k fences is about a second of one core: paid on every
change, a single new circle took seconds to apply and held the interpreter lock long enough
to slow every request in the process. Here the big index (the *base*) is built rarely; the
fences changed since sit in a small index of their own (the *overlay*), and the base's
copies of changed or deleted fences are *hidden*. A lookup asks both and merges: the base's
answer without the hidden ids, plus the overlay's. When the overlay grows past a few
thousand fences, the owner folds everything into a new base.

Same answers as one `GeofenceIndex` over the current fences, by construction: every current
fence is in exactly one of (base minus hidden) and overlay.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from geopush.geo.geometry import Fence
from geopush.geo.index import GeofenceIndex


class LayeredIndex:
    """A base index, an overlay of changed fences, and the base's ids they replace."""

    def __init__(self, base: GeofenceIndex, overlay: GeofenceIndex | None = None,
                 hidden: frozenset[str] = frozenset(),
                 base_ids: frozenset[str] | None = None) -> None:
        self.base = base
        self.overlay = overlay if overlay is not None and len(overlay) else None
        self.hidden = hidden
        # Kept with the base: a change asks which of its ids the base holds.
        self._base_ids = base_ids if base_ids is not None else frozenset(base.ids)

    @classmethod
    def build(cls, entries: Iterable[tuple[str, Fence]]) -> LayeredIndex:
        """Everything in the base (a full load, or folding an overlay that grew large)."""
        return cls(GeofenceIndex.build(entries))

    def with_changes(self, overlay: Iterable[tuple[str, Fence]],
                     changed: Iterable[str]) -> LayeredIndex:
        """This base with a new overlay: `overlay` holds every fence changed since the base
        was built that still exists; `changed` every such id, deleted ones included."""
        return LayeredIndex(self.base, GeofenceIndex.build(overlay),
                            frozenset(gid for gid in changed if gid in self._base_ids),
                            self._base_ids)

    def prepare(self, buffer_m: float) -> LayeredIndex:
        self.base.prepare(buffer_m)
        if self.overlay is not None:
            self.overlay.prepare(buffer_m)
        return self

    def __len__(self) -> int:
        return len(self.base) - len(self.hidden) + self.overlay_size

    @property
    def overlay_size(self) -> int:
        return len(self.overlay) if self.overlay is not None else 0

    @property
    def ids(self) -> tuple[str, ...]:
        overlay = self.overlay.ids if self.overlay is not None else ()
        return tuple(gid for gid in self.base.ids if gid not in self.hidden) + overlay

    def locate(
        self, lons: NDArray[np.float64], lats: NDArray[np.float64], buffer_m: float
    ) -> tuple[list[frozenset[str]], list[frozenset[str]]]:
        """As `GeofenceIndex.locate`, over the current fences."""
        inside, near = self.base.locate(lons, lats, buffer_m)
        if self.overlay is None and not self.hidden:
            return inside, near
        if self.hidden:
            hidden = self.hidden
            inside = [s - hidden if s and not s.isdisjoint(hidden) else s for s in inside]
            near = [s - hidden if s and not s.isdisjoint(hidden) else s for s in near]
        if self.overlay is not None:
            more_inside, more_near = self.overlay.locate(lons, lats, buffer_m)
            inside = [a | b if b else a for a, b in zip(inside, more_inside, strict=True)]
            near = [a | b if b else a for a, b in zip(near, more_near, strict=True)]
        return inside, near
