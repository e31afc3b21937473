-- Rolls back 0006: the exception-embedding trigger, suggestions and the reconciliation link go.
DROP TRIGGER IF EXISTS trg_exceptions_delete_embeddings ON reconciliation_exceptions;
DROP FUNCTION IF EXISTS recon_delete_exception_embeddings();
DROP INDEX IF EXISTS idx_exceptions_resolved_precedents;
ALTER TABLE reconciliation_exceptions DROP COLUMN IF EXISTS suggestion;
DROP INDEX IF EXISTS idx_embeddings_reconciliation;
ALTER TABLE document_embeddings
    DROP CONSTRAINT IF EXISTS fk_embeddings_reconciliation,
    DROP COLUMN IF EXISTS reconciliation_id;
