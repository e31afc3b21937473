-- Rolls back 0016: amount matches become NEAR matches (both are leftovers' clear pairings).
UPDATE reconciliation_matches SET match_kind = 'NEAR' WHERE match_kind = 'AMOUNT';
ALTER TABLE reconciliation_matches DROP CONSTRAINT ck_matches_kind;
ALTER TABLE reconciliation_matches ADD CONSTRAINT ck_matches_kind CHECK (match_kind IN
    ('EXACT', 'REFERENCE', 'PROBABILISTIC', 'NEAR', 'MANUAL', 'AGGREGATE'));
