-- Rolls back 0010: policies, row-level security, recon_app's privileges in this database and
-- the role itself (kept when another database of the server still grants it something).
DROP VIEW IF EXISTS organization_document_embeddings;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'data_sources', 'uploaded_files', 'rule_sets',
        'reconciliations', 'reconciliation_exceptions', 'reconciliation_matches', 'chat_sessions',
        'document_embeddings', 'pipeline_run_logs', 'sync_logs', 'linkage_models',
        'reconciliation_feeds', 'field_mappings', 'matching_rules', 'chat_messages']
    LOOP
        EXECUTE format('DROP POLICY IF EXISTS organization_rows ON %I', t);
        EXECUTE format('ALTER TABLE %I DISABLE ROW LEVEL SECURITY', t);
    END LOOP;
END;
$$;
DROP POLICY IF EXISTS organization_own ON organizations;
ALTER TABLE organizations DISABLE ROW LEVEL SECURITY;
DROP FUNCTION IF EXISTS recon_organization_id();
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'recon_app') THEN
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM recon_app', current_schema());
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM recon_app',
            current_schema());
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM recon_app', current_schema());
        EXECUTE format('REVOKE ALL ON DATABASE %I FROM recon_app', current_database());
        BEGIN
            DROP ROLE recon_app;
        EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege THEN
            NULL;  -- another database still uses it, or the owner may not drop roles
        END;
    END IF;
END;
$$;
