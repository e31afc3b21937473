-- Rolls back 0004: drops the engine's model table and lineage columns.
ALTER TABLE reconciliation_matches DROP COLUMN IF EXISTS dagster_run_id;
DROP INDEX IF EXISTS idx_exceptions_fingerprint;
ALTER TABLE reconciliation_exceptions
    DROP COLUMN IF EXISTS dagster_run_id,
    DROP COLUMN IF EXISTS target_row_number,
    DROP COLUMN IF EXISTS source_row_number,
    DROP COLUMN IF EXISTS fingerprint;
ALTER TABLE reconciliations DROP COLUMN IF EXISTS partition_key, DROP COLUMN IF EXISTS dagster_run_id;
DROP TABLE IF EXISTS linkage_models;
DROP INDEX IF EXISTS uk_rulesets_org_name_version;
ALTER TABLE rule_sets DROP COLUMN IF EXISTS content_sha256;
