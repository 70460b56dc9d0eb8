-- Custom (`[ssl]`) domains belong to an account, and a domain leads to one
-- live app. Portable SQL, as 0001: SQLite and PostgreSQL.

-- A custom domain belongs to the user who first deployed an app on it; no
-- other user's app takes it until the operator releases it (the row goes).
-- Names are stored in lowercase.
CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    claimed_at BIGINT NOT NULL
);
CREATE INDEX domains_user ON domains (user_id, name);

-- The custom domains deployed before this migration: each belongs to the
-- user of its first app.
INSERT INTO domains (name, user_id, claimed_at)
SELECT a.domain, p.user_id, a.created_at
FROM apps a JOIN projects p ON p.id = a.project_id
WHERE a.certificate_origin = 'owner' AND NOT EXISTS (
    SELECT 1 FROM apps b
    WHERE b.domain = a.domain AND b.certificate_origin = 'owner'
    AND (b.created_at < a.created_at OR (b.created_at = a.created_at AND b.id < a.id))
);

-- Live apps that shared a domain before: one keeps it (a uuid-domain app
-- before a custom-domain one, then the oldest), the others fail.
UPDATE apps SET status = 'on_error',
    reason = 'its domain leads to another live app',
    node_pid = NULL, node_addr = NULL
WHERE status IN ('spawning', 'initializing', 'running') AND EXISTS (
    SELECT 1 FROM apps b
    WHERE b.domain = apps.domain AND b.id <> apps.id
    AND b.status IN ('spawning', 'initializing', 'running')
    AND (
        (CASE WHEN b.certificate_origin = 'owner' THEN 1 ELSE 0 END)
            < (CASE WHEN apps.certificate_origin = 'owner' THEN 1 ELSE 0 END)
        OR ((CASE WHEN b.certificate_origin = 'owner' THEN 1 ELSE 0 END)
                = (CASE WHEN apps.certificate_origin = 'owner' THEN 1 ELSE 0 END)
            AND (b.created_at < apps.created_at
                OR (b.created_at = apps.created_at AND b.id < apps.id)))
    )
);

-- At most one live app per domain (uuid or custom), whatever the race: the
-- proxy never has two nodes for one name.
CREATE UNIQUE INDEX apps_live_domain ON apps (domain)
    WHERE status IN ('spawning', 'initializing', 'running');
