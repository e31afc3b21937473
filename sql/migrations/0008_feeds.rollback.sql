-- Rolls back 0008: partition keys on written rows, business dates and the feeds table go.
ALTER TABLE document_embeddings
    DROP COLUMN IF EXISTS dagster_run_id,
    DROP COLUMN IF EXISTS partition_key;
ALTER TABLE reconciliation_matches DROP COLUMN IF EXISTS partition_key;
ALTER TABLE reconciliation_exceptions DROP COLUMN IF EXISTS partition_key;
DROP INDEX IF EXISTS idx_files_source_business_date;
ALTER TABLE uploaded_files DROP COLUMN IF EXISTS business_date;
DROP INDEX IF EXISTS uk_reconciliations_feed_date;
ALTER TABLE reconciliations
    DROP CONSTRAINT IF EXISTS fk_reconciliations_feed,
    DROP COLUMN IF EXISTS feed_id,
    DROP COLUMN IF EXISTS business_date;
DROP TABLE IF EXISTS reconciliation_feeds;
