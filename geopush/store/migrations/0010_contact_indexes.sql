-- The cooldown looks up the delivery of each recent contact by its decision, and every
-- write of a store resolves the transactions that name it by external id.
CREATE INDEX IF NOT EXISTS deliveries_decision ON deliveries (decision_id);
CREATE INDEX IF NOT EXISTS transactions_store_external ON transactions (store_external_id);
