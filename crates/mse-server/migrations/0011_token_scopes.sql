-- Tokens have a scope and may expire; an administrator may disable a user.
-- Portable SQL, as 0001: SQLite and PostgreSQL.

-- What a token may do: `read` (GET requests), `deploy` (what its user may
-- do but administer) or `admin` (everything). The tokens made before keep
-- the power they had: an administrator's are `admin`.
ALTER TABLE tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'deploy';
UPDATE tokens SET scope = 'admin' WHERE user_id IN (SELECT id FROM users WHERE is_admin <> 0);

-- When a token stops working, Unix seconds; NULL: when it is revoked.
ALTER TABLE tokens ADD COLUMN expires_at BIGINT;

-- When an administrator disabled the user (its tokens are refused); NULL
-- while it is enabled.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
