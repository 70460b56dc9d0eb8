-- Node hosts on other machines (`mse-server --roles node --join`), placed by
-- capacity. Portable SQL, as 0001: SQLite and PostgreSQL.

-- `local`: a node process sharing the API's store; `remote`: a host that
-- joined with a token and talks to the API only.
ALTER TABLE nodes ADD COLUMN kind TEXT NOT NULL DEFAULT 'local';
-- Where the proxy reaches the host's apps (an IP address), remote hosts.
ALTER TABLE nodes ADD COLUMN address TEXT;
-- What apps may take on the node: memory (MB) and cores.
ALTER TABLE nodes ADD COLUMN memory_mb BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN cores BIGINT NOT NULL DEFAULT 0;
-- How long a renewal of the node's lease lasts, seconds.
ALTER TABLE nodes ADD COLUMN lease_secs BIGINT NOT NULL DEFAULT 30;
-- SHA-256 (hex) of a remote host's credential; NULL for local nodes.
ALTER TABLE nodes ADD COLUMN credential_hash TEXT;
CREATE UNIQUE INDEX nodes_credential ON nodes (credential_hash);

-- Join tokens, stored hashed; each may be used until it expires.
CREATE TABLE node_tokens (
    hash TEXT PRIMARY KEY,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- When a remote host took the app (its lease answer carried it); NULL
-- while it has not.
ALTER TABLE apps ADD COLUMN node_taken_at BIGINT;
