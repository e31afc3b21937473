-- Bulk writes of matched pairs: a million-pair reconciliation spent ~10 of its ~15 s of COPY in
-- per-row foreign-key checks on reconciliation_matches. The pipeline writes matches only inside
-- the transaction that holds its reconciliation row locked (pipelines/reconcile/records.py), so
-- the inserts are checked there; deletes still cascade, by trigger, and the organization is the
-- reconciliation's.
-- depends: 0004_reconciliation_engine

ALTER TABLE reconciliation_matches
    DROP CONSTRAINT fk_matches_reconciliation,
    DROP CONSTRAINT fk_matches_organization;
DROP INDEX IF EXISTS idx_matches_organization;

CREATE FUNCTION recon_delete_matches() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM reconciliation_matches m USING old_rows o WHERE m.reconciliation_id = o.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER trg_reconciliations_delete_matches
    AFTER DELETE ON reconciliations
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION recon_delete_matches();
