-- Rolls back 0001: drops the documented schema. Extensions stay (other databases objects may use them).
DROP TABLE IF EXISTS document_embeddings, chat_messages, chat_sessions, reconciliation_exceptions,
    reconciliations, matching_rules, field_mappings, rule_sets, uploaded_files, data_sources,
    users, organizations CASCADE;
DROP FUNCTION IF EXISTS recon_set_updated_at();
