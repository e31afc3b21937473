-- Rolls back 0011: aggregate matches are deleted (they cannot be one-to-one), the per-side
-- unique constraints and the match kinds of 0009 come back.
DELETE FROM reconciliation_matches WHERE match_kind = 'AGGREGATE';
DROP INDEX IF EXISTS idx_matches_group;
DROP INDEX IF EXISTS uk_matches_group_pair;
DROP INDEX IF EXISTS uk_matches_source_row;
DROP INDEX IF EXISTS uk_matches_target_row;
ALTER TABLE reconciliation_matches ADD CONSTRAINT uk_matches_source_row
    UNIQUE (reconciliation_id, source_row_number);
ALTER TABLE reconciliation_matches ADD CONSTRAINT uk_matches_target_row
    UNIQUE (reconciliation_id, target_row_number);
ALTER TABLE reconciliation_matches DROP CONSTRAINT ck_matches_group;
ALTER TABLE reconciliation_matches DROP CONSTRAINT ck_matches_kind;
ALTER TABLE reconciliation_matches ADD CONSTRAINT ck_matches_kind
    CHECK (match_kind IN ('EXACT', 'REFERENCE', 'PROBABILISTIC', 'NEAR', 'MANUAL'));
ALTER TABLE reconciliation_matches DROP COLUMN match_group;
