-- Suppressed decisions past `[privacy] decision_retention_days` are pruned; what offer stats
-- need of them survives here, per offer, UTC day and reason (SPEC section 10: aggregates
-- survive). Contacts (queued, control) stay: conversion and cooldowns read them.
CREATE TABLE decisions_pruned (
    offer_id   uuid NOT NULL,
    day        date NOT NULL,
    reason     text NOT NULL,
    decisions  bigint NOT NULL,
    events     bigint NOT NULL,
    PRIMARY KEY (offer_id, day, reason)
);
CREATE INDEX decisions_suppressed_age ON decisions (decided_at) WHERE outcome = 'suppressed';
