-- File landing: content-hash deduplication of uploaded files (UNIQUE(tenant, hash), as in the
-- sibling seed 004) and the Dagster partition and run that landed each file (lineage).
-- depends: 0002_pipeline_extensions

ALTER TABLE uploaded_files
    ADD COLUMN content_sha256 CHAR(64),
    ADD COLUMN partition_key VARCHAR(1000),
    ADD COLUMN dagster_run_id VARCHAR(64),
    ADD COLUMN invalid_row_count INTEGER;
CREATE UNIQUE INDEX uk_uploadedfiles_org_sha256 ON uploaded_files(organization_id, content_sha256)
    WHERE content_sha256 IS NOT NULL;
CREATE INDEX idx_uploadedfiles_partition ON uploaded_files(partition_key);
CREATE UNIQUE INDEX uk_datasources_org_name ON data_sources(organization_id, name);
