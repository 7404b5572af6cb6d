-- The audit log as a plain table appended in insertion order, replacing the clustered layout of
-- migration 0004. Both are one B-tree insert per row, but they grow differently when the last page is
-- full: a table keyed by an integer that only grows starts a new page and leaves the full one as it
-- is, while SQLite rebalances a B-tree keyed by (created_at, id) across its last pages, rewriting
-- them. So the clustered log wrote more pages per row through the WAL and the checkpoint (measured
-- with migration 0006: about a third fewer page writes per cart read, whose audit rows are most of
-- what a read writes, and ~5 % fewer per cart change than with 0006 alone).
-- Reads of the log go newest first, which is now `seq` descending. PostgreSQL keeps its own layout.

CREATE TABLE audit_log_appended (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL,
    api_key_id  TEXT NOT NULL,
    action      TEXT NOT NULL,
    resource_id TEXT,
    metadata    TEXT,
    created_at  BIGINT NOT NULL
);

INSERT INTO audit_log_appended (id, api_key_id, action, resource_id, metadata, created_at)
    SELECT id, api_key_id, action, resource_id, metadata, created_at FROM audit_log ORDER BY created_at, id;

DROP TABLE audit_log;
ALTER TABLE audit_log_appended RENAME TO audit_log;
