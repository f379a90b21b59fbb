-- SPEC section 15, the learning relationship.
-- A subject is 'c:' || customer_id for a linked device (all their devices share it), else
-- 'd:' || device_id, as in the loyalty tables.

-- What the customer said they want: interests (NULL = all), a weekly maximum, quiet hours.
CREATE TABLE preferences (
    subject       text PRIMARY KEY,
    interests     text[],
    max_per_week  integer CHECK (max_per_week BETWEEN 0 AND 21),
    quiet_start   text,
    quiet_end     text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Every change, as consent_log keeps consent's.
CREATE TABLE preference_log (
    id            bigserial PRIMARY KEY,
    subject       text NOT NULL,
    device_id     uuid,
    interests     text[],
    max_per_week  integer,
    quiet_start   text,
    quiet_end     text,
    changed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX preference_log_subject ON preference_log (subject, changed_at);

-- Fatigue: per subject and offer category, notifications sent since the last open or
-- redemption. Kept by the statements that mark deliveries sent, opened and redeemed
-- (geopush.store.fatigue), in their transactions, so a decision reads one short range of
-- this table instead of scanning the subject's history. (Not a trigger: Citus distributes
-- no table that has one.)
CREATE TABLE category_fatigue (
    subject       text NOT NULL,
    category      text NOT NULL,
    unopened      integer NOT NULL DEFAULT 0,
    last_sent_at  timestamptz,
    PRIMARY KEY (subject, category)
);
