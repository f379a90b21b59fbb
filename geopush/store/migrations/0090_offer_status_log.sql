-- SPEC 16: a preview replays past events with the offers that were active *then*
-- competing. This log says when each offer was active: a row at its creation and at every
-- change (status as it became), and one at its deletion. Offers that existed before the
-- log start with their status of today, from their creation; a deleted one as paused
-- until its deletion (when it was paused before is not known).
CREATE TABLE offer_status_log (
    offer_id  uuid NOT NULL,
    status    text NOT NULL CHECK (status IN ('active', 'paused', 'deleted')),
    at        timestamptz NOT NULL
);
CREATE INDEX offer_status_log_offer ON offer_status_log (offer_id, at);

INSERT INTO offer_status_log (offer_id, status, at)
SELECT offer_id, CASE WHEN deleted_at IS NULL THEN status ELSE 'paused' END, created_at
FROM offers;
INSERT INTO offer_status_log (offer_id, status, at)
SELECT offer_id, 'deleted', deleted_at FROM offers WHERE deleted_at IS NOT NULL;
