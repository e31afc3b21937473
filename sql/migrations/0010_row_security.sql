-- Organizations separated by PostgreSQL: row-level security on every table that holds an
-- organization's rows, for the role `recon_app` the product's organization-scoped queries run as
-- (`SET LOCAL ROLE recon_app` and the organization in `recon.organization_id`, per transaction:
-- resources/database.py `organization_transaction`). With no organization set, or another, a
-- row is not visible and cannot be written (no error: the setting is read with missing_ok).
-- recon_app is NOLOGIN, not a superuser and owns nothing; the tables' owner (the URL's user,
-- `recon db url`) is a member so it can SET ROLE, and it bypasses row-level security itself
-- (no FORCE): migrations, administration and the cross-organization scans stay the owner's.
-- Tables a later migration adds get no grant (fail closed) until it grants and adds a policy.
-- embedding_cache (text hash -> vector, shared by every organization) and the migration
-- bookkeeping are the owner's only. Roles are cluster-wide: every database of the server
-- shares recon_app; the organization setting is what separates rows.
-- depends: 0009_match_kinds

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'recon_app') THEN
        BEGIN
            CREATE ROLE recon_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration created it meanwhile
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'cannot create the role recon_app: % lacks CREATEROLE', current_user
                    USING HINT = 'as an administrator run: CREATE ROLE recon_app NOLOGIN; '
                        || format('GRANT recon_app TO %I;', current_user)
                        || ' then migrate again';
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'recon_app'
               AND (rolsuper OR rolbypassrls OR rolcanlogin)) THEN
        RAISE EXCEPTION 'the role recon_app exists and is a superuser, bypasses row-level '
            'security or can log in; it must be none of these';
    END IF;
    -- SET ROLE needs membership WITH SET (PostgreSQL 16+: a CREATEROLE creator holds only ADMIN)
    IF NOT pg_has_role(current_user, 'recon_app',
        CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END)
    THEN
        BEGIN
            EXECUTE format('GRANT recon_app TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
            RAISE EXCEPTION 'cannot make % a member of recon_app (it must SET ROLE to it)',
                current_user
                USING HINT = format('as an administrator run: GRANT recon_app TO %I;',
                    current_user) || ' then migrate again';
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO recon_app', current_schema());
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO recon_app', current_database());
END;
$$;

-- The organization of the current transaction; NULL when none is set (missing, or '' once a
-- SET LOCAL of it has ended in this session). Inlined by the planner, so policies on an
-- indexed organization_id use the index.
CREATE FUNCTION recon_organization_id() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT NULLIF(current_setting('recon.organization_id', true), '')::bigint $$;

-- The organizations table itself: one's own row, read only.
GRANT SELECT ON organizations TO recon_app;
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_own ON organizations FOR SELECT TO recon_app
    USING (id = recon_organization_id());

-- Tables with their own organization_id: visible and writable only for that organization.
GRANT SELECT, INSERT, UPDATE, DELETE ON users, data_sources, uploaded_files, rule_sets,
    reconciliations, reconciliation_exceptions, reconciliation_matches, chat_sessions,
    document_embeddings, pipeline_run_logs, sync_logs, linkage_models, reconciliation_feeds
    TO recon_app;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'data_sources', 'uploaded_files', 'rule_sets',
        'reconciliations', 'reconciliation_exceptions', 'reconciliation_matches', 'chat_sessions',
        'document_embeddings', 'pipeline_run_logs', 'sync_logs', 'linkage_models',
        'reconciliation_feeds']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY organization_rows ON %I TO recon_app '
            'USING (organization_id = recon_organization_id()) '
            'WITH CHECK (organization_id = recon_organization_id())', t);
    END LOOP;
END;
$$;

-- Tables whose organization is their parent's: a row is visible (and writable) when its
-- parent is, found through the parent's primary key (the parent's own policy applies too).
GRANT SELECT, INSERT, UPDATE, DELETE ON field_mappings, matching_rules, chat_messages
    TO recon_app;
ALTER TABLE field_mappings ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON field_mappings TO recon_app
    USING (EXISTS (SELECT 1 FROM rule_sets r WHERE r.id = field_mappings.rule_set_id
        AND r.organization_id = recon_organization_id()))
    WITH CHECK (EXISTS (SELECT 1 FROM rule_sets r WHERE r.id = field_mappings.rule_set_id
        AND r.organization_id = recon_organization_id()));
ALTER TABLE matching_rules ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON matching_rules TO recon_app
    USING (EXISTS (SELECT 1 FROM rule_sets r WHERE r.id = matching_rules.rule_set_id
        AND r.organization_id = recon_organization_id()))
    WITH CHECK (EXISTS (SELECT 1 FROM rule_sets r WHERE r.id = matching_rules.rule_set_id
        AND r.organization_id = recon_organization_id()));
ALTER TABLE chat_messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON chat_messages TO recon_app
    USING (EXISTS (SELECT 1 FROM chat_sessions s WHERE s.id = chat_messages.session_id
        AND s.organization_id = recon_organization_id()))
    WITH CHECK (EXISTS (SELECT 1 FROM chat_sessions s WHERE s.id = chat_messages.session_id
        AND s.organization_id = recon_organization_id()));

-- Full-text search under row-level security: `@@` is not leakproof, so PostgreSQL will not use
-- the GIN index of content_tsv below a policy (a sequential scan instead: 7 ms -> 178 ms for a
-- rare word at 400k rows). This view has the owner's rights (no policy applies beneath it)
-- and holds, for recon_app, the rows of the organization set only (none when none is set);
-- for the owner, every row. Its readers' `@@` may use the index. The search reads it.
CREATE VIEW organization_document_embeddings AS
    SELECT * FROM document_embeddings
    WHERE organization_id = recon_organization_id() OR current_user <> 'recon_app';
GRANT SELECT ON organization_document_embeddings TO recon_app;

DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO recon_app', current_schema());
END;
$$;
