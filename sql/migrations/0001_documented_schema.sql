-- The documented Smart Reconciliation schema (docs: "Database Schema Documentation").
-- Every table, column, default, foreign key (with its ON DELETE rule), unique constraint and
-- index the document lists, plus CHECK constraints for its enumerations and triggers that keep
-- updated_at current. Deviations chosen on purpose are listed in tests/documented_schema.yaml.
-- depends:

CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Keeps updated_at current on every UPDATE, whatever client writes the row.
CREATE OR REPLACE FUNCTION recon_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := NOW();
    RETURN NEW;
END;
$$;

CREATE TABLE organizations (
    id BIGSERIAL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT uk_organizations_name UNIQUE (name)
);
CREATE INDEX idx_organizations_active ON organizations(active);

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    email VARCHAR(255) NOT NULL,
    name VARCHAR(255) NOT NULL,
    role VARCHAR(50) NOT NULL DEFAULT 'VIEWER',
    active BOOLEAN NOT NULL DEFAULT TRUE,
    organization_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT uk_users_email UNIQUE (email),
    CONSTRAINT ck_users_role CHECK (role IN ('ADMIN', 'EDITOR', 'VIEWER')),
    CONSTRAINT fk_users_organization FOREIGN KEY (organization_id)
        REFERENCES organizations(id) ON DELETE CASCADE
);
CREATE INDEX idx_users_email ON users(email);
CREATE INDEX idx_users_organization ON users(organization_id);
CREATE INDEX idx_users_active ON users(active);

CREATE TABLE data_sources (
    id BIGSERIAL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    type VARCHAR(50) NOT NULL,
    config JSONB,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    last_tested_at TIMESTAMP,
    last_test_successful BOOLEAN,
    last_test_error TEXT,
    organization_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT ck_datasources_type CHECK (type IN ('DATABASE', 'REST_API', 'FILE', 'WEBHOOK')),
    CONSTRAINT fk_datasources_organization FOREIGN KEY (organization_id)
        REFERENCES organizations(id) ON DELETE CASCADE
);
CREATE INDEX idx_datasources_organization ON data_sources(organization_id);
CREATE INDEX idx_datasources_type ON data_sources(type);
CREATE INDEX idx_datasources_active ON data_sources(active);

CREATE TABLE uploaded_files (
    id BIGSERIAL PRIMARY KEY,
    original_filename VARCHAR(500) NOT NULL,
    stored_filename VARCHAR(500) NOT NULL,
    content_type VARCHAR(100) NOT NULL,
    file_size BIGINT NOT NULL,
    file_path VARCHAR(1000),
    status VARCHAR(50) NOT NULL DEFAULT 'UPLOADING',
    detected_schema JSONB,
    row_count INTEGER,
    column_count INTEGER,
    processing_error TEXT,
    preview_data JSONB,
    data_source_id BIGINT,
    organization_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT ck_uploadedfiles_status
        CHECK (status IN ('UPLOADING', 'PROCESSING', 'PROCESSED', 'FAILED')),
    CONSTRAINT fk_uploadedfiles_datasource FOREIGN KEY (data_source_id)
        REFERENCES data_sources(id) ON DELETE SET NULL,
    CONSTRAINT fk_uploadedfiles_organization FOREIGN KEY (organization_id)
        REFERENCES organizations(id) ON DELETE CASCADE
);
CREATE INDEX idx_uploadedfiles_organization ON uploaded_files(organization_id);
CREATE INDEX idx_uploadedfiles_status ON uploaded_files(status);
CREATE INDEX idx_uploadedfiles_created ON uploaded_files(created_at DESC);

CREATE TABLE rule_sets (
    id BIGSERIAL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    version INTEGER NOT NULL DEFAULT 1,
    is_ai_generated BOOLEAN NOT NULL DEFAULT FALSE,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    metadata JSONB,
    organization_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT fk_rulesets_organization FOREIGN KEY (organization_id)
        REFERENCES organizations(id) ON DELETE CASCADE
);
CREATE INDEX idx_rulesets_organization ON rule_sets(organization_id);
CREATE INDEX idx_rulesets_active ON rule_sets(active);
CREATE INDEX idx_rulesets_ai_generated ON rule_sets(is_ai_generated);

CREATE TABLE field_mappings (
    id BIGSERIAL PRIMARY KEY,
    source_field VARCHAR(255) NOT NULL,
    target_field VARCHAR(255) NOT NULL,
    transformation_type VARCHAR(50) NOT NULL DEFAULT 'DIRECT',
    transformation_config JSONB,
    order_index INTEGER NOT NULL DEFAULT 0,
    rule_set_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT ck_fieldmappings_transformation_type CHECK (transformation_type IN
        ('DIRECT', 'UPPERCASE', 'LOWERCASE', 'TRIM', 'DATE_FORMAT', 'CURRENCY_CONVERSION')),
    CONSTRAINT fk_fieldmappings_ruleset FOREIGN KEY (rule_set_id)
        REFERENCES rule_sets(id) ON DELETE CASCADE
);
CREATE INDEX idx_fieldmappings_ruleset ON field_mappings(rule_set_id);
CREATE INDEX idx_fieldmappings_order ON field_mappings(rule_set_id, order_index);

