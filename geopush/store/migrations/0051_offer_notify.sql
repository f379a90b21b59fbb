-- Every statement that changes offers tells each process to re-read the active offers'
-- (trigger, target) keys it keeps in memory (geopush/store/offer_keys.py). A trigger, so
-- no writer can forget it; delivered when the writing transaction commits.
CREATE FUNCTION geopush_offers_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('geopush_offers', '');
    RETURN NULL;
END $$;

CREATE TRIGGER offers_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON offers
FOR EACH STATEMENT EXECUTE FUNCTION geopush_offers_changed();
