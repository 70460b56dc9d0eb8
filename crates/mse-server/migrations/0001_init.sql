-- Portable SQL: the same schema on SQLite (embedded default) and PostgreSQL.
-- Times are Unix seconds; ids are UUIDs as text.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    is_admin BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (user_id, name)
);

CREATE TABLE resources (
    name TEXT PRIMARY KEY,
    memory_mb BIGINT NOT NULL,
    cores BIGINT NOT NULL,
    enclave_size TEXT NOT NULL,
    default_hours BIGINT NOT NULL,
    public BIGINT NOT NULL
);

CREATE TABLE grants (
    user_id TEXT NOT NULL REFERENCES users (id),
    resource TEXT NOT NULL REFERENCES resources (name),
    PRIMARY KEY (user_id, resource)
);

CREATE TABLE apps (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    domain TEXT NOT NULL,
    config_domain TEXT NOT NULL,
    resource TEXT NOT NULL REFERENCES resources (name),
    docker TEXT NOT NULL,
    python_application TEXT NOT NULL,
    healthcheck_endpoint TEXT NOT NULL,
    certificate_origin TEXT NOT NULL,
    ssl_certificate TEXT,
    code_sha256 TEXT NOT NULL,
    enclave_size TEXT NOT NULL,
    node_pid BIGINT,
    node_addr TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    created_at BIGINT NOT NULL,
    ready_at BIGINT,
    stopped_at BIGINT,
    onerror_at BIGINT,
    expires_at BIGINT NOT NULL
);

-- Two apps of one name never run at once in a project, whatever the race.
CREATE UNIQUE INDEX apps_live_name ON apps (project_id, name)
    WHERE status IN ('spawning', 'initializing', 'running');
CREATE INDEX apps_project ON apps (project_id, created_at);
CREATE INDEX apps_status ON apps (status, expires_at);
CREATE INDEX apps_name ON apps (project_id, name);

-- The first domain given to a name in a project, kept across redeploys.
CREATE TABLE app_domains (
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    domain TEXT NOT NULL UNIQUE,
    PRIMARY KEY (project_id, name)
);

INSERT INTO resources (name, memory_mb, cores, enclave_size, default_hours, public)
VALUES ('free', 512, 1, '1G', 4, 1);
INSERT INTO resources (name, memory_mb, cores, enclave_size, default_hours, public)
VALUES ('standard', 4096, 2, '4G', 168, 0);