CREATE TABLE matching_rules (
    id BIGSERIAL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    match_type VARCHAR(50) NOT NULL,
    fields JSONB NOT NULL,
    weight DECIMAL(3,2) NOT NULL DEFAULT 1.0,
    threshold DECIMAL(3,2),
    tolerance DECIMAL(10,4),
    order_index INTEGER NOT NULL DEFAULT 0,
    rule_set_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT ck_matchingrules_match_type
        CHECK (match_type IN ('EXACT', 'FUZZY', 'RANGE', 'DATE_RANGE')),
    CONSTRAINT fk_matchingrules_ruleset FOREIGN KEY (rule_set_id)
        REFERENCES rule_sets(id) ON DELETE CASCADE
);
CREATE INDEX idx_matchingrules_ruleset ON matching_rules(rule_set_id);
CREATE INDEX idx_matchingrules_order ON matching_rules(rule_set_id, order_index);

CREATE TABLE reconciliations (
    id BIGSERIAL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    status VARCHAR(50) NOT NULL DEFAULT 'PENDING',
    source_file_id BIGINT,
    target_file_id BIGINT,
    rule_set_id BIGINT,
    total_source_records INTEGER DEFAULT 0,
    total_target_records INTEGER DEFAULT 0,
    matched_records INTEGER DEFAULT 0,
    unmatched_source_records INTEGER DEFAULT 0,
    unmatched_target_records INTEGER DEFAULT 0,
    exception_count INTEGER DEFAULT 0,
    match_rate DECIMAL(5,2) DEFAULT 0.0,
    progress INTEGER DEFAULT 0,
    error_message TEXT,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    results JSONB,
    statistics JSONB,
    organization_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT ck_reconciliations_status
        CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    CONSTRAINT fk_reconciliations_sourcefile FOREIGN KEY (source_file_id)
        REFERENCES uploaded_files(id) ON DELETE SET NULL,
    CONSTRAINT fk_reconciliations_targetfile FOREIGN KEY (target_file_id)
        REFERENCES uploaded_files(id) ON DELETE SET NULL,
    CONSTRAINT fk_reconciliations_ruleset FOREIGN KEY (rule_set_id)
        REFERENCES rule_sets(id) ON DELETE SET NULL,
    CONSTRAINT fk_reconciliations_organization FOREIGN KEY (organization_id)
        REFERENCES organizations(id) ON DELETE CASCADE
);
CREATE INDEX idx_reconciliations_organization ON reconciliations(organization_id);
CREATE INDEX idx_reconciliations_status ON reconciliations(status);
CREATE INDEX idx_reconciliations_created ON reconciliations(created_at DESC);

