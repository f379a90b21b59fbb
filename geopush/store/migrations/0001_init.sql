-- geopush schema, first version.
-- Device-keyed tables (devices, visits, pings, ping_batches, events, decisions, deliveries)
-- always carry device_id and every query on them filters by it, so they can be distributed
-- by device id when one PostgreSQL is not enough.

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'marketer', 'ops', 'app')),
    key_hash    bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE customers (
    customer_id     text PRIMARY KEY,
    first_name      text,
    language        text,
    created_at      timestamptz,
    imported_at     timestamptz NOT NULL DEFAULT now(),
    segment         text NOT NULL DEFAULT 'new',
    r_score         smallint,
    f_score         smallint,
    a_score         smallint,
    recency_days    double precision,
    frequency       integer NOT NULL DEFAULT 0,
    amount          numeric NOT NULL DEFAULT 0,
    types           text[] NOT NULL DEFAULT '{}',
    segment_computed_at timestamptz
);

CREATE TABLE devices (
    device_id           uuid PRIMARY KEY,
    token_hash          bytea NOT NULL UNIQUE,
    fcm_token           text,
    fcm_token_active    boolean NOT NULL DEFAULT true,
    platform            text NOT NULL CHECK (platform IN ('android', 'ios', 'web')),
    locale              text,
    timezone            text,
    customer_id         text,
    consent_location    boolean NOT NULL DEFAULT false,
    consent_push        boolean NOT NULL DEFAULT false,
    consent_categories  text[],
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    last_ping_ts        timestamptz,
    last_lat            double precision,
    last_lon            double precision
);
CREATE INDEX devices_customer ON devices (customer_id) WHERE customer_id IS NOT NULL;

CREATE TABLE consent_log (
    id          bigserial PRIMARY KEY,
    device_id   uuid NOT NULL,
    location    boolean NOT NULL,
    push        boolean NOT NULL,
    categories  text[],
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_log_device ON consent_log (device_id, changed_at);

CREATE TABLE stores (
    store_id        uuid PRIMARY KEY,
    external_id     text NOT NULL UNIQUE,
    name            text NOT NULL,
    timezone        text NOT NULL,
    lat             double precision NOT NULL,
    lon             double precision NOT NULL,
    opening_hours   jsonb,
    categories      text[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE geofences (
    geofence_id uuid PRIMARY KEY,
    name        text NOT NULL,
    store_id    uuid REFERENCES stores (store_id) ON DELETE SET NULL,
    geometry    jsonb NOT NULL,
    dwell_s     integer NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    area_m2     double precision NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX geofences_store ON geofences (store_id);

-- Only open visits are stored: no row means outside.
CREATE TABLE visits (
    device_id   uuid NOT NULL,
    geofence_id uuid NOT NULL,
    entered_at  timestamptz NOT NULL,
    dwell_fired boolean NOT NULL DEFAULT false,
    last_inside boolean NOT NULL DEFAULT true,
    PRIMARY KEY (device_id, geofence_id)
);
CREATE INDEX visits_geofence ON visits (geofence_id);
CREATE INDEX visits_dwell_due ON visits (entered_at) WHERE NOT dwell_fired AND last_inside;

CREATE TABLE pings (
    device_id   uuid NOT NULL,
    ts          timestamptz NOT NULL,
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    accuracy_m  double precision NOT NULL,
    speed_mps   double precision,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, ts)
);
CREATE INDEX pings_received ON pings (received_at);

CREATE TABLE ping_batches (
    device_id   uuid NOT NULL,
    batch_id    text NOT NULL,
    response    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, batch_id)
);

CREATE TABLE events (
    event_id    uuid PRIMARY KEY,
    device_id   uuid,
    geofence_id uuid NOT NULL,
    store_id    uuid,
    type        text NOT NULL CHECK (type IN ('enter', 'dwell', 'exit')),
    ts          timestamptz NOT NULL,
    source      text NOT NULL DEFAULT 'ping',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_device ON events (device_id, ts);
CREATE INDEX events_geofence ON events (geofence_id, ts);

-- An offer's full definition is kept as validated JSON (campaigns.offers.offer_to_json);
-- the columns beside it are the ones queries select on.
CREATE TABLE offers (
    offer_id      uuid PRIMARY KEY,
    trigger       text NOT NULL CHECK (trigger IN ('enter', 'dwell', 'exit')),
    geofence_ids  uuid[] NOT NULL DEFAULT '{}',
    store_ids     uuid[] NOT NULL DEFAULT '{}',
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    definition    jsonb NOT NULL,
    deleted_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX offers_geofences ON offers USING gin (geofence_ids);
CREATE INDEX offers_stores ON offers USING gin (store_ids);

-- One row per offer, locked while deciding on it, so max_sends holds across processes.
CREATE TABLE offer_locks (
    offer_id    uuid PRIMARY KEY
);

CREATE TABLE decisions (
    decision_id uuid PRIMARY KEY,
    event_id    uuid,
    device_id   uuid,
    customer_id text,
    offer_id    uuid NOT NULL,
    store_id    uuid,
    outcome     text NOT NULL CHECK (outcome IN ('queued', 'suppressed', 'control')),
    reason      text,
    decided_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_offer ON decisions (offer_id, outcome);
-- Cooldown looks up the last send or hold-out by customer (across devices) or device.
CREATE INDEX decisions_contact_customer ON decisions (customer_id, offer_id, decided_at)
    WHERE outcome IN ('queued', 'control') AND customer_id IS NOT NULL;
CREATE INDEX decisions_contact_device ON decisions (device_id, offer_id, decided_at)
    WHERE outcome IN ('queued', 'control');

-- The outbox: a queued row is a promise to send; the sender claims it with a lease.
CREATE TABLE deliveries (
    delivery_id       uuid PRIMARY KEY,
    decision_id       uuid,
    event_id          uuid,
    device_id         uuid,
    customer_id       text,
    offer_id          uuid NOT NULL,
    store_id          uuid,
    geofence_id       uuid,
    trigger           text NOT NULL,
    event_ts          timestamptz NOT NULL,
    status            text NOT NULL CHECK (status IN ('queued', 'sent', 'failed', 'cancelled')),
    reason            text,
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    lease_until       timestamptz,
    expires_at        timestamptz NOT NULL,
    title             text,
    body              text,
    deeplink          text,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    sent_at           timestamptz,
    finished_at       timestamptz,
    fcm_message_name  text,
    opened_at         timestamptz,
    redeemed_at       timestamptz
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'queued';
CREATE INDEX deliveries_device ON deliveries (device_id, created_at);
CREATE INDEX deliveries_customer_sent ON deliveries (customer_id, sent_at) WHERE status = 'sent';
CREATE INDEX deliveries_offer ON deliveries (offer_id, status);
CREATE INDEX deliveries_status ON deliveries (status, created_at);

CREATE TABLE transactions (
    transaction_id      text PRIMARY KEY,
    customer_id         text NOT NULL,
    store_external_id   text,
    store_id            uuid,
    ts                  timestamptz NOT NULL,
    amount              numeric NOT NULL,
    category            text,
    imported_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transactions_customer ON transactions (customer_id, ts);

CREATE TABLE segment_runs (
    id           bigserial PRIMARY KEY,
    computed_at  timestamptz NOT NULL,
    counts       jsonb NOT NULL
);
