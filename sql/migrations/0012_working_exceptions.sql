-- Working the exceptions (issue 17): who acts, what they decided, and an append-only trail.
-- `audit_log`: one row per change (an exception assigned, resolved, ignored or reopened, a user
-- added or deactivated, a reason code added), with the state before and after as JSON. The
-- product's role `recon_app` may only read and append its organization's rows; a trigger also
-- refuses UPDATE, DELETE and TRUNCATE for anyone but the table's owner (who may still cascade
-- an organization's deletion). `entity_key` is stable across re-runs: for an exception
-- `<reconciliation id>:<fingerprint>` (a re-run recreates exception rows with new ids).
-- `exception_work`: the assignee and reason code of an exception, by the same stable key, so
-- they survive a re-run beside the status and resolution the commit carries by fingerprint.
-- `exception_reason_codes`: an organization's own reason codes, added to the built-in ones.
-- depends: 0011_aggregate_matches

CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    organization_id BIGINT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    actor_user_id BIGINT REFERENCES users(id) ON DELETE SET NULL,
    actor VARCHAR(255) NOT NULL,
    entity VARCHAR(50) NOT NULL,
    entity_id BIGINT,
    entity_key TEXT,
    action VARCHAR(50) NOT NULL,
    before JSONB,
    after JSONB,
    reason TEXT,
    at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX idx_audit_log_entity ON audit_log (organization_id, entity, entity_key, at);
CREATE INDEX idx_audit_log_at ON audit_log (organization_id, at DESC);

-- statement-level: it fires even when row-level security leaves the statement no row
CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF current_user <> (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = TG_RELID) THEN
        RAISE EXCEPTION 'audit_log is append-only: % refused for %', TG_OP, current_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER trg_audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE exception_work (
    organization_id BIGINT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    reconciliation_id BIGINT NOT NULL REFERENCES reconciliations(id) ON DELETE CASCADE,
    exception_key TEXT NOT NULL,
    assignee_user_id BIGINT REFERENCES users(id) ON DELETE SET NULL,
    reason_code VARCHAR(50),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (reconciliation_id, exception_key)
);
CREATE INDEX idx_exception_work_assignee ON exception_work (organization_id, assignee_user_id);

CREATE TABLE exception_reason_codes (
    organization_id BIGINT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    code VARCHAR(50) NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (organization_id, code),
    CONSTRAINT ck_reason_code CHECK (code ~ '^[A-Z][A-Z0-9_]{0,49}$')
);

-- the product's role: read and append the trail, work the other two; its organization's only
GRANT SELECT, INSERT ON audit_log TO recon_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON exception_work TO recon_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON exception_reason_codes TO recon_app;
GRANT USAGE ON SEQUENCE audit_log_id_seq TO recon_app;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['audit_log', 'exception_work', 'exception_reason_codes']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY organization_rows ON %I TO recon_app '
            'USING (organization_id = recon_organization_id()) '
            'WITH CHECK (organization_id = recon_organization_id())', t);
    END LOOP;
END;
$$;
