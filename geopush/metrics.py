"""Prometheus collectors named by SPEC section 8 (names and labels are the contract).

`geopush serve --workers N` runs N processes behind one port, and a scrape reaches any one
of them, so then every worker writes its values to files under `PROMETHEUS_MULTIPROC_DIR`
(prometheus-client's multiprocess mode, set up by the parent before the workers start) and
`/metrics` answers with the sum over all workers.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REGISTRY = CollectorRegistry(auto_describe=True)

PINGS = Counter(
    "geopush_pings", "Pings received, by result (accepted/rejected) and rejection reason",
    ["result", "reason"], registry=REGISTRY,
)
EVENTS = Counter("geopush_events", "Visit events", ["type"], registry=REGISTRY)
DECISIONS = Counter(
    "geopush_decisions", "Offer decisions by outcome and reason",
    ["outcome", "reason"], registry=REGISTRY,
)
DELIVERIES = Counter(
    "geopush_deliveries", "Delivery outcomes by status and reason",
    ["status", "reason"], registry=REGISTRY,
)
# Both gauges are read from the database or the index by each worker, so across workers the
# freshest value of a live worker is the true one.
OUTBOX_DEPTH = Gauge("geopush_outbox_depth", "Deliveries queued and not yet finished",
                     registry=REGISTRY, multiprocess_mode="livemostrecent")
EVENT_TO_SEND = Histogram(
    "geopush_event_to_send_seconds", "From the event's ts to FCM accepting the message",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900), registry=REGISTRY,
)
INGEST = Histogram(
    "geopush_ingest_seconds", "Time to process and commit one ping batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
FCM_REQUEST = Histogram(
    "geopush_fcm_request_seconds", "Time of one send_each_async batch call",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY,
)
GEOFENCES_LOADED = Gauge("geopush_geofences_loaded", "Geofences in this process's index",
                         registry=REGISTRY, multiprocess_mode="livemostrecent")

# Loyalty (SPEC section 11): points credited (negative reasons count what was debited, as a
# positive number) and badges awarded.
LOYALTY_POINTS = Counter(
    "geopush_loyalty_points", "Loyalty points credited or debited, by ledger reason",
    ["reason"], registry=REGISTRY,
)
BADGES = Counter("geopush_badges", "Loyalty badges awarded, by badge", ["code"],
                 registry=REGISTRY)
CHALLENGES_COMPLETED = Counter("geopush_challenges_completed", "Loyalty challenges completed",
                               registry=REGISTRY)


# Store alerts (SPEC sections 14 and 15): the second outbox's depth and each attempt's result
# (status queued means a retry was scheduled).
ALERTS_OUTBOX_DEPTH = Gauge("geopush_alerts_outbox_depth", "Store alerts queued and not yet"
                            " finished", registry=REGISTRY, multiprocess_mode="livemostrecent")
ALERT_ATTEMPTS = Counter("geopush_alert_attempts", "Store alert POST attempts, by the status"
                         " they left the alert in and its reason", ["status", "reason"],
                         registry=REGISTRY)
# Service quality (SPEC section 14): answers by overall score, and cases by the status they
# entered (open when a low score opens one).
FEEDBACK = Counter("geopush_feedback", "Feedback answers, by overall score", ["overall"],
                   registry=REGISTRY)
CASES = Counter("geopush_cases", "Service recovery cases, by the status they entered",
                ["status"], registry=REGISTRY)

# The series a dashboard or alert rates from the start exist at 0 before the first ping,
# rather than appearing only once something happened.
PINGS.labels("accepted", "")
for _type in ("enter", "dwell", "exit"):
    EVENTS.labels(_type)
DECISIONS.labels("queued", "")
DELIVERIES.labels("sent", "")
LOYALTY_POINTS.labels("checkin")


def _service_registry() -> CollectorRegistry:
    """This process's registry, or under --workers one that reads every worker's values."""
    if not os.environ.get(MULTIPROC_ENV):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def exposition() -> bytes:
    """The text of `/metrics`: the whole service's values, whichever worker answers."""
    return generate_latest(_service_registry())


def counter_totals(name: str, *labels: str) -> dict[str, float]:
    """Counter `name` of the whole service since it started, as {"label/label": value}."""
    out: dict[str, float] = {}
    for family in _service_registry().collect():
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == f"{name}_total":
                key = "/".join(sample.labels[label] for label in labels)
                out[key] = out.get(key, 0) + sample.value
    return out
