-- Per-user quotas and per-resource limits. Portable SQL, as 0001: SQLite
-- and PostgreSQL. NULL means the default (users) or no limit (resources).

-- The most live apps (spawning, initializing, running) and stored bytes
-- (the encrypted packages of the user's apps not removed) a user may have.
ALTER TABLE users ADD COLUMN max_live_apps BIGINT;
ALTER TABLE users ADD COLUMN max_stored_bytes BIGINT;

-- The most live apps on a resource, every user's together.
ALTER TABLE resources ADD COLUMN max_live_apps BIGINT;

-- The size of an app's encrypted package (`code.tar`), in bytes. Apps
-- stored before this migration get theirs from their file at the next start.
ALTER TABLE apps ADD COLUMN code_bytes BIGINT;

CREATE INDEX apps_resource_status ON apps (resource, status);
