-- The reconciliation engine: rule-set versions recognised by content hash, the Splink model
-- trained once per rule-set version, and lineage columns (Dagster run, partition, row numbers,
-- a stable exception fingerprint so human resolutions survive re-runs).
-- depends: 0003_file_landing

ALTER TABLE rule_sets ADD COLUMN content_sha256 CHAR(64);
CREATE UNIQUE INDEX uk_rulesets_org_name_version ON rule_sets(organization_id, name, version);

CREATE TABLE linkage_models (
    rule_set_id BIGINT PRIMARY KEY,
    organization_id BIGINT NOT NULL,
    engine VARCHAR(50) NOT NULL DEFAULT 'splink',
    engine_version VARCHAR(50) NOT NULL,
    model JSONB NOT NULL,
    training JSONB,
    trained_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT fk_linkagemodels_ruleset FOREIGN KEY (rule_set_id)
        REFERENCES rule_sets(id) ON DELETE CASCADE,
    CONSTRAINT fk_linkagemodels_organization FOREIGN KEY (organization_id)
        REFERENCES organizations(id) ON DELETE CASCADE
);

ALTER TABLE reconciliations
    ADD COLUMN dagster_run_id VARCHAR(64),
    ADD COLUMN partition_key VARCHAR(255);

ALTER TABLE reconciliation_exceptions
    ADD COLUMN fingerprint CHAR(64),
    ADD COLUMN source_row_number INTEGER,
    ADD COLUMN target_row_number INTEGER,
    ADD COLUMN dagster_run_id VARCHAR(64);
CREATE INDEX idx_exceptions_fingerprint ON reconciliation_exceptions(reconciliation_id, fingerprint);

ALTER TABLE reconciliation_matches ADD COLUMN dagster_run_id VARCHAR(64);
