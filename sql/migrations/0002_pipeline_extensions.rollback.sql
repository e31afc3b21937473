-- Rolls back 0002: drops the pipeline's extension tables and columns.
DROP INDEX IF EXISTS idx_embeddings_organization;
DROP INDEX IF EXISTS idx_embeddings_content_tsv;
ALTER TABLE document_embeddings
    DROP CONSTRAINT IF EXISTS uk_embeddings_document,
    DROP COLUMN IF EXISTS content_tsv,
    DROP COLUMN IF EXISTS model_name;
DROP TABLE IF EXISTS sync_logs, pipeline_run_logs, embedding_cache, reconciliation_matches;
