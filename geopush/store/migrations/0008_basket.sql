-- Multi-line transactions: the lines of one transaction_id are one basket. Existing rows
-- become line 1, so a file without a `line` column still finds its duplicates by id.
ALTER TABLE transactions ADD COLUMN line integer NOT NULL DEFAULT 1,
                         ADD COLUMN product text;
ALTER TABLE transactions DROP CONSTRAINT transactions_pkey,
                         ADD PRIMARY KEY (transaction_id, line);

-- The association rules of the last background run (category level, the configured
-- thresholds, every store, the FRAT lookback): what cross-sell audiences and the
-- `recommended` offer audience read. Replaced whole by each run.
CREATE TABLE basket_rules (
    rank         integer PRIMARY KEY,
    antecedent   text[] NOT NULL,
    consequent   text[] NOT NULL,
    support      double precision NOT NULL,
    confidence   double precision NOT NULL,
    lift         double precision NOT NULL,
    count        integer NOT NULL
);

CREATE TABLE basket_runs (
    id           bigserial PRIMARY KEY,
    computed_at  timestamptz NOT NULL,
    baskets      integer NOT NULL,
    rules        integer NOT NULL,
    params       jsonb NOT NULL,
    seconds      double precision NOT NULL
);

-- Each customer's top recommended categories (consequents of single-consequent rules whose
-- antecedent they bought and whose consequent they did not, best lift first): decisions
-- read this, they never mine.
CREATE TABLE customer_recommendations (
    customer_id  text PRIMARY KEY,
    categories   text[] NOT NULL
);
