-- Amount matches: linkage's fifth pass pairs leftovers with no identifier or name to go on (a
-- bank line with a blank reference) whose amount and date agree within tolerance and that are
-- each other's only such candidate; they are written with match_kind AMOUNT.
-- depends: 0015_open_items

ALTER TABLE reconciliation_matches DROP CONSTRAINT ck_matches_kind;
ALTER TABLE reconciliation_matches ADD CONSTRAINT ck_matches_kind CHECK (match_kind IN
    ('EXACT', 'REFERENCE', 'PROBABILISTIC', 'NEAR', 'AMOUNT', 'MANUAL', 'AGGREGATE'));
