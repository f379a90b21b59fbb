-- Rate limits that every process shares (SPEC section 10: POST /v1/devices per app key and
-- per client address). A fixed-window counter per subject, bumped by one upsert.
-- UNLOGGED: a counter lost in a crash only resets a one-minute window, and skipping the
-- write-ahead log keeps each registration to one cheap row update. `subject` is a SHA-256
-- of the limit and its subject (an address, a key id), so no address is stored in clear.
CREATE UNLOGGED TABLE rate_windows (
    subject       bytea NOT NULL,
    window_start  timestamptz NOT NULL,
    hits          integer NOT NULL,
    PRIMARY KEY (subject, window_start)
);
