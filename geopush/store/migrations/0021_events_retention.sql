-- Visit events past `[privacy] event_retention_days` are pruned (SPEC section 10: no table
-- grows without a retention; aggregates survive): what survives is the count per UTC day,
-- geofence and event type, with the geofence's store. A BRIN index finds old rows by
-- `created_at` at almost no cost to the insert path (events arrive in time order).
CREATE TABLE events_daily (
    day          date NOT NULL,
    geofence_id  uuid NOT NULL,
    type         text NOT NULL,
    store_id     uuid,
    events       bigint NOT NULL,
    PRIMARY KEY (day, geofence_id, type)
);
CREATE INDEX events_age ON events USING brin (created_at);
