-- --- the common ping batch in one statement ------------------------------------------------
-- A batch whose pings are near no geofence, from a device with no open visit, changes only
-- `pings`, the device's last fix and the batch's answer. This function does all of it in one
-- call, so the caller sends it as one autocommit statement (no BEGIN, no COMMIT): the device
-- row is locked first (as geopush_begin_batch does), consent, a repeated batch_id and the
-- order against the last fix are checked, and only then anything is written.
--
-- The caller filtered the pings as if the device had no last fix (SPEC section 2's
-- per-ping checks, then order and speed among the batch's own pings). That is the full
-- path's answer exactly when the earliest accepted ping passes the checks against the real
-- last fix: later than it by [geo] min_ping_interval_s at least, and slower than
-- [geo] max_speed_mps from it. Speed is judged
-- here on a sphere (haversine) with a 1 % margin that covers the ellipsoid; anything
-- closer to the limit, an open visit, or an earlier ping answers 'full' without writing,
-- and the caller runs the full path.
--
-- status: 'unknown_device', 'no_location_consent', 'replayed' (prior holds the first
-- answer), 'full' (nothing written) or 'done' (written, committed with the statement).
CREATE FUNCTION geopush_common_batch(
    p_device uuid, p_batch text, p_ts timestamptz[], p_lat float8[], p_lon float8[],
    p_accuracy float8[], p_speed float8[], p_max_speed float8, p_min_interval float8,
    p_response jsonb)
RETURNS TABLE (status text, prior jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    d devices;
    n int := coalesce(array_length(p_ts, 1), 0);
    first_answer jsonb;
    elapsed float8;
    dist float8;
BEGIN
    SELECT * INTO d FROM devices WHERE devices.device_id = p_device FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown_device'::text, NULL::jsonb;
        RETURN;
    END IF;
    IF NOT d.consent_location THEN
        RETURN QUERY SELECT 'no_location_consent'::text, NULL::jsonb;
        RETURN;
    END IF;
    IF p_batch IS NOT NULL THEN
        SELECT b.response INTO first_answer FROM ping_batches b
        WHERE b.device_id = p_device AND b.batch_id = p_batch;
        IF FOUND THEN
            RETURN QUERY SELECT 'replayed'::text, first_answer;
            RETURN;
        END IF;
    END IF;
    IF n = 0 THEN  -- every ping refused on its own: nothing to keep (as the full path)
        RETURN QUERY SELECT 'done'::text, NULL::jsonb;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM visits WHERE visits.device_id = p_device) THEN
        RETURN QUERY SELECT 'full'::text, NULL::jsonb;
        RETURN;
    END IF;
    IF d.last_ping_ts IS NOT NULL THEN
        elapsed := extract(epoch FROM p_ts[1] - d.last_ping_ts);
        IF p_ts[1] <= d.last_ping_ts OR elapsed < p_min_interval THEN
            RETURN QUERY SELECT 'full'::text, NULL::jsonb;
            RETURN;
        END IF;
        IF d.last_lat IS NOT NULL AND d.last_lon IS NOT NULL THEN
            dist := 2 * 6371008.8 * asin(least(1.0, sqrt(
                sin(radians(p_lat[1] - d.last_lat) / 2) ^ 2
                + cos(radians(d.last_lat)) * cos(radians(p_lat[1]))
                  * sin(radians(p_lon[1] - d.last_lon) / 2) ^ 2)));
            IF dist * 1.01 > p_max_speed * elapsed THEN
                RETURN QUERY SELECT 'full'::text, NULL::jsonb;
                RETURN;
            END IF;
        END IF;
    END IF;
    INSERT INTO pings (device_id, ts, lat, lon, accuracy_m, speed_mps)
    SELECT p_device, * FROM unnest(p_ts, p_lat, p_lon, p_accuracy, p_speed)
    ON CONFLICT DO NOTHING;
    UPDATE devices SET last_ping_ts = p_ts[n], last_lat = p_lat[n], last_lon = p_lon[n]
    WHERE devices.device_id = p_device;
    IF p_batch IS NOT NULL THEN
        INSERT INTO ping_batches (device_id, batch_id, response)
        VALUES (p_device, p_batch, p_response) ON CONFLICT DO NOTHING;
    END IF;
    RETURN QUERY SELECT 'done'::text, NULL::jsonb;
END $$;
