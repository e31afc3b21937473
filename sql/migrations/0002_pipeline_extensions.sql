-- Extensions to the documented schema that the pipeline needs (listed in the README):
-- reconciliation_matches (row-level lineage of every matched pair), embedding_cache (text hash +
-- model name, as in the sibling seed 002), pipeline_run_logs (every stage and model call, as in
-- seed 003) and sync_logs (every file landing, as in seed 004), plus model name and full-text
-- search support on document_embeddings.
-- depends: 0001_documented_schema

CREATE TABLE reconciliation_matches (
    id BIGSERIAL PRIMARY KEY,
    reconciliation_id BIGINT NOT NULL,
    organization_id BIGINT NOT NULL,
    source_row_number INTEGER NOT NULL,
    target_row_number INTEGER NOT NULL,
    match_score DOUBLE PRECISION NOT NULL,
    match_kind VARCHAR(20) NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT ck_matches_kind CHECK (match_kind IN ('EXACT', 'PROBABILISTIC', 'MANUAL')),
    CONSTRAINT ck_matches_score CHECK (match_score >= 0 AND match_score <= 1),
    CONSTRAINT ck_matches_rows CHECK (source_row_number >= 1 AND target_row_number >= 1),
    -- one-to-one: a record is matched at most once per reconciliation
    CONSTRAINT uk_matches_source_row UNIQUE (reconciliation_id, source_row_number),
    CONSTRAINT uk_matches_target_row UNIQUE (reconciliation_id, target_row_number),
    CONSTRAINT fk_matches_reconciliation FOREIGN KEY (reconciliation_id)
        REFERENCES reconciliations(id) ON DELETE CASCADE,
    CONSTRAINT fk_matches_organization FOREIGN KEY (organization_id)
        REFERENCES organizations(id) ON DELETE CASCADE
);
CREATE INDEX idx_matches_organization ON reconciliation_matches(organization_id);

CREATE TABLE embedding_cache (
    text_sha256 CHAR(64) NOT NULL,
    model_name VARCHAR(255) NOT NULL,
    embedding vector(384) NOT NULL,
    hit_count INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    last_used_at TIMESTAMP NOT NULL DEFAULT NOW(),
    expires_at TIMESTAMP,
    CONSTRAINT pk_embedding_cache PRIMARY KEY (text_sha256, model_name)
);
CREATE INDEX idx_embedding_cache_expires ON embedding_cache(expires_at)
    WHERE expires_at IS NOT NULL;

CREATE TABLE pipeline_run_logs (
    id BIGSERIAL PRIMARY KEY,
    organization_id BIGINT,
    stage VARCHAR(50) NOT NULL,
    dagster_run_id VARCHAR(64),
    partition_key VARCHAR(255),
    reconciliation_id BIGINT,
    uploaded_file_id BIGINT,
    model_name VARCHAR(255),
    records_processed BIGINT NOT NULL DEFAULT 0,
    latency_ms DOUBLE PRECISION,
    status VARCHAR(20) NOT NULL,
    error_code VARCHAR(100),
    error_message TEXT,
    metadata JSONB,
    started_at TIMESTAMP NOT NULL DEFAULT NOW(),
    completed_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT ck_runlogs_status CHECK (status IN ('RUNNING', 'SUCCESS', 'FAILED', 'SKIPPED')),
    CONSTRAINT fk_runlogs_organization FOREIGN KEY (organization_id)
        REFERENCES organizations(id) ON DELETE CASCADE,
    CONSTRAINT fk_runlogs_reconciliation FOREIGN KEY (reconciliation_id)
        REFERENCES reconciliations(id) ON DELETE CASCADE,
    CONSTRAINT fk_runlogs_file FOREIGN KEY (uploaded_file_id)
        REFERENCES uploaded_files(id) ON DELETE SET NULL
);
CREATE INDEX idx_runlogs_stage_started ON pipeline_run_logs(stage, started_at DESC);
CREATE INDEX idx_runlogs_reconciliation ON pipeline_run_logs(reconciliation_id);
CREATE INDEX idx_runlogs_failed ON pipeline_run_logs(started_at DESC) WHERE status = 'FAILED';

CREATE TABLE sync_logs (
    id BIGSERIAL PRIMARY KEY,
    organization_id BIGINT NOT NULL,
    data_source_id BIGINT,
    uploaded_file_id BIGINT,
    system VARCHAR(100) NOT NULL,
    direction VARCHAR(20) NOT NULL DEFAULT 'INBOUND',
    status VARCHAR(20) NOT NULL,
    records_processed BIGINT NOT NULL DEFAULT 0,
    error_message TEXT,
    started_at TIMESTAMP NOT NULL DEFAULT NOW(),
    completed_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT ck_synclogs_direction CHECK (direction IN ('INBOUND', 'OUTBOUND')),
    CONSTRAINT ck_synclogs_status CHECK (status IN ('RUNNING', 'SUCCESS', 'FAILED', 'SKIPPED')),
    CONSTRAINT fk_synclogs_organization FOREIGN KEY (organization_id)
        REFERENCES organizations(id) ON DELETE CASCADE,
    CONSTRAINT fk_synclogs_datasource FOREIGN KEY (data_source_id)
        REFERENCES data_sources(id) ON DELETE SET NULL,
    CONSTRAINT fk_synclogs_file FOREIGN KEY (uploaded_file_id)
        REFERENCES uploaded_files(id) ON DELETE SET NULL
);
CREATE INDEX idx_synclogs_organization_started ON sync_logs(organization_id, started_at DESC);
CREATE INDEX idx_synclogs_file ON sync_logs(uploaded_file_id);

ALTER TABLE document_embeddings
    ADD COLUMN model_name VARCHAR(255) NOT NULL DEFAULT 'all-MiniLM-L6-v2',
    ADD COLUMN content_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    ADD CONSTRAINT uk_embeddings_document
        UNIQUE (organization_id, document_type, document_id, model_name);
CREATE INDEX idx_embeddings_content_tsv ON document_embeddings USING gin (content_tsv);
CREATE INDEX idx_embeddings_organization ON document_embeddings(organization_id, document_type);
