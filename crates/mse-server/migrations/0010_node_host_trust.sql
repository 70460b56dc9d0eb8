-- Node hosts are not believed: a join token joins a bounded number of
-- hosts, caps what they may offer and can be revoked; a revoked host's name
-- is barred until an admin allows it again. Portable SQL, as 0001: SQLite
-- and PostgreSQL.

-- How many hosts (names) the token may join; tokens made before this
-- migration join one more.
ALTER TABLE node_tokens ADD COLUMN max_hosts BIGINT NOT NULL DEFAULT 1;
-- The most memory (MB) and cores a host joining with it is granted,
-- whatever it declares; NULL: the platform's default.
ALTER TABLE node_tokens ADD COLUMN max_memory_mb BIGINT;
ALTER TABLE node_tokens ADD COLUMN max_cores BIGINT;
-- An address the admin approved for hosts of this token (a host behind
-- NAT, whose join comes from another address); NULL: the join's source.
ALTER TABLE node_tokens ADD COLUMN advertise TEXT;
-- When an admin revoked it; it joins nothing after.
ALTER TABLE node_tokens ADD COLUMN revoked_at BIGINT;

-- The hosts each token joined: a host that joins again under its name
-- uses no more of its token.
CREATE TABLE node_token_uses (
    token_hash TEXT NOT NULL,
    node TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (token_hash, node)
);

-- Node names an admin revoked: no join under them until an admin allows
-- the name again.
CREATE TABLE node_bars (
    node TEXT PRIMARY KEY,
    barred_at BIGINT NOT NULL
);
