-- Loyalty and gamification (SPEC section 11): points earned by verified visits and purchases.
--
-- Everything is keyed by a "subject": 'c:' || customer_id for a device linked to a CRM
-- customer, 'd:' || device_id for a device without one. Erasure sets subject, customer_id,
-- device_id and note to NULL: the points, reasons, stores and times stay for the totals.

-- The append-only points ledger: rows are only ever inserted (erasure aside), balances are
-- sums. A check-in's `ref` is its dwell event id, a purchase's its transaction id, a badge's
-- its code, a challenge reward's the challenge id.
CREATE TABLE loyalty_ledger (
    id           bigserial PRIMARY KEY,
    ts           timestamptz NOT NULL,
    points       integer NOT NULL,
    reason       text NOT NULL CHECK (reason IN ('checkin', 'purchase', 'challenge', 'badge',
                                                 'adjustment', 'redemption')),
    ref          text,
    subject      text,
    customer_id  text,
    device_id    uuid,
    store_id     uuid,
    local_day    date,
    note         text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- Once per store per subject per local day; the same index answers "check-ins today" (the
-- daily limit), the badges' counts and the challenges' progress without touching the table.
CREATE UNIQUE INDEX loyalty_checkin_once ON loyalty_ledger (subject, local_day, store_id)
    INCLUDE (ts) WHERE reason = 'checkin';
-- A purchase, a badge bonus or a challenge reward is credited once.
CREATE UNIQUE INDEX loyalty_ref_once ON loyalty_ledger (subject, reason, ref)
    WHERE reason IN ('purchase', 'badge', 'challenge');
-- Balance, lifetime points and the profile's history of one subject.
CREATE INDEX loyalty_subject ON loyalty_ledger (subject, ts) INCLUDE (points, reason);
-- Leaderboards: the points earned in a period, overall and per store, read from the index.
CREATE INDEX loyalty_earned ON loyalty_ledger (ts) INCLUDE (subject, points)
    WHERE reason IN ('checkin', 'purchase', 'challenge', 'badge') AND subject IS NOT NULL;
CREATE INDEX loyalty_earned_store ON loyalty_ledger (store_id, ts) INCLUDE (subject, points)
    WHERE reason IN ('checkin', 'purchase', 'challenge', 'badge') AND subject IS NOT NULL
      AND store_id IS NOT NULL;

-- Badges, once each per subject (NULL subjects, erased, never conflict).
CREATE TABLE loyalty_badges (
    id           bigserial PRIMARY KEY,
    subject      text,
    code         text NOT NULL CHECK (code IN ('first_visit', 'explorer', 'regular',
                                               'streak_3', 'streak_7')),
    earned_at    timestamptz NOT NULL,
    customer_id  text,
    device_id    uuid,
    UNIQUE (subject, code)
);
CREATE INDEX loyalty_badges_earned ON loyalty_badges (earned_at);

-- Challenges set by marketers; progress is derived from the ledger.
CREATE TABLE challenges (
    challenge_id   uuid PRIMARY KEY,
    name           text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('checkins', 'distinct_stores', 'purchases')),
    target         integer NOT NULL CHECK (target >= 1),
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    store_ids      uuid[] NOT NULL DEFAULT '{}',
    reward_points  integer NOT NULL DEFAULT 0,
    offer_id       uuid,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);
CREATE INDEX challenges_live ON challenges (ends_at) WHERE deleted_at IS NULL;

CREATE TABLE challenge_completions (
    id            bigserial PRIMARY KEY,
    challenge_id  uuid NOT NULL,
    subject       text,
    customer_id   text,
    device_id     uuid,
    completed_at  timestamptz NOT NULL,
    UNIQUE (challenge_id, subject)
);
CREATE INDEX challenge_completions_subject ON challenge_completions (subject);

-- An offer can answer a completed challenge (trigger `reward`).
ALTER TABLE offers DROP CONSTRAINT offers_trigger_check;
ALTER TABLE offers ADD CONSTRAINT offers_trigger_check
    CHECK (trigger IN ('enter', 'dwell', 'exit', 'reward'));

-- Consent to appear on leaderboards (off by default), logged like the others.
ALTER TABLE devices ADD COLUMN consent_leaderboard boolean NOT NULL DEFAULT false;
CREATE INDEX devices_leaderboard ON devices (customer_id)
    WHERE consent_leaderboard AND customer_id IS NOT NULL;
ALTER TABLE consent_log ADD COLUMN leaderboard boolean;

-- Purchases are credited for the rows a transactions import inserted: those stamped with
-- its transaction's start time.
CREATE INDEX transactions_imported ON transactions (imported_at);

-- Leaderboards show "first name and initial": a customers import may carry `last_name`, of
-- which only the initial is kept.
ALTER TABLE customers ADD COLUMN last_initial text;
