-- Rolls back 0012: the audit trail, exception work state and reason codes (their policies and
-- grants go with the tables).
DROP TABLE IF EXISTS exception_reason_codes;
DROP TABLE IF EXISTS exception_work;
DROP TABLE IF EXISTS audit_log;
DROP FUNCTION IF EXISTS audit_log_append_only();
