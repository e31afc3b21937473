-- Rolls back 0003: drops the landing columns and indexes.
DROP INDEX IF EXISTS uk_datasources_org_name;
DROP INDEX IF EXISTS idx_uploadedfiles_partition;
DROP INDEX IF EXISTS uk_uploadedfiles_org_sha256;
ALTER TABLE uploaded_files
    DROP COLUMN IF EXISTS invalid_row_count,
    DROP COLUMN IF EXISTS dagster_run_id,
    DROP COLUMN IF EXISTS partition_key,
    DROP COLUMN IF EXISTS content_sha256;
