-- Delivery records for ops: manual retries, newest-first listing, the dashboard's summary.

-- A manual retry (POST /v1/deliveries/{id}/retry) resets `attempts` for the sender's
-- max_attempts budget; these keep what the reset would otherwise lose: how often ops
-- retried the delivery, when last, and with which key (an api_keys id, or 'bootstrap').
ALTER TABLE deliveries
    ADD COLUMN retries     integer NOT NULL DEFAULT 0,
    ADD COLUMN retried_at  timestamptz,
    ADD COLUMN retried_by  text;

-- GET /v1/deliveries pages newest first by (created_at, delivery_id), with or without
-- filters; the dashboard counts the last hours of deliveries by status and reason.
CREATE INDEX deliveries_created ON deliveries (created_at, delivery_id);
-- The dashboard's "recent failures", without reading every failed row ever.
CREATE INDEX deliveries_failed_recent ON deliveries (finished_at) WHERE status = 'failed';
-- The dashboard's per-offer funnel counts the last hours of decisions.
CREATE INDEX decisions_decided ON decisions (decided_at);
