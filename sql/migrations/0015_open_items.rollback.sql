-- Rolls back 0015: no more open items carried across business dates; carried matches already
-- written stay as rows of their reconciliation (their carried-row origins go).
ALTER TABLE reconciliations DROP COLUMN IF EXISTS carry_stale, DROP COLUMN IF EXISTS carry_digest;
DROP INDEX IF EXISTS idx_exceptions_carried_to;
ALTER TABLE reconciliation_exceptions DROP COLUMN IF EXISTS carried_to_reconciliation_id;
DROP TABLE IF EXISTS reconciliation_carried_rows;
