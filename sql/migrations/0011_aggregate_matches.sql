-- Aggregate matching (issue 16): one record settled by several of the other side. A group is
-- written as one reconciliation_matches row per member pair, match_kind AGGREGATE, sharing
-- match_group (a number unique within its reconciliation); the one side's record repeats in
-- every row of its group. Each side stays unique per reconciliation for every other kind
-- (partial unique indexes replace the two unique constraints), and within a group.
-- depends: 0010_row_security

ALTER TABLE reconciliation_matches ADD COLUMN match_group INTEGER;
ALTER TABLE reconciliation_matches DROP CONSTRAINT ck_matches_kind;
ALTER TABLE reconciliation_matches ADD CONSTRAINT ck_matches_kind
    CHECK (match_kind IN ('EXACT', 'REFERENCE', 'PROBABILISTIC', 'NEAR', 'MANUAL', 'AGGREGATE'));
-- a group's rows carry its number, and only a group's rows do
ALTER TABLE reconciliation_matches ADD CONSTRAINT ck_matches_group
    CHECK ((match_kind = 'AGGREGATE') = (match_group IS NOT NULL));
ALTER TABLE reconciliation_matches DROP CONSTRAINT uk_matches_source_row;
ALTER TABLE reconciliation_matches DROP CONSTRAINT uk_matches_target_row;
CREATE UNIQUE INDEX uk_matches_source_row ON reconciliation_matches
    (reconciliation_id, source_row_number) WHERE match_kind <> 'AGGREGATE';
CREATE UNIQUE INDEX uk_matches_target_row ON reconciliation_matches
    (reconciliation_id, target_row_number) WHERE match_kind <> 'AGGREGATE';
-- a member pair appears once
CREATE UNIQUE INDEX uk_matches_group_pair ON reconciliation_matches
    (reconciliation_id, source_row_number, target_row_number) WHERE match_kind = 'AGGREGATE';
CREATE INDEX idx_matches_group ON reconciliation_matches (reconciliation_id, match_group)
    WHERE match_group IS NOT NULL;
