-- The roles in separate processes (`mse-server --roles`), on one store.
-- Portable SQL, as 0001: SQLite and PostgreSQL.

-- The node (its `--node-id`) that claimed an app; NULL while no node has.
-- A node claims a `spawning` app with a conditional UPDATE on NULL, so two
-- nodes never both run it.
ALTER TABLE apps ADD COLUMN node_owner TEXT;

-- When a stop was asked for (the API records it; the node holding the app
-- acts on it). NULL when none was.
ALTER TABLE apps ADD COLUMN stop_requested_at BIGINT;

CREATE INDEX apps_node_owner ON apps (node_owner, status);

-- The node processes: who holds each node id, and when it last said so. A
-- node id whose lease ran out is gone: its live apps are `on_error` ("node
-- lost"), and another process may take the id over.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL
);

-- Apps started before this migration were held by the one local runner,
-- whose node id is `local` by default.
UPDATE apps SET node_owner = 'local'
WHERE status IN ('spawning', 'initializing', 'running');
