-- Rolls back 0014: pulls lose their details (watermarks, query, file), so the next pull of a
-- DATABASE or REST_API source starts from its initial watermark.
DROP INDEX IF EXISTS idx_synclogs_source_pulls;
ALTER TABLE sync_logs DROP COLUMN IF EXISTS details;
