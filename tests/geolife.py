"""Loading the real data of /work/shared/data for tests, replays and benchmarks.

- GeoLife (Microsoft Research): 217,653 GPS fixes of two people in Beijing, 2008, as
  `lat,lng,datetime,uid` (gzip). Its timestamps are GMT, so they are read as UTC.
- The Starbucks directory (2017): the Beijing stores are the rows whose city is Beijing
  (`北京市` in the file). The time zone `Asia/Beijing` is not enough: the directory gives it
  to all 2,731 stores of mainland China. Coordinates are rounded to 0.01° (about 1 km).

The directory is `GEOPUSH_SHARED_DATA` if set, else `../shared/data` next to the repository.
Loaders are cached: the file is read once per test session.
"""

from __future__ import annotations

import csv
import gzip
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

DATA_DIR = Path(
    os.environ.get("GEOPUSH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
GEOLIFE_FILE = DATA_DIR / "geolife_sample.txt.gz"
STARBUCKS_FILE = DATA_DIR / "starbucks_directory.csv"


@dataclass(frozen=True)
class Fix:
    """One GeoLife fix: UTC time and WGS84 position."""

    ts: datetime
    lat: float
    lon: float


@dataclass(frozen=True)
class Store:
    """A Starbucks store of the directory."""

    number: str
    name: str
    city: str
    timezone: str
    lon: float
    lat: float


def data_available() -> bool:
    return GEOLIFE_FILE.is_file() and STARBUCKS_FILE.is_file()


@cache
def geolife_fixes() -> dict[str, tuple[Fix, ...]]:
    """Fixes per user id ("001", "005"), sorted by time (ties keep file order)."""
    per_user: dict[str, list[Fix]] = {}
    with gzip.open(GEOLIFE_FILE, "rt", newline="") as file:
        for row in csv.DictReader(file):
            # fromisoformat is ~10x faster than strptime over 217k rows.
            ts = datetime.fromisoformat(row["datetime"]).replace(tzinfo=UTC)
            fix = Fix(ts=ts, lat=float(row["lat"]), lon=float(row["lng"]))
            per_user.setdefault(row["uid"], []).append(fix)
    return {uid: tuple(sorted(fixes, key=lambda f: f.ts)) for uid, fixes in per_user.items()}


@cache
def beijing_stores() -> tuple[Store, ...]:
    """The directory's Beijing stores, in file order."""
    stores = []
    with STARBUCKS_FILE.open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            city = row["City"].strip()
            if "北京" not in city and "beijing" not in city.lower():
                continue
            if not row["Longitude"] or not row["Latitude"]:
                continue
            stores.append(
                Store(
                    number=row["Store Number"],
                    name=row["store_name"],
                    city=row["City"],
                    timezone=row["Timezone"],
                    lon=float(row["Longitude"]),
                    lat=float(row["Latitude"]),
                )
            )
    return tuple(stores)
