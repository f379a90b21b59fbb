"""The demo's CRM: customers and purchase histories that put someone in every FRAT segment.

The phones' customers get histories written for their segment (SPEC section 5): `best`
buy often and a lot, `good` now and then, `new` only this month, `at_risk` not for a few
months, `inactive` not for half a year. A crowd of other customers, who own no phone in
the demo, gives the quintiles of frequency and amount something to rank against. Dates
are relative to now, so the segments hold whenever the demo runs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from geopush.timefmt import format_ts

SEGMENT_PLAN = ("best", "good", "new", "at_risk", "inactive")
FIRST_NAMES = ("Camille", "Wei", "Olivia", "Louis", "Mei", "Harry", "Léa", "Jun", "Emma",
               "Hugo", "Lina", "Noah", "Chloé", "Yan", "Sofia", "Jules", "Ming", "Zoé")
LOCALES = ("fr-CA", "en-US", "zh-CN", "fr-FR", "en-GB")
CROWD = 60


@dataclass(frozen=True)
class Customer:
    customer_id: str
    first_name: str
    locale: str
    planned_segment: str


# What goes into one basket with the first item, and how often: coffee with a pastry,
# tea with cake, a sandwich with juice. Basket analysis finds these rules again.
COMPANIONS = {"coffee": (("pastry", 0.45), ("sandwich", 0.15)),
              "tea": (("cake", 0.5),), "sandwich": (("juice", 0.55), ("coffee", 0.3)),
              "beans": (("coffee", 0.6),), "pastry": (("coffee", 0.7),)}


def _basket(rng: random.Random, first: str, never: frozenset[str]) -> list[str]:
    items = [first]
    for other, p in COMPANIONS.get(first, ()):
        if other not in never and other not in items and rng.random() < p:
            items.append(other)
    return items


def _history(rng: random.Random, segment: str, now: datetime) -> list[tuple[datetime, float,
                                                                          str]]:
    """(ts, amount, first category) purchases of one customer, for their segment."""
    def days_ago(lo: float, hi: float) -> datetime:
        return now - timedelta(days=rng.uniform(lo, hi))

    if segment == "best":  # often, big baskets, coffee and pastry
        buys = [(days_ago(1, 300), rng.uniform(25, 60)) for _ in range(rng.randint(22, 30))]
        buys.append((days_ago(40, 60), 30.0))  # a customer since before this month
        cats: tuple[str, ...] = ("coffee", "pastry", "beans", "coffee")
    elif segment == "good":  # now and then, coffee and sandwiches
        buys = [(days_ago(2, 50), rng.uniform(4, 9)) for _ in range(rng.randint(2, 4))]
        buys.append((days_ago(35, 50), 5.0))
        cats = ("coffee", "coffee", "sandwich", "tea")
    elif segment == "new":  # first purchase this month
        buys = [(days_ago(1, 20), rng.uniform(4, 12)) for _ in range(rng.randint(1, 2))]
        cats = ("coffee", "tea")
    elif segment == "at_risk":  # nothing for 2–5 months
        buys = [(days_ago(75, 160), rng.uniform(5, 15)) for _ in range(rng.randint(3, 6))]
        cats = ("coffee", "tea")
    else:  # inactive: nothing for over half a year
        buys = [(days_ago(200, 340), rng.uniform(5, 15)) for _ in range(rng.randint(1, 4))]
        cats = ("coffee",)
    return [(ts, round(amount, 2), rng.choice(cats)) for ts, amount in buys]


def phone_customers(run: str, count: int) -> list[Customer]:
    """One customer per phone, the segments taking turns so each is there from 5 phones."""
    return [Customer(f"demo-{run}-{i:02d}", FIRST_NAMES[i % len(FIRST_NAMES)],
                     LOCALES[i % len(LOCALES)], SEGMENT_PLAN[i % len(SEGMENT_PLAN)])
            for i in range(count)]


def crm_files(run: str, customers: list[Customer], store_ids: list[str],
              seed: int = 7) -> tuple[str, str]:
    """(customers CSV, transactions CSV: baskets of lines) for the phones' customers and
    the crowd. The phones' customers never had a pastry, so the exit offer has an
    audience; the crowd holds every segment too, so none empties while phones shop."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    crowd_plan = ["good"] * 36 + ["best"] * 6 + ["at_risk"] * 7 + ["inactive"] * 6 + ["new"] * 5
    crowd = [Customer(f"crowd-{run}-{i:03d}", rng.choice(FIRST_NAMES), "en",
                      crowd_plan[i % len(crowd_plan)]) for i in range(CROWD)]
    people = [(c, c.planned_segment, frozenset({"pastry"})) for c in customers] + [
        (c, c.planned_segment, frozenset()) for c in crowd]
    created = (now - timedelta(days=700)).date().isoformat()
    new_created = (now - timedelta(days=25)).date().isoformat()
    cust = ["customer_id,first_name,language,created_at"]
    txns = ["transaction_id,customer_id,store_external_id,ts,amount,category,line,product"]
    n = 0
    for c, segment, never in people:
        language = c.locale.split("-")[0]
        cust.append(f"{c.customer_id},{c.first_name},{language},"
                    f"{new_created if segment == 'new' else created}")
        for ts, amount, first in _history(rng, segment, now):
            if first in never:
                first = "coffee"
            n += 1
            store = rng.choice(store_ids)
            items = _basket(rng, first, never)
            for line, item in enumerate(items, 1):
                txns.append(f"demo-{run}-t{n:06d},{c.customer_id},{store},{format_ts(ts)},"
                            f"{amount / len(items):.2f},{item},{line},{item}")
    return "\n".join(cust) + "\n", "\n".join(txns) + "\n"
