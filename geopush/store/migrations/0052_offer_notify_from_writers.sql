-- Citus refuses triggers on reference tables (and `offers` is one): the offer statements
-- in geopush/store/offers.py send NOTIFY geopush_offers themselves, in their transaction,
-- so the statement trigger of 0051 goes.
DROP TRIGGER IF EXISTS offers_changed ON offers;
DROP FUNCTION IF EXISTS geopush_offers_changed();
