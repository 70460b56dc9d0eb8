-- The simulation quote keys of node hosts, certified by the platform's
-- simulation CA, each named by the SHA-256 of its SubjectPublicKeyInfo
-- (DER, hex); `revoked_at` once the operator revoked the node's keys.
CREATE TABLE quote_keys (
    sha256 TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX quote_keys_node ON quote_keys (node);

-- The memory and CPU limits each app's node applies, as it reports them
-- when it starts (`memory 512 MB, 1 core (cgroup v1)`, or `UNLIMITED:
-- why`). NULL until the node said.
ALTER TABLE apps ADD COLUMN limits TEXT;
