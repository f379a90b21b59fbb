-- Store alerts (SPEC sections 14 and 15): a second outbox, of signed JSON POSTs to a
-- store's own system (its `alert_url`), queued in the transaction of the event that causes
-- them and sent at least once, with backoff, by a background sender.

ALTER TABLE stores ADD COLUMN alert_url text;

CREATE TABLE store_alerts (
    alert_id         uuid PRIMARY KEY,
    store_id         uuid NOT NULL REFERENCES stores (store_id) ON DELETE CASCADE,
    kind             text NOT NULL,
    -- The exact JSON that is POSTed (with its `id`): every attempt sends the same body.
    body             jsonb NOT NULL,
    -- Whom the alert is about, so erasure can find and empty it (SPEC section 10).
    device_id        uuid,
    customer_id      text,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'sent', 'failed')),
    reason           text,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,
    last_error       text,
    last_http_status integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    finished_at      timestamptz
);
-- The sender's claim: one indexed scan of the due rows.
CREATE INDEX store_alerts_due ON store_alerts (next_attempt_at) WHERE status = 'queued';
-- GET /v1/alerts?store_id=: a store's alerts, newest first.
CREATE INDEX store_alerts_store ON store_alerts (store_id, created_at, alert_id);
CREATE INDEX store_alerts_created ON store_alerts (created_at, alert_id);
CREATE INDEX store_alerts_device ON store_alerts (device_id) WHERE device_id IS NOT NULL;
CREATE INDEX store_alerts_customer ON store_alerts (customer_id) WHERE customer_id IS NOT NULL;
