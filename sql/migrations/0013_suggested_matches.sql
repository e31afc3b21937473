-- Suggested matches kept from linkage (issue 17): a MISSING exception whose record Splink scored
-- below the match threshold against a record of the other file still unmatched keeps that best
-- candidate, {"source_row", "target_row", "score", "threshold", "why": [{field, source_value,
-- target_value, delta}]}; NULL when no candidate was scored. `recon exceptions accept` turns it
-- into a MANUAL match, `dismiss` records the refusal (audit_log). Not `suggestion` (0006):
-- that one is a suggested resolution taken from resolved precedents.
-- depends: 0012_working_exceptions

ALTER TABLE reconciliation_exceptions ADD COLUMN suggested_match JSONB;
