"""Prometheus collectors named by SPEC section 8 (names and labels are the contract)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
OUTBOX_DEPTH = Gauge("geopush_outbox_depth", "Deliveries queued and not yet finished",
                     registry=REGISTRY)
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
                         registry=REGISTRY)
