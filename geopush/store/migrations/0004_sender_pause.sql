-- FCM's QUOTA_EXCEEDED is a limit on the whole project, so when one sender process gets it,
-- every sender process waits: each checks this one row before it claims a batch.
CREATE TABLE sender_pause (
    id     boolean PRIMARY KEY DEFAULT true CHECK (id),
    until  timestamptz NOT NULL
);
