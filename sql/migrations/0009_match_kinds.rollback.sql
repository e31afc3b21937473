-- Rolls back 0009: REFERENCE and NEAR pairs become EXACT and PROBABILISTIC.
UPDATE reconciliation_matches SET match_kind = 'EXACT' WHERE match_kind = 'REFERENCE';
UPDATE reconciliation_matches SET match_kind = 'PROBABILISTIC' WHERE match_kind = 'NEAR';
ALTER TABLE reconciliation_matches DROP CONSTRAINT ck_matches_kind;
ALTER TABLE reconciliation_matches ADD CONSTRAINT ck_matches_kind
    CHECK (match_kind IN ('EXACT', 'PROBABILISTIC', 'MANUAL'));
