-- Ready to be distributed by device: every device-keyed table's primary and unique keys
-- include device_id (a distributed PostgreSQL such as Citus enforces a key only when it
-- holds the distribution column); pings are partitioned by time, so retention drops whole
-- partitions instead of deleting rows; and a batch's device facts come in one round trip.
--
-- Erasure can no longer blank device_id on the rows it keeps for the aggregates (events,
-- decisions, deliveries): a key column is never NULL. Those rows get the nil UUID instead,
-- which no device ever has, and the API shows it as null.

-- --- devices: the token hash is 256 random bits, unique by construction -------------------
ALTER TABLE devices DROP CONSTRAINT devices_token_hash_key;
CREATE INDEX devices_token ON devices (token_hash);

-- --- events, decisions, deliveries, consent_log: keys lead with device_id ---------------
UPDATE events SET device_id = '00000000-0000-0000-0000-000000000000' WHERE device_id IS NULL;
ALTER TABLE events ALTER COLUMN device_id SET NOT NULL;
ALTER TABLE events DROP CONSTRAINT events_pkey, ADD PRIMARY KEY (device_id, event_id);

UPDATE decisions SET device_id = '00000000-0000-0000-0000-000000000000'
WHERE device_id IS NULL;
ALTER TABLE decisions ALTER COLUMN device_id SET NOT NULL;
ALTER TABLE decisions DROP CONSTRAINT decisions_pkey, ADD PRIMARY KEY (device_id, decision_id);
-- Decisions by id alone (offer results, the dashboard) still need a fast path.
CREATE INDEX decisions_id ON decisions (decision_id);

UPDATE deliveries SET device_id = '00000000-0000-0000-0000-000000000000'
WHERE device_id IS NULL;
ALTER TABLE deliveries ALTER COLUMN device_id SET NOT NULL;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_pkey,
    ADD PRIMARY KEY (device_id, delivery_id);
-- Ops look a delivery up by its id (GET /v1/deliveries/{id}, retry).
CREATE INDEX deliveries_id ON deliveries (delivery_id);

ALTER TABLE consent_log DROP CONSTRAINT consent_log_pkey, ADD PRIMARY KEY (device_id, id);

-- --- pings: range-partitioned by ts, one partition per hour --------------------------------
-- Hourly, because retention runs every hour and drops the partitions wholly older than
-- `ping_retention_days`: a ping is gone within the hour after it expires, as before.
ALTER TABLE pings RENAME TO pings_before_0007;
ALTER INDEX pings_received RENAME TO pings_before_0007_received;
ALTER TABLE pings_before_0007 RENAME CONSTRAINT pings_pkey TO pings_before_0007_pkey;

CREATE TABLE pings (
    device_id   uuid NOT NULL,
    ts          timestamptz NOT NULL,
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    accuracy_m  double precision NOT NULL,
    speed_mps   double precision,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX pings_received ON pings (received_at);
-- Whatever no hourly partition covers yet (the background job creates them a day ahead;
-- this only fills when it has not run). Retention deletes from it row by row.
CREATE TABLE pings_default PARTITION OF pings DEFAULT;

-- Creates the hourly partitions covering [from_ts, to_ts); returns how many it created.
-- A range the default partition already holds rows for is left to the default.
CREATE FUNCTION geopush_ping_partitions(from_ts timestamptz, to_ts timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    hour timestamptz := date_trunc('hour', from_ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    name text;
    made integer := 0;
BEGIN
    WHILE hour < to_ts LOOP
        name := 'pings_' || to_char(hour AT TIME ZONE 'UTC', 'YYYYMMDD"h"HH24');
        IF to_regclass(name) IS NULL
           AND NOT EXISTS (SELECT 1 FROM pings_default
                           WHERE ts >= hour AND ts < hour + interval '1 hour') THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF pings FOR VALUES FROM (%L) TO (%L)',
                           name, hour, hour + interval '1 hour');
            made := made + 1;
        END IF;
        hour := hour + interval '1 hour';
    END LOOP;
    RETURN made;
END $$;

SELECT geopush_ping_partitions(
    least((SELECT min(ts) FROM pings_before_0007), now() - interval '1 day'),
    now() + interval '1 day');
INSERT INTO pings SELECT device_id, ts, lat, lon, accuracy_m, speed_mps, received_at
FROM pings_before_0007;
DROP TABLE pings_before_0007;

-- --- one round trip to start a ping batch ---------------------------------------------------
-- Locks the device row, then (in statements that see what the previous holder of the lock
-- committed) reads the first answer of a repeated batch_id and the device's open visits.
-- No row: the device does not exist.
CREATE FUNCTION geopush_begin_batch(p_device uuid, p_batch text)
RETURNS TABLE (device devices, prior jsonb, visit_geofence uuid[],
               visit_entered timestamptz[], visit_dwell boolean[], visit_inside boolean[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM devices WHERE devices.device_id = p_device FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT d,
           (SELECT b.response FROM ping_batches b
            WHERE b.device_id = p_device AND b.batch_id = p_batch),
           v.g, v.e, v.f, v.i
    FROM devices d,
         LATERAL (SELECT array_agg(geofence_id), array_agg(entered_at), array_agg(dwell_fired),
                         array_agg(last_inside)
                  FROM visits WHERE visits.device_id = p_device) AS v(g, e, f, i)
    WHERE d.device_id = p_device;
END $$;
