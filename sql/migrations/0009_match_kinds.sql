-- How a pair was made, as reconciliation_matches.match_kind: EXACT (agrees on every rule),
-- REFERENCE (the same identifier; amounts or dates judged afterwards), PROBABILISTIC (Splink),
-- NEAR (the only near candidate of both records once everything else was paired), MANUAL.
-- depends: 0008_feeds

ALTER TABLE reconciliation_matches DROP CONSTRAINT ck_matches_kind;
ALTER TABLE reconciliation_matches ADD CONSTRAINT ck_matches_kind
    CHECK (match_kind IN ('EXACT', 'REFERENCE', 'PROBABILISTIC', 'NEAR', 'MANUAL'));
