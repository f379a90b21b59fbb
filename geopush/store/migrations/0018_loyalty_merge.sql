-- Signing in keeps what was earned (SPEC section 11): the ledger records each merge of a
-- device's anonymous points into its customer's account.
ALTER TABLE loyalty_ledger DROP CONSTRAINT loyalty_ledger_reason_check;
ALTER TABLE loyalty_ledger ADD CONSTRAINT loyalty_ledger_reason_check
    CHECK (reason IN ('checkin', 'purchase', 'challenge', 'badge', 'adjustment', 'redemption',
                      'merge'));
