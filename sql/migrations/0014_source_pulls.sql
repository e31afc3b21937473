-- Pulled data sources (issue 18): a DATABASE or REST_API source's pull is a `sync_logs` row
-- (system `database-pull` / `rest-api-pull`) whose `details` say what was asked and what came
-- back: {"business_date", "watermark_from", "watermark_to", "query" (SQL or URL, credentials
-- masked), "file" (the landing-zone name written), "sha256" (its content, = the landed
-- uploaded_files.content_sha256: the lineage from a file back to its pull), "records"}.
-- The next pull of a later business date starts from the newest earlier pull's watermark_to.
-- depends: 0013_suggested_matches

ALTER TABLE sync_logs ADD COLUMN details JSONB;
CREATE INDEX idx_synclogs_source_pulls ON sync_logs (data_source_id, id DESC)
    WHERE system IN ('database-pull', 'rest-api-pull');
