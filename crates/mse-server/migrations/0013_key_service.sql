-- The key service (docs/keys.md): where the node that runs it says it
-- listens, the measurement its evidence binds, and the hash of the
-- credential it calls the API with (a new one at each start). One row.
CREATE TABLE key_service (
    id TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    node_id TEXT NOT NULL,
    addr TEXT NOT NULL,
    measurement TEXT NOT NULL,
    tee TEXT NOT NULL,
    credential_hash TEXT,
    started_at BIGINT NOT NULL
);

-- What the key service keeps, sealed under its root key: the platform
-- stores bytes it cannot open.
CREATE TABLE key_records (
    name TEXT PRIMARY KEY,
    sealed TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Single-use tickets an owner hands the key service with an app's keys,
-- stored hashed.
CREATE TABLE key_tickets (
    hash TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Whether the app's keys are kept by the key service (its owner asked).
ALTER TABLE apps ADD COLUMN keep_running INTEGER NOT NULL DEFAULT 0;

-- What the platform last did for an app the key service keeps (restarted
-- it on another node, released its keys or was refused them), for its
-- owner's `mse status`.
ALTER TABLE apps ADD COLUMN rescheduled TEXT;
