-- Rolls back 0017: the exception's filters on its embedding row, their triggers and index.
DROP VIEW IF EXISTS organization_document_embeddings;
DROP TRIGGER IF EXISTS trg_exceptions_embedding_columns ON reconciliation_exceptions;
DROP FUNCTION IF EXISTS recon_exception_embedding_columns();
DROP TRIGGER IF EXISTS trg_embeddings_exception_columns ON document_embeddings;
DROP FUNCTION IF EXISTS recon_embedding_exception_columns();
DROP INDEX IF EXISTS idx_embeddings_exception_filters;
DO $$
DECLARE
    i text;
BEGIN
    FOR i IN SELECT indexname FROM pg_indexes
        WHERE tablename = 'document_embeddings' AND indexname LIKE 'idx_embeddings_ivf_t_%'
    LOOP
        EXECUTE format('DROP INDEX IF EXISTS %I', i);
    END LOOP;
END;
$$;
ALTER TABLE document_embeddings ALTER COLUMN embedding SET STORAGE EXTENDED;
ALTER TABLE document_embeddings RESET (toast_tuple_target);
ALTER TABLE document_embeddings
    DROP COLUMN exception_type, DROP COLUMN exception_severity, DROP COLUMN exception_status;
CREATE VIEW organization_document_embeddings AS
    SELECT * FROM document_embeddings
    WHERE organization_id = recon_organization_id() OR current_user <> 'recon_app';
GRANT SELECT ON organization_document_embeddings TO recon_app;
