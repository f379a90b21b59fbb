-- The device-time bound on visits (SPEC section 10: what one device can make geopush store is
-- bounded): the device times of its enters within the last hour of its own time. At most
-- `[geo] max_enters_per_hour` entries; written with the last fix, in the batch's statement.
ALTER TABLE devices ADD COLUMN recent_enters timestamptz[] NOT NULL DEFAULT '{}';
