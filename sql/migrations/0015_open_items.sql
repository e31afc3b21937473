-- Open items carried forward across business dates (issue 19). A feed's business date D also
-- reconciles the records its earlier dates (within the feed's carry_forward_days) left
-- unmatched: their MISSING_* exceptions still OPEN. Such a record enters D's reconciliation as
-- a carried row, numbered after D's own rows; `reconciliation_carried_rows` says where it
-- came from (file, row, business date, the exception it is open on). When D matches it, that
-- exception is RESOLVED by the product ("matched on D") with `carried_to_reconciliation_id` =
-- D's reconciliation, so a re-run of D first reopens what it resolved. `carry_digest` is D's
-- outcome as later dates see it (its open records and what it resolved); when a run changes
-- it, the later dates of the window that were COMPLETED are marked `carry_stale` and the
-- pairing sensor runs them again.
-- depends: 0014_source_pulls

CREATE TABLE reconciliation_carried_rows (
    reconciliation_id BIGINT NOT NULL,
    side VARCHAR(6) NOT NULL,
    row_number INTEGER NOT NULL,
    from_reconciliation_id BIGINT NOT NULL,
    from_file_id BIGINT,
    from_row_number INTEGER NOT NULL,
    from_business_date DATE,
    from_exception_id BIGINT,
    organization_id BIGINT NOT NULL,
    CONSTRAINT pk_carried_rows PRIMARY KEY (reconciliation_id, side, row_number),
    CONSTRAINT ck_carried_side CHECK (side IN ('source', 'target')),
    CONSTRAINT fk_carried_reconciliation FOREIGN KEY (reconciliation_id)
        REFERENCES reconciliations(id) ON DELETE CASCADE,
    CONSTRAINT fk_carried_organization FOREIGN KEY (organization_id)
        REFERENCES organizations(id) ON DELETE CASCADE
);
CREATE INDEX idx_carried_rows_exception ON reconciliation_carried_rows (from_exception_id);

ALTER TABLE reconciliation_exceptions ADD COLUMN carried_to_reconciliation_id BIGINT;
CREATE INDEX idx_exceptions_carried_to ON reconciliation_exceptions (carried_to_reconciliation_id)
    WHERE carried_to_reconciliation_id IS NOT NULL;
ALTER TABLE reconciliations
    ADD COLUMN carry_digest CHAR(64),
    ADD COLUMN carry_stale BOOLEAN NOT NULL DEFAULT FALSE;

-- one organization's rows only, as every table with an organization_id (0010)
GRANT SELECT, INSERT, UPDATE, DELETE ON reconciliation_carried_rows TO recon_app;
ALTER TABLE reconciliation_carried_rows ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON reconciliation_carried_rows TO recon_app
    USING (organization_id = recon_organization_id())
    WITH CHECK (organization_id = recon_organization_id());
