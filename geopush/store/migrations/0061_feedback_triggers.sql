-- SPEC section 14: offers may answer a visit with a feedback request, or a low score with a
-- recovery offer.
ALTER TABLE offers DROP CONSTRAINT IF EXISTS offers_trigger_check;
ALTER TABLE offers ADD CONSTRAINT offers_trigger_check
    CHECK (trigger IN ('enter', 'dwell', 'exit', 'reward', 'feedback', 'recovery'));
