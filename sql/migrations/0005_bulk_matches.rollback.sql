-- Rolls back 0005: the foreign keys of reconciliation_matches come back, the trigger goes.
DROP TRIGGER IF EXISTS trg_reconciliations_delete_matches ON reconciliations;
DROP FUNCTION IF EXISTS recon_delete_matches();
DELETE FROM reconciliation_matches m
    WHERE NOT EXISTS (SELECT 1 FROM reconciliations r WHERE r.id = m.reconciliation_id);
CREATE INDEX idx_matches_organization ON reconciliation_matches(organization_id);
ALTER TABLE reconciliation_matches
    ADD CONSTRAINT fk_matches_reconciliation FOREIGN KEY (reconciliation_id)
        REFERENCES reconciliations(id) ON DELETE CASCADE,
    ADD CONSTRAINT fk_matches_organization FOREIGN KEY (organization_id)
        REFERENCES organizations(id) ON DELETE CASCADE;
