-- SPEC section 15, recognition by name: the customer's consent to be greeted, kept on
-- every device of theirs (like leaderboard consent) and logged with consent.
ALTER TABLE devices ADD COLUMN consent_recognition boolean NOT NULL DEFAULT false;
ALTER TABLE consent_log ADD COLUMN recognition boolean;

-- One vip_arrival alert per store per subject per local day of the store: the insert that
-- wins the primary key queues the alert, a second arrival that day finds the row.
CREATE TABLE recognition_arrivals (
    store_id   uuid NOT NULL,
    subject    text NOT NULL,
    day        date NOT NULL,
    alert_id   uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, subject, day)
);