CREATE TABLE reconciliation_exceptions (
    id BIGSERIAL PRIMARY KEY,
    reconciliation_id BIGINT NOT NULL,
    type VARCHAR(50) NOT NULL,
    severity VARCHAR(20) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'OPEN',
    description TEXT,
    source_data JSONB,
    target_data JSONB,
    diff JSONB,
    confidence DOUBLE PRECISION,
    resolution TEXT,
    resolved_by VARCHAR(255),
    resolved_at TIMESTAMP,
    organization_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT ck_exceptions_type CHECK (type IN ('AMOUNT_MISMATCH', 'DATE_MISMATCH',
        'MISSING_IN_SOURCE', 'MISSING_IN_TARGET', 'DUPLICATE_FOUND', 'VALIDATION_ERROR')),
    CONSTRAINT ck_exceptions_severity CHECK (severity IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
    CONSTRAINT ck_exceptions_status CHECK (status IN ('OPEN', 'RESOLVED', 'IGNORED')),
    CONSTRAINT fk_exceptions_reconciliation FOREIGN KEY (reconciliation_id)
        REFERENCES reconciliations(id) ON DELETE CASCADE,
    CONSTRAINT fk_exceptions_organization FOREIGN KEY (organization_id)
        REFERENCES organizations(id) ON DELETE CASCADE
);
CREATE INDEX idx_exceptions_reconciliation ON reconciliation_exceptions(reconciliation_id);
CREATE INDEX idx_exceptions_type ON reconciliation_exceptions(type);
CREATE INDEX idx_exceptions_severity ON reconciliation_exceptions(severity);
CREATE INDEX idx_exceptions_status ON reconciliation_exceptions(status);
CREATE INDEX idx_exceptions_organization ON reconciliation_exceptions(organization_id);

CREATE TABLE chat_sessions (
    id BIGSERIAL PRIMARY KEY,
    reconciliation_id BIGINT,
    context_type VARCHAR(50),
    organization_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT fk_chatsessions_reconciliation FOREIGN KEY (reconciliation_id)
        REFERENCES reconciliations(id) ON DELETE CASCADE,
    CONSTRAINT fk_chatsessions_organization FOREIGN KEY (organization_id)
        REFERENCES organizations(id) ON DELETE CASCADE
);
CREATE INDEX idx_chatsessions_reconciliation ON chat_sessions(reconciliation_id);
CREATE INDEX idx_chatsessions_organization ON chat_sessions(organization_id);
CREATE INDEX idx_chatsessions_created ON chat_sessions(created_at DESC);

CREATE TABLE chat_messages (
    id BIGSERIAL PRIMARY KEY,
    session_id BIGINT NOT NULL,
    role VARCHAR(20) NOT NULL,
    content TEXT NOT NULL,
    metadata JSONB,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT ck_chatmessages_role CHECK (role IN ('USER', 'ASSISTANT')),
    CONSTRAINT fk_chatmessages_session FOREIGN KEY (session_id)
        REFERENCES chat_sessions(id) ON DELETE CASCADE
);
CREATE INDEX idx_chatmessages_session ON chat_messages(session_id);
CREATE INDEX idx_chatmessages_created ON chat_messages(session_id, created_at);

-- "Performance-critical" indexes from the document's Indexes section.
CREATE INDEX idx_reconciliations_org_status ON reconciliations(organization_id, status);
CREATE INDEX idx_exceptions_org_status ON reconciliation_exceptions(organization_id, status);
CREATE INDEX idx_reconciliations_created_desc ON reconciliations(created_at DESC);
CREATE INDEX idx_exceptions_created_desc ON reconciliation_exceptions(created_at DESC);
CREATE INDEX idx_uploadedfiles_filename ON uploaded_files(original_filename);
CREATE INDEX idx_rulesets_name ON rule_sets(organization_id, name);
-- From the document's Performance Optimization section.
CREATE INDEX idx_reconciliations_org_status_created
    ON reconciliations(organization_id, status, created_at DESC);

-- The document's vector table, sized for all-MiniLM-L6-v2 and indexed with HNSW (see deviations).
CREATE TABLE document_embeddings (
    id BIGSERIAL PRIMARY KEY,
    document_id BIGINT NOT NULL,
    document_type VARCHAR(50) NOT NULL,
    content TEXT NOT NULL,
    embedding vector(384),
    organization_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT fk_embeddings_organization FOREIGN KEY (organization_id)
        REFERENCES organizations(id) ON DELETE CASCADE
);
CREATE INDEX idx_embeddings_vector ON document_embeddings
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);

CREATE TRIGGER trg_organizations_updated_at BEFORE UPDATE ON organizations
    FOR EACH ROW EXECUTE FUNCTION recon_set_updated_at();
CREATE TRIGGER trg_users_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION recon_set_updated_at();
CREATE TRIGGER trg_data_sources_updated_at BEFORE UPDATE ON data_sources
    FOR EACH ROW EXECUTE FUNCTION recon_set_updated_at();
CREATE TRIGGER trg_uploaded_files_updated_at BEFORE UPDATE ON uploaded_files
    FOR EACH ROW EXECUTE FUNCTION recon_set_updated_at();
CREATE TRIGGER trg_rule_sets_updated_at BEFORE UPDATE ON rule_sets
    FOR EACH ROW EXECUTE FUNCTION recon_set_updated_at();
CREATE TRIGGER trg_field_mappings_updated_at BEFORE UPDATE ON field_mappings
    FOR EACH ROW EXECUTE FUNCTION recon_set_updated_at();
CREATE TRIGGER trg_matching_rules_updated_at BEFORE UPDATE ON matching_rules
    FOR EACH ROW EXECUTE FUNCTION recon_set_updated_at();
CREATE TRIGGER trg_reconciliations_updated_at BEFORE UPDATE ON reconciliations
    FOR EACH ROW EXECUTE FUNCTION recon_set_updated_at();
CREATE TRIGGER trg_reconciliation_exceptions_updated_at BEFORE UPDATE ON reconciliation_exceptions
    FOR EACH ROW EXECUTE FUNCTION recon_set_updated_at();
CREATE TRIGGER trg_chat_sessions_updated_at BEFORE UPDATE ON chat_sessions
    FOR EACH ROW EXECUTE FUNCTION recon_set_updated_at();

INSERT INTO organizations (name, description)
VALUES ('Default Organization', 'System default organization')
ON CONFLICT (name) DO NOTHING;
