-- Transactions are distributed by customer_id on a Citus cluster (SPEC section 9), with
-- the customers: a distributed table's keys must hold its distribution column, so the
-- key becomes (customer_id, transaction_id, line). A (transaction_id, line) stays one
-- line: the import skips one already stored under any customer, found by this index.
-- One subcommand per statement: Citus refuses ADD CONSTRAINT beside another on a table
-- it already holds (a cluster laid out before this migration has it as a reference table).
ALTER TABLE transactions DROP CONSTRAINT transactions_pkey;
ALTER TABLE transactions ADD PRIMARY KEY (customer_id, transaction_id, line);
CREATE INDEX transactions_line ON transactions (transaction_id, line);
