-- Key-service replicas (docs/keys.md): one row per node that runs one, by
-- node id, with the check value of the root key it holds (none while it
-- waits for a replica to hand it over). The single row of 0013 is written
-- again by its node at its next start.
DELETE FROM key_service;
ALTER TABLE key_service ADD COLUMN root_check TEXT;

-- The platform's one root key, named by its public check value: the first
-- replica to start makes it; every other one gets it from a replica that
-- holds it, once each has attested the other.
CREATE TABLE key_root (
    id TEXT PRIMARY KEY,
    check_value TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
