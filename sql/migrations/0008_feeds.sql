-- Reconciliation feeds: which data source reconciles against which, with which rule set, and
-- how a file maps to a business date. One partition (business date x feed) is one
-- reconciliation, so reconciliations know their feed and date (unique together), a file
-- remembers its business date once resolved, and every row written for a reconciliation
-- carries the partition key beside the Dagster run id.
-- depends: 0006_embeddings

CREATE TABLE reconciliation_feeds (
    id BIGSERIAL PRIMARY KEY,
    -- a feed's name is a Dagster partition key: unique across organizations
    name VARCHAR(100) NOT NULL,
    description TEXT,
    organization_id BIGINT NOT NULL,
    source_data_source_id BIGINT NOT NULL,
    target_data_source_id BIGINT NOT NULL,
    rule_set_id BIGINT,
    -- {"from": "filename", "pattern": "...", "format": "%Y-%m-%d"} or
    -- {"from": "column", "source_column": "...", "target_column": "..."}
    business_date JSONB NOT NULL,
    -- {"history": 7, "match_rate_drop": 10.0, "exception_growth": 2.0}
    checks JSONB NOT NULL DEFAULT '{}'::jsonb,
    definition JSONB NOT NULL,
    definition_sha256 CHAR(64) NOT NULL,
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT uk_feeds_name UNIQUE (name),
    CONSTRAINT fk_feeds_organization FOREIGN KEY (organization_id)
        REFERENCES organizations(id) ON DELETE CASCADE,
    CONSTRAINT fk_feeds_source FOREIGN KEY (source_data_source_id)
        REFERENCES data_sources(id) ON DELETE CASCADE,
    CONSTRAINT fk_feeds_target FOREIGN KEY (target_data_source_id)
        REFERENCES data_sources(id) ON DELETE CASCADE,
    CONSTRAINT fk_feeds_ruleset FOREIGN KEY (rule_set_id)
        REFERENCES rule_sets(id) ON DELETE SET NULL,
    CONSTRAINT chk_feeds_sides CHECK (source_data_source_id <> target_data_source_id)
);
CREATE TRIGGER trg_feeds_updated_at BEFORE UPDATE ON reconciliation_feeds
    FOR EACH ROW EXECUTE FUNCTION recon_set_updated_at();

ALTER TABLE reconciliations
    ADD COLUMN feed_id BIGINT,
    ADD COLUMN business_date DATE,
    ADD CONSTRAINT fk_reconciliations_feed FOREIGN KEY (feed_id)
        REFERENCES reconciliation_feeds(id) ON DELETE SET NULL;
CREATE UNIQUE INDEX uk_reconciliations_feed_date ON reconciliations(feed_id, business_date)
    WHERE feed_id IS NOT NULL;

ALTER TABLE uploaded_files ADD COLUMN business_date DATE;
CREATE INDEX idx_files_source_business_date ON uploaded_files(data_source_id, business_date)
    WHERE status = 'PROCESSED';

ALTER TABLE reconciliation_exceptions ADD COLUMN partition_key VARCHAR(255);
ALTER TABLE reconciliation_matches ADD COLUMN partition_key VARCHAR(255);
ALTER TABLE document_embeddings
    ADD COLUMN dagster_run_id VARCHAR(64),
    ADD COLUMN partition_key VARCHAR(255);
