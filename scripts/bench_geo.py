#!/usr/bin/env python3
"""Geofence matching: `GeofenceIndex.locate` against Shapely's STRtree and PostGIS, on the
same GeoLife pings and the same fences (around the Beijing stores; 2/3 circles, 1/3 squares).

    .venv/bin/python scripts/bench_geo.py [--pings 20000] [--no-postgis] [--no-write]

Peers, all answering "which fences contain this point" (geopush also answers "which are
within the 20 m exit buffer", and measures circles geodesically, not as polygons):
- Shapely 2 STRtree of the fence polygons (circles as 64-gons), `query(..., "intersects")`
  with one point per call and with 500 points per call;
- PostGIS (GiST index on geometry), one set-based query per 500 points and one query per
  point, in a Debian PostgreSQL cluster made for the run (`pg_createcluster`; skipped with
  a note when `postgresql-*-postgis-3` is not installed).
geopush and Shapely are timed on CPU time of this process (one core); PostGIS on wall time
of one connection (one server core; the client waits).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geopush.geo.earth import WGS84
from geopush.geo.geometry import parse_geometry
from geopush.geo.index import GeofenceIndex
from scripts.bench_report import command, machine, table, write_section
from tests.geolife import beijing_stores, geolife_fixes

BUFFER_M = 20.0


def fences(n: int, circles_only: bool = False) -> dict[str, dict]:
    """`n` fences scattered within ±0.02° of the Beijing stores (a fixed seed)."""
    rng = random.Random(7)
    stores = beijing_stores()
    out = {}
    for i in range(n):
        s = stores[i % len(stores)]
        lon, lat = s.lon + rng.uniform(-0.02, 0.02), s.lat + rng.uniform(-0.02, 0.02)
        if circles_only or i % 3:
            out[f"c{i}"] = {"type": "Circle", "center": [lon, lat],
                            "radius_m": rng.uniform(50, 300)}
        else:
            d = rng.uniform(0.0005, 0.002)
            ring = [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]
            out[f"p{i}"] = {"type": "Polygon", "coordinates": [ring]}
    return out


def polygon_of(g: dict) -> shapely.Polygon:
    """The fence as a lon/lat polygon: a circle becomes a geodesic 64-gon."""
    if g["type"] == "Circle":
        lon, lat = g["center"]
        az = np.linspace(0, 360, 64, endpoint=False)
        x, y, _ = WGS84.fwd(np.full(64, lon), np.full(64, lat), az, np.full(64, g["radius_m"]))
        return shapely.Polygon(np.column_stack([x, y]))
    return shapely.Polygon(g["coordinates"][0])


def best(fn, repeat: int = 3, clock=time.process_time) -> float:
    """The fastest of `repeat` runs of fn(), in seconds of `clock`."""
    times = []
    for _ in range(repeat):
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times)


def run_geopush(index: GeofenceIndex, lons: np.ndarray, lats: np.ndarray,
                singles: int) -> dict[str, float]:
    index.locate(lons[:1], lats[:1], BUFFER_M)
    index.locate(lons[:500], lats[:500], BUFFER_M)

    def bulk() -> None:
        for i in range(0, len(lons), 500):
            index.locate(lons[i:i + 500], lats[i:i + 500], BUFFER_M)

    def single() -> None:
        for i in range(singles):
            index.locate(lons[i:i + 1], lats[i:i + 1], BUFFER_M)
    return {"bulk": len(lons) / best(bulk), "single": singles / best(single)}


def run_shapely(polys: list[shapely.Polygon], lons: np.ndarray, lats: np.ndarray,
                singles: int) -> dict[str, float]:
    tree = shapely.STRtree(polys)
    points = shapely.points(lons, lats)
    for p in polys:
        shapely.prepare(p)

    def bulk() -> None:
        for i in range(0, len(points), 500):
            tree.query(points[i:i + 500], predicate="intersects")

    def single() -> None:
        for i in range(singles):
            tree.query(points[i], predicate="intersects")
    return {"bulk": len(points) / best(bulk), "single": singles / best(single)}


def agreement(index: GeofenceIndex, polys: list[shapely.Polygon], ids: list[str],
              lons: np.ndarray, lats: np.ndarray) -> float:
    """Share of points where geopush's inside set equals Shapely's (circles as 64-gons
    differ from true circles by up to 0.1 % of r at the edge, so a few points differ)."""
    ours = index.locate(lons, lats, BUFFER_M)[0]
    p, f = shapely.STRtree(polys).query(shapely.points(lons, lats), predicate="intersects")
    theirs: list[set[str]] = [set() for _ in range(len(lons))]
    for i, j in zip(p.tolist(), f.tolist(), strict=True):
        theirs[i].add(ids[j])
    return sum(set(a) == b for a, b in zip(ours, theirs, strict=True)) / len(lons)


class PostGis:
    """A throwaway Debian PostgreSQL cluster with PostGIS, for the peer measurement."""

    def __init__(self) -> None:
        self.version = self._version()
        self.name, self.port = "geopushbench", 5497

    @staticmethod
    def _version() -> str | None:
        if shutil.which("pg_createcluster") is None:
            return None
        for v in ("18", "17", "16", "15"):
            if Path(f"/usr/share/postgresql/{v}/extension/postgis.control").exists():
                return v
        return None

    def __enter__(self) -> PostGis:
        subprocess.run(["pg_dropcluster", "--stop", self.version, self.name],
                       capture_output=True, check=False)
        subprocess.run(["pg_createcluster", self.version, self.name, "-p", str(self.port),
                        "--start", "--", "--auth=trust"], check=True, capture_output=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["pg_dropcluster", "--stop", self.version, self.name],
                       capture_output=True, check=False)

    async def measure(self, polys: list[shapely.Polygon], lons: np.ndarray, lats: np.ndarray,
                      singles: int) -> dict[str, float]:
        import asyncpg

        conn = await asyncpg.connect(host="/var/run/postgresql", port=self.port,
                                     user="postgres", database="postgres")
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            await conn.execute("DROP TABLE IF EXISTS fences; CREATE TABLE fences"
                               " (id int PRIMARY KEY, geom geometry(Polygon, 4326))")
            await conn.execute(
                "INSERT INTO fences SELECT i, ST_GeomFromWKB(w, 4326)"
                " FROM unnest($1::int[], $2::bytea[]) AS u(i, w)",
                list(range(len(polys))), [shapely.to_wkb(p) for p in polys])
            await conn.execute("CREATE INDEX ON fences USING gist (geom); ANALYZE fences")
            batch = await conn.prepare(
                "SELECT p.i, f.id FROM unnest($1::float8[], $2::float8[]) WITH ORDINALITY"
                " AS p(x, y, i) JOIN fences f"
                " ON ST_Intersects(f.geom, ST_SetSRID(ST_MakePoint(p.x, p.y), 4326))")
            one = await conn.prepare(
                "SELECT id FROM fences"
                " WHERE ST_Intersects(geom, ST_SetSRID(ST_MakePoint($1, $2), 4326))")
            xs, ys = lons.tolist(), lats.tolist()
            await batch.fetch(xs[:500], ys[:500])
            times = []
            for _ in range(3):
                t = time.perf_counter()
                for i in range(0, len(xs), 500):
                    await batch.fetch(xs[i:i + 500], ys[i:i + 500])
                times.append(time.perf_counter() - t)
            bulk = len(xs) / min(times)
            times = []
            for _ in range(3):
                t = time.perf_counter()
                for i in range(singles):
                    await one.fetch(xs[i], ys[i])
                times.append(time.perf_counter() - t)
            return {"bulk": bulk, "single": singles / min(times)}
        finally:
            await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pings", type=int, default=20_000)
    ap.add_argument("--singles", type=int, default=3_000, help="points for 1-point calls")
    ap.add_argument("--no-postgis", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    started = machine()
    fixes = [f for track in geolife_fixes().values() for f in track][: args.pings]
    lons = np.array([f.lon for f in fixes])
    lats = np.array([f.lat for f in fixes])

    rows, notes = [], []
    postgis = None if args.no_postgis else PostGis()
    if postgis is not None and postgis.version is None:
        notes.append("PostGIS: not measured (no `postgresql-*-postgis-3` package installed:"
                     " `apt-get install postgresql-15-postgis-3`).")
        postgis = None
    for n in (10_000, 100_000):
        geoms = fences(n)
        t = time.perf_counter()
        index = GeofenceIndex.build((gid, parse_geometry(g)) for gid, g in geoms.items())
        index.locate(lons[:1], lats[:1], BUFFER_M)
        build_s = time.perf_counter() - t
        ids = list(geoms)
        polys = [polygon_of(g) for g in geoms.values()]
        ours = run_geopush(index, lons, lats, args.singles)
        peer = run_shapely(polys, lons, lats, args.singles)
        agree = agreement(index, polys, ids, lons, lats)
        pg = None
        if postgis is not None:
            with postgis:
                pg = asyncio.run(postgis.measure(polys, lons, lats, args.singles))
        print(f"{n} fences: build {build_s:.2f} s; geopush {ours}; shapely {peer}; "
              f"postgis {pg}; agreement {agree:.2%}")
        rows.append([f"{n:,}", "500 points/call", ours["bulk"], peer["bulk"],
                     pg["bulk"] if pg else "—", f"{ours['bulk'] / peer['bulk']:.2f}×",
                     f"{ours['bulk'] / pg['bulk']:.1f}×" if pg else "—"])
        rows.append([f"{n:,}", "1 point/call", ours["single"], peer["single"],
                     pg["single"] if pg else "—", f"{ours['single'] / peer['single']:.2f}×",
                     f"{ours['single'] / pg['single']:.1f}×" if pg else "—"])
        notes.append(f"{n:,} fences: index build and first grid {build_s:.2f} s; inside sets"
                     f" equal to Shapely's 64-gon answer for {agree:.2%} of points.")
    body = "\n".join([
        f"Run: {started}.", "", "```", command(), "```", "",
        f"{len(lons):,} GeoLife pings; fences within ±0.02° of the Beijing stores (2/3"
        " circles of 50–300 m, 1/3 squares); geopush answers inside **and** within 20 m.",
        "Points per second: geopush and Shapely per core (CPU time of the process), PostGIS"
        f" on wall time of one connection (PostgreSQL {postgis.version if postgis else '—'}"
        " from Debian's packages, GiST index, set-based `unnest … JOIN … ST_Intersects` per"
        " 500 points / one prepared query per point).", "",
        table(["fences", "call size", "geopush", "Shapely STRtree", "PostGIS",
               "geopush ÷ Shapely", "geopush ÷ PostGIS"], rows),
        "", *[f"- {n}" for n in notes],
    ])
    if not args.no_write:
        write_section("geo", "Geofence matching — `scripts/bench_geo.py`", body)


if __name__ == "__main__":
    main()
