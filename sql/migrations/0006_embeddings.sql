-- Semantic search and suggested resolutions over exceptions: embeddings know their
-- reconciliation (filter, and gone with it), an exception's embedding goes with the exception
-- (a re-run replaces exceptions with new ids), each exception can carry a suggested resolution
-- taken from resolved precedents, and a partial index finds those precedents per organization.
-- depends: 0005_bulk_matches

ALTER TABLE document_embeddings
    ADD COLUMN reconciliation_id BIGINT,
    ADD CONSTRAINT fk_embeddings_reconciliation FOREIGN KEY (reconciliation_id)
        REFERENCES reconciliations(id) ON DELETE CASCADE;
CREATE INDEX idx_embeddings_reconciliation ON document_embeddings(reconciliation_id);

-- {"resolution", "score", "precedent_id", "evidence": [{exception_id, reconciliation_id,
--  similarity, resolution}], "model_name", "suggested_at"}; NULL when no precedent is close.
ALTER TABLE reconciliation_exceptions ADD COLUMN suggestion JSONB;

CREATE INDEX idx_exceptions_resolved_precedents ON reconciliation_exceptions(organization_id, type)
    WHERE status = 'RESOLVED';

CREATE FUNCTION recon_delete_exception_embeddings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM document_embeddings d USING old_rows o
        WHERE d.organization_id = o.organization_id
          AND d.document_type = 'EXCEPTION'
          AND d.document_id = o.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER trg_exceptions_delete_embeddings
    AFTER DELETE ON reconciliation_exceptions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION recon_delete_exception_embeddings();
