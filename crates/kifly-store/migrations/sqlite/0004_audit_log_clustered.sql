-- The audit log as one B-tree ordered by time. Every agent action (cart reads included) adds a row,
-- so this is the most-inserted table: as a rowid table with a TEXT primary key and a time index,
-- each row was three B-tree inserts; clustered on (created_at, id) it is one, appended at the end
-- (ids are time-ordered too). Reads of the log go newest first, which is this order; PostgreSQL
-- keeps its own layout.

CREATE TABLE audit_log_clustered (
    id          TEXT NOT NULL,
    api_key_id  TEXT NOT NULL,
    action      TEXT NOT NULL,
    resource_id TEXT,
    metadata    TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (created_at, id)
) WITHOUT ROWID;

INSERT INTO audit_log_clustered (id, api_key_id, action, resource_id, metadata, created_at)
    SELECT id, api_key_id, action, resource_id, metadata, created_at FROM audit_log;

DROP TABLE audit_log;
ALTER TABLE audit_log_clustered RENAME TO audit_log;
