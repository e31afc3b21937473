-- Search filters on the embedding row: an exception's type, severity and status copied onto
-- its document_embeddings row, so a filtered vector search reads one table. Joined to
-- reconciliation_exceptions inside the index scan, a filter made the IVF scan fetch an
-- exception row per candidate (1.7-2.4 s for a type far from the words at 1M rows), and a
-- filter on the exception row cannot name a partial index: with the type on the embedding,
-- the search's IVF indexes of one type (`pipelines/embed/search/ivf.py`) serve it.
-- Kept by triggers: set from the exception when its embedding is inserted, updated when a
-- person or the pipeline changes the exception's status (or type, severity).
-- The embedding is kept inside the row (STORAGE MAIN, rows up to 4 kB left whole): a row of
-- ~2.4 kB (the 1.5 kB vector, its text and tsvector) passed the 2 kB default, and PostgreSQL
-- moved the vector, its largest value, to the TOAST table; every distance the exact search
-- (`vectors.exact_statement`) computed then read it from there (~10 us a row: 80 ms for a
-- filter leaving 8,000 of 1M rows). Rows written before this migration keep their TOASTed
-- vectors until re-embedded (`VACUUM FULL document_embeddings` rewrites them all, locking it).
-- depends: 0016_amount_matches

ALTER TABLE document_embeddings
    ADD COLUMN exception_type VARCHAR(50),
    ADD COLUMN exception_severity VARCHAR(20),
    ADD COLUMN exception_status VARCHAR(20);
ALTER TABLE document_embeddings ALTER COLUMN embedding SET STORAGE MAIN;
ALTER TABLE document_embeddings SET (toast_tuple_target = 4080);

UPDATE document_embeddings d
    SET exception_type = e.type, exception_severity = e.severity, exception_status = e.status
    FROM reconciliation_exceptions e
    WHERE d.document_type = 'EXCEPTION' AND e.id = d.document_id
      AND e.organization_id = d.organization_id;

CREATE FUNCTION recon_embedding_exception_columns() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT e.type, e.severity, e.status
        INTO NEW.exception_type, NEW.exception_severity, NEW.exception_status
        FROM reconciliation_exceptions e
        WHERE e.id = NEW.document_id AND e.organization_id = NEW.organization_id;
    RETURN NEW;
END;
$$;

CREATE TRIGGER trg_embeddings_exception_columns
    BEFORE INSERT ON document_embeddings
    FOR EACH ROW WHEN (NEW.document_type = 'EXCEPTION')
    EXECUTE FUNCTION recon_embedding_exception_columns();

CREATE FUNCTION recon_exception_embedding_columns() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE document_embeddings d
        SET exception_type = NEW.type, exception_severity = NEW.severity,
            exception_status = NEW.status
        WHERE d.organization_id = NEW.organization_id AND d.document_type = 'EXCEPTION'
          AND d.document_id = NEW.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER trg_exceptions_embedding_columns
    AFTER UPDATE OF type, severity, status ON reconciliation_exceptions
    FOR EACH ROW WHEN (OLD.type IS DISTINCT FROM NEW.type
        OR OLD.severity IS DISTINCT FROM NEW.severity OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION recon_exception_embedding_columns();

-- the exact search of a narrow filter (a type, severity and status of one organization)
CREATE INDEX idx_embeddings_exception_filters ON document_embeddings
    (organization_id, exception_type, exception_status, exception_severity)
    WHERE document_type = 'EXCEPTION';

-- the view of migration 0010 lists the table's columns as they were: again, with these
CREATE OR REPLACE VIEW organization_document_embeddings AS
    SELECT * FROM document_embeddings
    WHERE organization_id = recon_organization_id() OR current_user <> 'recon_app';
