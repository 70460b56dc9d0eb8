-- The key service (docs/keys.md): where the node that runs it says it
-- listens, and the measurement its evidence binds. One row, the service's.
CREATE TABLE key_service (
    id TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    node_id TEXT NOT NULL,
    addr TEXT NOT NULL,
    measurement TEXT NOT NULL,
    tee TEXT NOT NULL,
    started_at BIGINT NOT NULL
);
