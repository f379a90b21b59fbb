-- Customer proofs already used to link a device (SPEC section 10): a proof with a `jti`
-- links once; one without is dated from when it was first seen, so it cannot outlive
-- `[auth] max_proof_lifetime_s` by leaving out `iat`. Rows are forgotten after the proof
-- can no longer be valid anyway (`forget_after`, pruned by retention).
CREATE TABLE link_proofs (
    use_key       text PRIMARY KEY,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    forget_after  timestamptz NOT NULL
);
CREATE INDEX link_proofs_forget_after ON link_proofs (forget_after);
