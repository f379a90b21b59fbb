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
-- redemption. Kept by the trigger below as deliveries are sent, opened and redeemed, so a
-- decision reads one row instead of scanning the subject's history.
CREATE TABLE category_fatigue (
    subject       text NOT NULL,
    category      text NOT NULL,
    unopened      integer NOT NULL DEFAULT 0,
    last_sent_at  timestamptz,
    PRIMARY KEY (subject, category)
);

CREATE FUNCTION geopush_track_fatigue() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    who text;
    cat text;
BEGIN
    IF NEW.customer_id IS NOT NULL THEN
        who := 'c:' || NEW.customer_id;
    ELSIF NEW.device_id IS NOT NULL
          AND NEW.device_id <> '00000000-0000-0000-0000-000000000000' THEN
        who := 'd:' || NEW.device_id::text;
    ELSE
        RETURN NULL;
    END IF;
    SELECT o.definition ->> 'category' INTO cat FROM offers o WHERE o.offer_id = NEW.offer_id;
    IF cat IS NULL THEN
        RETURN NULL;
    END IF;
    IF (NEW.opened_at IS NOT NULL AND OLD.opened_at IS NULL)
       OR (NEW.redeemed_at IS NOT NULL AND OLD.redeemed_at IS NULL) THEN
        UPDATE category_fatigue SET unopened = 0 WHERE subject = who AND category = cat;
    ELSIF NEW.status = 'sent' AND OLD.status IS DISTINCT FROM 'sent'
          AND NEW.opened_at IS NULL AND NEW.redeemed_at IS NULL THEN
        INSERT INTO category_fatigue AS f (subject, category, unopened, last_sent_at)
        VALUES (who, cat, 1, coalesce(NEW.sent_at, now()))
        ON CONFLICT (subject, category) DO UPDATE
            SET unopened = f.unopened + 1,
                last_sent_at = greatest(f.last_sent_at, EXCLUDED.last_sent_at);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_fatigue
    AFTER UPDATE OF status, opened_at, redeemed_at ON deliveries
    FOR EACH ROW EXECUTE FUNCTION geopush_track_fatigue();
