-- Rolls back 0013: the suggested match kept on MISSING exceptions goes (`recon exceptions
-- suggest` then computes one when asked).
ALTER TABLE reconciliation_exceptions DROP COLUMN IF EXISTS suggested_match;
