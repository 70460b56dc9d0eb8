-- Persistent storage (`[storage] persistent = true`, docs/keys.md): the
-- cap an app was deployed with, and the encrypted snapshots of each app
-- name's `$HOME` its nodes wrote back, as content-addressed blobs and a
-- head naming the sealed manifest of the last whole snapshot. The store
-- holds ciphertext only.
ALTER TABLE apps ADD COLUMN storage_bytes BIGINT;

CREATE TABLE storage_heads (
    scope TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    manifest TEXT NOT NULL,
    size BIGINT NOT NULL,
    blobs TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE storage_blobs (
    scope TEXT NOT NULL,
    id TEXT NOT NULL,
    bytes TEXT NOT NULL,
    PRIMARY KEY (scope, id)
);
