//! The control plane's store: SQLite by default, PostgreSQL for scale, one
//! portable schema (`migrations/`) reached through sqlx's `Any` driver.
//! Queries number their parameters `$1, $2, …` in order, which both engines
//! accept.

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub mod nodes;

pub use nodes::{NoRoom, NodeKind, NodeRow, NodeUsage, Placement};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A new app's custom domain belongs to another user.
    #[error("domain {0} belongs to another account")]
    DomainTaken(String),
    /// A new app would go over a quota.
    #[error("{0}")]
    Quota(QuotaExceeded),
    /// No node has room for a new app.
    #[error("{0}")]
    NoRoom(NoRoom),
    /// A new app's user is disabled.
    #[error("user disabled: an administrator disabled this user; ask one to enable it")]
    UserDisabled,
}

/// The live apps a user may have unless the operator sets otherwise.
pub const DEFAULT_MAX_LIVE_APPS: i64 = 10;
/// The bytes of encrypted code a user's apps may keep unless the operator
/// sets otherwise: 2 GiB.
pub const DEFAULT_MAX_STORED_BYTES: i64 = 2 << 30;

/// A user's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Live apps (`spawning`, `initializing`, `running`) at once.
    pub max_live_apps: i64,
    /// Bytes of encrypted code kept for the apps not removed.
    pub max_stored_bytes: i64,
}

/// What a user uses of its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Its live apps.
    pub live_apps: i64,
    /// The bytes of encrypted code of its apps not removed.
    pub stored_bytes: i64,
}

/// Which limit a new app would go over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaKind {
    /// The user's live apps.
    LiveApps,
    /// The user's stored bytes.
    StoredBytes,
    /// The live apps of every user on this resource.
    ResourceLiveApps(String),
}

/// A refused app: the limit, what is used of it, and what the app adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// The limit.
    pub kind: QuotaKind,
    /// Its value.
    pub limit: i64,
    /// What is used of it now.
    pub used: i64,
    /// What the app would add (1 app, or its bytes).
    pub adding: i64,
}

/// Bytes in binary units, for people: `1.5 GiB`.
fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

impl std::fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let QuotaExceeded {
            limit,
            used,
            adding,
            ..
        } = self;
        match &self.kind {
            QuotaKind::LiveApps => write!(
                f,
                "quota of live apps reached: you have {used} live apps (spawning, initializing or \
                 running) of at most {limit}; stop one (`mse stop`) before deploying another, or \
                 ask the operator to raise your quota"
            ),
            QuotaKind::StoredBytes => write!(
                f,
                "quota of stored bytes reached: your apps keep {used} bytes ({}) of encrypted code \
                 of at most {limit} ({}), and this one adds {adding} ({}); remove apps you no \
                 longer need (`mse stop`, then `mse remove`) to free space, or ask the operator \
                 to raise your quota",
                human_bytes(*used),
                human_bytes(*limit),
                human_bytes(*adding)
            ),
            QuotaKind::ResourceLiveApps(resource) => write!(
                f,
                "quota of resource `{resource}` reached: it runs at most {limit} live apps of \
                 all users together and {used} are live; deploy again once some stop, use \
                 another resource, or ask the operator"
            ),
        }
    }
}

/// True when `e` is a unique-constraint violation.
pub fn is_conflict(e: &StoreError) -> bool {
    match e {
        StoreError::Db(sqlx::Error::Database(db)) => db.is_unique_violation(),
        _ => false,
    }
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Its id.
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// Whether it administers the platform.
    pub is_admin: bool,
    /// Creation, Unix seconds.
    pub created_at: i64,
    /// When an administrator disabled it, Unix seconds; `None` while
    /// enabled.
    pub disabled_at: Option<i64>,
}

/// An API token's public side (the secret is shown once, stored hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Its id.
    pub id: String,
    /// The name its owner gave it.
    pub name: String,
    /// Creation, Unix seconds.
    pub created_at: i64,
    /// What it may do.
    pub scope: Scope,
    /// When it stops working, Unix seconds; `None`: when revoked.
    pub expires_at: Option<i64>,
}

/// A token's scope: the API's, stored by its name.
pub use mse_api::account::Scope;

/// A project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// Its id.
    pub id: String,
    /// Its name, unique for its owner.
    pub name: String,
    /// Creation, Unix seconds.
    pub created_at: i64,
}

/// A resource (plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Its name.
    pub name: String,
    /// Memory, MB.
    pub memory_mb: i64,
    /// CPU cores.
    pub cores: i64,
    /// Enclave size, as the fingerprint names it.
    pub enclave_size: String,
    /// Lifetime of an app without an expiry of its own, hours.
    pub default_hours: i64,
    /// Open to every user (`free`), or granted per user.
    pub public: bool,
    /// The most live apps on it, every user's together; `None`: no limit.
    pub max_live_apps: Option<i64>,
}

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

fn user(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        created_at: row.try_get("created_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}

const USER_COLUMNS: &str = "id, name, is_admin, created_at, disabled_at";

fn token(row: &AnyRow) -> Result<Token, sqlx::Error> {
    let scope: String = row.try_get("scope")?;
    Ok(Token {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        scope: Scope::parse(&scope).map_err(|e| sqlx::Error::Decode(e.into()))?,
        expires_at: row.try_get("expires_at")?,
    })
}

const TOKEN_COLUMNS: &str = "id, name, created_at, scope, expires_at";

fn project(row: &AnyRow) -> Result<Project, sqlx::Error> {
    Ok(Project {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn resource(row: &AnyRow) -> Result<Resource, sqlx::Error> {
    Ok(Resource {
        name: row.try_get("name")?,
        memory_mb: row.try_get("memory_mb")?,
        cores: row.try_get("cores")?,
        enclave_size: row.try_get("enclave_size")?,
        default_hours: row.try_get("default_hours")?,
        public: row.try_get::<i64, _>("public")? != 0,
        max_live_apps: row.try_get("max_live_apps")?,
    })
}

const RESOURCE_COLUMNS: &str =
    "name, memory_mb, cores, enclave_size, default_hours, public, max_live_apps";

/// A new random id (UUID v4 form).
pub fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let h = hex::encode(bytes);
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        (u8::from_str_radix(&h[16..17], 16).unwrap_or(0) & 0x3) | 0x8,
        &h[17..20],
        &h[20..32]
    )
}

impl Store {
    /// Connects to `url` (`sqlite://FILE?mode=rwc` or `postgres://…`) and
    /// brings the schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(if url.starts_with("sqlite:") { 1 } else { 16 })
            .connect(url)
            .await?;
        if url.starts_with("sqlite:") {
            sqlx::query("PRAGMA foreign_keys = ON")
                .execute(&pool)
                .await?;
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    /// The connection pool, for the modules that own tables of their own.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the store answers a trivial query (`GET /health`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection: later queries fail at once.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Creates a user with its `default` project.
    pub async fn create_user(
        &self,
        name: &str,
        is_admin: bool,
        now: i64,
    ) -> Result<User, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id = new_id();
        sqlx::query("INSERT INTO users (id, name, is_admin, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&id)
            .bind(name)
            .bind(i64::from(is_admin))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO projects (id, user_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(new_id())
            .bind(&id)
            .bind("default")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(User {
            id,
            name: name.to_string(),
            is_admin,
            created_at: now,
            disabled_at: None,
        })
    }

    /// How many users exist.
    pub async fn user_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Stores the hash of a new token of `user_id`, of this scope, working
    /// until `expires_at` (`None`: until revoked).
    pub async fn add_token(
        &self,
        user_id: &str,
        name: &str,
        hash: &str,
        scope: Scope,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<Token, StoreError> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO tokens (id, user_id, name, hash, created_at, scope, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(name)
        .bind(hash)
        .bind(now)
        .bind(scope.as_str())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(Token {
            id,
            name: name.to_string(),
            created_at: now,
            scope,
            expires_at,
        })
    }

    /// The unrevoked token with this hash and the user holding it (whether
    /// it expired, or its user is disabled, is the caller's to check).
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<(User, Token)>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.is_admin, u.created_at, u.disabled_at, t.id AS token_id, \
             t.name AS token_name, t.created_at AS token_created_at, t.scope, t.expires_at \
             FROM tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.hash = $1 AND t.revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let scope: String = row.try_get("scope")?;
        let token = Token {
            id: row.try_get("token_id")?,
            name: row.try_get("token_name")?,
            created_at: row.try_get("token_created_at")?,
            scope: Scope::parse(&scope).map_err(|e| sqlx::Error::Decode(e.into()))?,
            expires_at: row.try_get("expires_at")?,
        };
        Ok(Some((user(&row)?, token)))
    }

    /// The user holding the working token with this hash: unrevoked,
    /// unexpired at `now`, of an enabled user.
    pub async fn user_by_token_hash(
        &self,
        hash: &str,
        now: i64,
    ) -> Result<Option<User>, StoreError> {
        Ok(self.token_by_hash(hash).await?.and_then(|(user, token)| {
            (user.disabled_at.is_none() && token.expires_at.is_none_or(|at| at > now))
                .then_some(user)
        }))
    }

    /// The working tokens of a user (unrevoked, unexpired at `now`), oldest
    /// first.
    pub async fn tokens(&self, user_id: &str, now: i64) -> Result<Vec<Token>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at, id"
        ))
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(token).collect::<Result<_, _>>()?)
    }

    /// Revokes an unrevoked token: of `user_id` only, or of anyone when
    /// `None` (an administrator); false when there is no such token.
    pub async fn revoke_token(
        &self,
        user_id: Option<&str>,
        id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let revoke = "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";
        let done = match user_id {
            Some(user_id) => {
                sqlx::query(&format!("{revoke} AND user_id = $3"))
                    .bind(now)
                    .bind(id)
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(revoke)
                    .bind(now)
                    .bind(id)
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(done.rows_affected() == 1)
    }

    /// Disables a user (`Some(now)`) or enables it (`None`); false when
    /// there is no such user.
    pub async fn set_user_disabled(
        &self,
        id: &str,
        disabled_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(disabled_at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Creates a project of `user_id`.
    pub async fn create_project(
        &self,
        user_id: &str,
        name: &str,
        now: i64,
    ) -> Result<Project, StoreError> {
        let id = new_id();
        sqlx::query("INSERT INTO projects (id, user_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&id)
            .bind(user_id)
            .bind(name)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(Project {
            id,
            name: name.to_string(),
            created_at: now,
        })
    }

    /// The projects of `user_id`.
    pub async fn projects(&self, user_id: &str) -> Result<Vec<Project>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, created_at FROM projects WHERE user_id = $1 ORDER BY name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(project).collect::<Result<_, _>>()?)
    }

    /// A project of `user_id` by name.
    pub async fn project(&self, user_id: &str, name: &str) -> Result<Option<Project>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, created_at FROM projects WHERE user_id = $1 AND name = $2",
        )
        .bind(user_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(project).transpose()?)
    }

    /// The resources `user_id` may use: public ones and those granted.
    pub async fn resources(&self, user_id: &str) -> Result<Vec<Resource>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE public = 1 \
             OR name IN (SELECT resource FROM grants WHERE user_id = $1) ORDER BY name"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(resource).collect::<Result<_, _>>()?)
    }

    /// A resource `user_id` may use, by name.
    pub async fn resource(
        &self,
        user_id: &str,
        name: &str,
    ) -> Result<Option<Resource>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE name = $1 AND (public = 1 \
             OR name IN (SELECT resource FROM grants WHERE user_id = $2))"
        ))
        .bind(name)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(resource).transpose()?)
    }

    /// Creates a resource (granted per user unless `public`).
    pub async fn create_resource(&self, r: &Resource) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO resources ({RESOURCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&r.name)
        .bind(r.memory_mb)
        .bind(r.cores)
        .bind(&r.enclave_size)
        .bind(r.default_hours)
        .bind(i64::from(r.public))
        .bind(r.max_live_apps)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether a resource of that name exists at all.
    pub async fn resource_exists(&self, name: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT name FROM resources WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Grants a resource to a user (idempotent).
    pub async fn grant(&self, user_id: &str, resource: &str) -> Result<(), StoreError> {
        let exists = sqlx::query("SELECT user_id FROM grants WHERE user_id = $1 AND resource = $2")
            .bind(user_id)
            .bind(resource)
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        if !exists {
            sqlx::query("INSERT INTO grants (user_id, resource) VALUES ($1, $2)")
                .bind(user_id)
                .bind(resource)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// A user by id.
    pub async fn user(&self, id: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }
}

/// What a node reports of its app, each in a column of the app's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// How it confines the app (`sandbox`).
    Sandbox,
    /// The limits it applies (`limits`).
    Limits,
    /// The certificate it serves, JSON (`certificate`).
    Certificate,
    /// The fingerprint its quote carries, hex (`fingerprint`).
    Fingerprint,
}

/// An app's state: the API's, stored by its name.
pub use mse_api::apps::AppStatus as Status;

/// Who provides an app's certificate: the API's, stored by its name.
pub use mse_api::apps::CertificateOrigin;

/// The states an app may move to `to` from.
fn sources(to: Status) -> &'static [&'static str] {
    match to {
        Status::Spawning => &[],
        Status::Initializing => &["spawning"],
        Status::Running => &["initializing"],
        Status::OnError | Status::Stopped => &["spawning", "initializing", "running"],
    }
}

/// Whether an app may move from state `from` to state `to` (spawning →
/// initializing → running → stopped or on_error; nothing leaves a terminal
/// state).
pub fn may_move(from: Status, to: Status) -> bool {
    sources(to).contains(&from.as_str())
}

/// The column stamped when an app reaches state `to`.
fn stamp(to: Status) -> Option<&'static str> {
    match to {
        Status::Running => Some("ready_at"),
        Status::Stopped => Some("stopped_at"),
        Status::OnError => Some("onerror_at"),
        Status::Spawning | Status::Initializing => None,
    }
}

/// What an app is, as deployed: the same before and after it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// Its name.
    pub name: String,
    /// Its resource.
    pub resource: String,
    /// Its runtime image.
    pub docker: String,
    /// `module:variable`.
    pub python_application: String,
    /// Its health check path.
    pub healthcheck_endpoint: String,
    /// Who provides its certificate (the `certificate_origin` column).
    pub certificate_origin: CertificateOrigin,
    /// The owner's certificate chain (PEM), owner mode.
    pub ssl_certificate: Option<String>,
    /// SHA-256 (hex) of the encrypted code.
    pub code_sha256: String,
    /// The size of the encrypted code, bytes: what it counts in its user's
    /// stored bytes.
    pub code_bytes: i64,
    /// Enclave size (from the resource).
    pub enclave_size: String,
}

/// An app, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Its uuid.
    pub id: String,
    /// Its project's name.
    pub project: String,
    /// Where users reach it.
    pub domain_name: String,
    /// Where its configuration server is reached.
    pub config_domain_name: String,
    /// What was deployed.
    pub spec: AppSpec,
    /// Its state.
    pub status: Status,
    /// Why it failed or stopped.
    pub reason: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// When it became `running`.
    pub ready_at: Option<i64>,
    /// When it stopped.
    pub stopped_at: Option<i64>,
    /// When it failed.
    pub onerror_at: Option<i64>,
    /// When it expires.
    pub expires_at: i64,
    /// How its node confines it (`UNSANDBOXED: …` where it does not), once
    /// the node said.
    pub sandbox: Option<String>,
    /// The memory and CPU limits its node applies (`UNLIMITED: …` where it
    /// applies none), once the node said.
    pub limits: Option<String>,
    /// The certificate its node serves it with, as the node last reported
    /// it (JSON of `mse_api::event::ServedCertificate`), for ACME and owner
    /// apps.
    pub certificate: Option<String>,
    /// The fingerprint (hex) its node reported when it started.
    pub fingerprint: Option<String>,
    /// Its node's address, while it has one.
    pub node_addr: Option<String>,
    /// Its node's process, while it has one.
    pub node_pid: Option<i64>,
    /// The node (its id) it was placed on; `None` until one has it.
    pub node_owner: Option<String>,
    /// When a stop was asked for, if one was.
    pub stop_requested_at: Option<i64>,
}

const APP_SELECT: &str = "SELECT a.id, p.name AS project, a.name, a.domain, a.config_domain, \
    a.resource, a.docker, a.python_application, a.healthcheck_endpoint, a.certificate_origin, \
    a.ssl_certificate, a.code_sha256, a.code_bytes, a.enclave_size, a.status, a.reason, a.created_at, \
    a.ready_at, a.stopped_at, a.onerror_at, a.expires_at, a.node_addr, a.node_pid, \
    a.node_owner, a.stop_requested_at, a.sandbox, a.limits, a.certificate, a.fingerprint \
    FROM apps a JOIN projects p ON p.id = a.project_id";

/// The states in which an app has, or is getting, a node.
const LIVE: &str = "('spawning', 'initializing', 'running')";

/// The `certificate_origin` column of an app's row, or a decode error
/// naming the app and the value.
fn certificate_origin(row: &AnyRow) -> Result<CertificateOrigin, sqlx::Error> {
    let text: String = row.try_get("certificate_origin")?;
    CertificateOrigin::parse(&text).map_err(|e| {
        let id = row.try_get::<String, _>("id").unwrap_or_default();
        sqlx::Error::Decode(format!("app {id}: column certificate_origin: {e}").into())
    })
}

fn app(row: &AnyRow) -> Result<App, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(App {
        id: row.try_get("id")?,
        project: row.try_get("project")?,
        domain_name: row.try_get("domain")?,
        config_domain_name: row.try_get("config_domain")?,
        spec: AppSpec {
            name: row.try_get("name")?,
            resource: row.try_get("resource")?,
            docker: row.try_get("docker")?,
            python_application: row.try_get("python_application")?,
            healthcheck_endpoint: row.try_get("healthcheck_endpoint")?,
            certificate_origin: certificate_origin(row)?,
            ssl_certificate: row.try_get("ssl_certificate")?,
            code_sha256: row.try_get("code_sha256")?,
            code_bytes: row.try_get::<Option<i64>, _>("code_bytes")?.unwrap_or(0),
            enclave_size: row.try_get("enclave_size")?,
        },
        status: Status::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown status `{status}`").into()))?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
        ready_at: row.try_get("ready_at")?,
        stopped_at: row.try_get("stopped_at")?,
        onerror_at: row.try_get("onerror_at")?,
        expires_at: row.try_get("expires_at")?,
        sandbox: row.try_get("sandbox")?,
        limits: row.try_get("limits")?,
        certificate: row.try_get("certificate")?,
        fingerprint: row.try_get("fingerprint")?,
        node_addr: row.try_get("node_addr")?,
        node_pid: row.try_get("node_pid")?,
        node_owner: row.try_get("node_owner")?,
        stop_requested_at: row.try_get("stop_requested_at")?,
    })
}

/// The live apps of user `$1`.
const USER_LIVE_APPS: &str = "SELECT COUNT(*) FROM apps a JOIN projects p ON p.id = a.project_id \
    WHERE p.user_id = $1 AND a.status IN ('spawning', 'initializing', 'running')";

/// The stored bytes of user `$1`: every app not removed, whatever its state.
const USER_STORED_BYTES: &str = "SELECT CAST(COALESCE(SUM(a.code_bytes), 0) AS BIGINT) \
    FROM apps a JOIN projects p ON p.id = a.project_id WHERE p.user_id = $1";

/// A user's quota from its `max_live_apps` and `max_stored_bytes` columns
/// (NULL: the default).
fn quota(row: &AnyRow) -> Result<Quota, sqlx::Error> {
    Ok(Quota {
        max_live_apps: row
            .try_get::<Option<i64>, _>("max_live_apps")?
            .unwrap_or(DEFAULT_MAX_LIVE_APPS),
        max_stored_bytes: row
            .try_get::<Option<i64>, _>("max_stored_bytes")?
            .unwrap_or(DEFAULT_MAX_STORED_BYTES),
    })
}

fn usage(row: &AnyRow) -> Result<Usage, sqlx::Error> {
    Ok(Usage {
        live_apps: row.try_get("live_apps")?,
        stored_bytes: row.try_get("stored_bytes")?,
    })
}

/// What a new app is made of.
#[derive(Debug, Clone)]
pub struct NewApp {
    /// Its uuid.
    pub id: String,
    /// Its project.
    pub project_id: String,
    /// The domain to give it when its name has none yet in the project.
    pub domain: String,
    /// Its configuration domain.
    pub config_domain: String,
    /// What is deployed.
    pub spec: AppSpec,
    /// Creation, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// Filters of an app listing.
#[derive(Debug, Clone, Default)]
pub struct AppFilter {
    /// Project name.
    pub project: Option<String>,
    /// App name.
    pub name: Option<String>,
    /// Status.
    pub status: Option<Status>,
    /// At most this many, newest first.
    pub limit: Option<u32>,
    /// Skip this many first (paging: `offset` = the count already read).
    pub offset: Option<u32>,
}

impl Store {
    /// Inserts a `spawning` app, for any node to claim. A uuid-domain app
    /// keeps the first domain its name got in the project. Fails with a
    /// conflict when an app of that name is live in the project.
    pub async fn insert_app(&self, new: &NewApp) -> Result<App, StoreError> {
        self.insert_placed_app(new, &Placement::Unclaimed).await
    }

    /// [`Store::insert_app`], placed at once on a node as `placement` says
    /// ([`StoreError::NoRoom`] when none has room for it).
    ///
    /// In one transaction, so that concurrent deploys cannot overshoot:
    /// the user's quota and the resource's limit are checked against what
    /// is stored ([`StoreError::Quota`]), a custom domain is claimed for the
    /// user or refused as another's ([`StoreError::DomainTaken`]), and the
    /// app is inserted (a conflict when its name, or its domain, has a live
    /// app).
    pub async fn insert_placed_app(
        &self,
        new: &NewApp,
        placement: &Placement,
    ) -> Result<App, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Writes come first: on SQLite, a transaction that has read cannot
        // wait for another process's write and fails at once. These two
        // change nothing but lock the user's row, then the resource's (on
        // PostgreSQL, until the commit; on SQLite, the whole store), so the
        // deploys of one user, or on one resource, count one after another.
        let row = sqlx::query(
            "UPDATE users SET max_live_apps = max_live_apps \
             WHERE id = (SELECT user_id FROM projects WHERE id = $1) \
             RETURNING id, max_live_apps, max_stored_bytes, disabled_at",
        )
        .bind(&new.project_id)
        .fetch_one(&mut *tx)
        .await?;
        // Disabling a user writes this row: a deploy counted after it is
        // refused, one counted before is live when its apps are stopped.
        if row.try_get::<Option<i64>, _>("disabled_at")?.is_some() {
            return Err(StoreError::UserDisabled);
        }
        let user_id: String = row.try_get("id")?;
        let quota = quota(&row)?;
        let resource_limit: Option<i64> = sqlx::query(
            "UPDATE resources SET max_live_apps = max_live_apps WHERE name = $1 \
             RETURNING max_live_apps",
        )
        .bind(&new.spec.resource)
        .fetch_one(&mut *tx)
        .await?
        .try_get("max_live_apps")?;
        let row = sqlx::query(&format!(
            "SELECT ({USER_LIVE_APPS}) AS live_apps, ({USER_STORED_BYTES}) AS stored_bytes, \
             (SELECT COUNT(*) FROM apps WHERE resource = $2 AND status IN {LIVE}) AS on_resource"
        ))
        .bind(&user_id)
        .bind(&new.spec.resource)
        .fetch_one(&mut *tx)
        .await?;
        let usage = usage(&row)?;
        let on_resource: i64 = row.try_get("on_resource")?;
        let refused = if usage.live_apps >= quota.max_live_apps {
            Some((QuotaKind::LiveApps, quota.max_live_apps, usage.live_apps, 1))
        } else if usage.stored_bytes.saturating_add(new.spec.code_bytes) > quota.max_stored_bytes {
            Some((
                QuotaKind::StoredBytes,
                quota.max_stored_bytes,
                usage.stored_bytes,
                new.spec.code_bytes,
            ))
        } else {
            resource_limit
                .filter(|limit| on_resource >= *limit)
                .map(|limit| {
                    (
                        QuotaKind::ResourceLiveApps(new.spec.resource.clone()),
                        limit,
                        on_resource,
                        1,
                    )
                })
        };
        if let Some((kind, limit, used, adding)) = refused {
            return Err(StoreError::Quota(QuotaExceeded {
                kind,
                limit,
                used,
                adding,
            }));
        }
        let node_owner = match placement {
            Placement::Fit {
                memory_mb,
                cores,
                now,
            } => Some(nodes::place(&mut tx, *memory_mb, *cores, *now).await?),
            Placement::Unclaimed => None,
        };
        let mut domain = new.domain.to_ascii_lowercase();
        if new.spec.certificate_origin == CertificateOrigin::Owner {
            // The first user to deploy a custom domain keeps it; of two
            // users claiming it at once, the second waits for the first's
            // commit and then finds the name taken.
            sqlx::query(
                "INSERT INTO domains (name, user_id, claimed_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(&domain)
            .bind(&user_id)
            .bind(new.created_at)
            .execute(&mut *tx)
            .await?;
            let owner: String = sqlx::query("SELECT user_id FROM domains WHERE name = $1")
                .bind(&domain)
                .fetch_one(&mut *tx)
                .await?
                .try_get("user_id")?;
            if owner != user_id {
                return Err(StoreError::DomainTaken(domain));
            }
        } else {
            sqlx::query(
                "INSERT INTO app_domains (project_id, name, domain) VALUES ($1, $2, $3) \
                 ON CONFLICT (project_id, name) DO NOTHING",
            )
            .bind(&new.project_id)
            .bind(&new.spec.name)
            .bind(&domain)
            .execute(&mut *tx)
            .await?;
            domain =
                sqlx::query("SELECT domain FROM app_domains WHERE project_id = $1 AND name = $2")
                    .bind(&new.project_id)
                    .bind(&new.spec.name)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("domain")?;
        }
        sqlx::query(
            "INSERT INTO apps (id, project_id, name, domain, config_domain, resource, docker, \
             python_application, healthcheck_endpoint, certificate_origin, ssl_certificate, \
             code_sha256, code_bytes, enclave_size, status, created_at, expires_at, node_owner) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18)",
        )
        .bind(&new.id)
        .bind(&new.project_id)
        .bind(&new.spec.name)
        .bind(&domain)
        .bind(&new.config_domain)
        .bind(&new.spec.resource)
        .bind(&new.spec.docker)
        .bind(&new.spec.python_application)
        .bind(&new.spec.healthcheck_endpoint)
        .bind(new.spec.certificate_origin.as_str())
        .bind(new.spec.ssl_certificate.clone())
        .bind(&new.spec.code_sha256)
        .bind(new.spec.code_bytes)
        .bind(&new.spec.enclave_size)
        .bind(Status::Spawning.as_str())
        .bind(new.created_at)
        .bind(new.expires_at)
        .bind(node_owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.app(&new.id)
            .await?
            .ok_or_else(|| StoreError::Db(sqlx::Error::RowNotFound))
    }

    /// An app by uuid, whoever owns it (for the platform itself).
    pub async fn app(&self, id: &str) -> Result<Option<App>, StoreError> {
        let row = sqlx::query(&format!("{APP_SELECT} WHERE a.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(app).transpose()?)
    }

    /// An app of `user_id` by uuid.
    pub async fn user_app(&self, user_id: &str, id: &str) -> Result<Option<App>, StoreError> {
        let row = sqlx::query(&format!("{APP_SELECT} WHERE a.id = $1 AND p.user_id = $2"))
            .bind(id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(app).transpose()?)
    }

    /// The apps of `user_id`, newest first.
    pub async fn user_apps(
        &self,
        user_id: &str,
        filter: &AppFilter,
    ) -> Result<Vec<App>, StoreError> {
        let mut sql = format!("{APP_SELECT} WHERE p.user_id = $1");
        let mut binds = vec![user_id.to_string()];
        if let Some(project) = &filter.project {
            binds.push(project.clone());
            sql.push_str(&format!(" AND p.name = ${}", binds.len()));
        }
        if let Some(name) = &filter.name {
            binds.push(name.clone());
            sql.push_str(&format!(" AND a.name = ${}", binds.len()));
        }
        if let Some(status) = filter.status {
            binds.push(status.as_str().to_string());
            sql.push_str(&format!(" AND a.status = ${}", binds.len()));
        }
        // A total order (ids are unique), so pages neither overlap nor skip.
        sql.push_str(" ORDER BY a.created_at DESC, a.id");
        // Numbers, not text: written into the query itself. SQLite takes an
        // OFFSET only after a LIMIT.
        match (filter.limit, filter.offset) {
            (Some(limit), None) => sql.push_str(&format!(" LIMIT {limit}")),
            (limit, Some(offset)) => sql.push_str(&format!(
                " LIMIT {} OFFSET {offset}",
                limit.map_or(i64::MAX, i64::from)
            )),
            (None, None) => {}
        }
        let mut query = sqlx::query(&sql);
        for bind in &binds {
            query = query.bind(bind);
        }
        let rows = query.fetch_all(&self.pool).await?;
        Ok(rows.iter().map(app).collect::<Result<_, _>>()?)
    }

    /// Apps not in a terminal state.
    pub async fn live_apps(&self) -> Result<Vec<App>, StoreError> {
        let rows = sqlx::query(&format!("{APP_SELECT} WHERE a.status IN {LIVE}"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(app).collect::<Result<_, _>>()?)
    }

    /// Moves an app to `to` when the transition is allowed; false otherwise
    /// (e.g. it is stopped already: there is no way back).
    pub async fn transition(
        &self,
        id: &str,
        to: Status,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let sources = sources(to);
        if sources.is_empty() {
            return Ok(false);
        }
        let list = sources
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ");
        // Parameters appear in the text in their numeric order (SQLite
        // numbers `$N` parameters by first appearance).
        let stamped = stamp(to);
        let (set_stamp, id_param) = match stamped {
            Some(column) => (format!(", {column} = $3"), "$4"),
            None => (String::new(), "$3"),
        };
        let clear_node = if to.is_terminal() {
            ", node_pid = NULL, node_addr = NULL"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE apps SET status = $1, reason = COALESCE($2, reason){set_stamp}{clear_node} \
             WHERE id = {id_param} AND status IN ({list})"
        );
        let mut query = sqlx::query(&sql).bind(to.as_str()).bind(reason);
        if stamped.is_some() {
            query = query.bind(now);
        }
        let query = query.bind(id);
        Ok(query.execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Records an app's node: its process, and its address once it listens.
    pub async fn set_node(&self, id: &str, pid: i64, addr: Option<&str>) -> Result<(), StoreError> {
        sqlx::query("UPDATE apps SET node_pid = $1, node_addr = $2 WHERE id = $3")
            .bind(pid)
            .bind(addr)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records what an app's node reported of it.
    pub async fn set_reported(
        &self,
        id: &str,
        what: Reported,
        value: &str,
    ) -> Result<(), StoreError> {
        let sql = match what {
            Reported::Sandbox => "UPDATE apps SET sandbox = $1 WHERE id = $2",
            Reported::Limits => "UPDATE apps SET limits = $1 WHERE id = $2",
            Reported::Certificate => "UPDATE apps SET certificate = $1 WHERE id = $2",
            Reported::Fingerprint => "UPDATE apps SET fingerprint = $1 WHERE id = $2",
        };
        sqlx::query(sql)
            .bind(value)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every user, by name, with the resources granted to each.
    pub async fn users_with_grants(&self) -> Result<Vec<(User, Vec<String>)>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        let grants = sqlx::query("SELECT user_id, resource FROM grants ORDER BY resource")
            .fetch_all(&self.pool)
            .await?;
        let mut by_user: std::collections::HashMap<String, Vec<String>> = Default::default();
        for row in &grants {
            by_user
                .entry(row.try_get("user_id")?)
                .or_default()
                .push(row.try_get("resource")?);
        }
        rows.iter()
            .map(|row| {
                let user = user(row)?;
                let grants = by_user.remove(&user.id).unwrap_or_default();
                Ok((user, grants))
            })
            .collect()
    }

    /// Deletes a stopped or failed app; false when it is live or missing.
    pub async fn delete_app(&self, id: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM apps WHERE id = $1 AND status IN ('stopped', 'on_error')")
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Who holds a node id: the node process that runs the apps claimed under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHolder {
    /// The node id (`--node-id`).
    pub id: String,
    /// The host the process runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: i64,
    /// When it took the id, Unix seconds.
    pub started_at: i64,
    /// When it last renewed its lease, Unix seconds.
    pub seen_at: i64,
}

/// What the proxy needs of an app its node serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedApp {
    /// Its uuid.
    pub id: String,
    /// Where users reach it.
    pub domain: String,
    /// Where its configuration server is reached.
    pub config_domain: String,
    /// Its node's address.
    pub node_addr: String,
    /// `running` (else `initializing`).
    pub running: bool,
    /// `--untrusted-ssl`: the proxy terminates TLS once it runs.
    pub operator_tls: bool,
    /// Its node is a remote host.
    pub remote: bool,
}

/// The roles in separate processes: nodes claim apps, the API records stop
/// requests, node ids are leased.
impl Store {
    /// Claims a `spawning` app for node `node_id`. Of any number of
    /// concurrent claimants, exactly one gets true (a conditional UPDATE);
    /// an app whose stop was asked for is not claimed.
    pub async fn claim_app(&self, id: &str, node_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE apps SET node_owner = $1 WHERE id = $2 AND node_owner IS NULL \
             AND status = 'spawning' AND stop_requested_at IS NULL",
        )
        .bind(node_id)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `spawning` apps no node has claimed and nobody asked to stop, oldest
    /// first, at most `limit`.
    pub async fn unclaimed_apps(&self, limit: u32) -> Result<Vec<App>, StoreError> {
        let rows = sqlx::query(&format!(
            "{APP_SELECT} WHERE a.status = 'spawning' AND a.node_owner IS NULL \
             AND a.stop_requested_at IS NULL ORDER BY a.created_at, a.id LIMIT {limit}"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(app).collect::<Result<_, _>>()?)
    }

    /// The live apps node `node_id` holds.
    pub async fn node_apps(&self, node_id: &str) -> Result<Vec<App>, StoreError> {
        let rows = sqlx::query(&format!(
            "{APP_SELECT} WHERE a.node_owner = $1 AND a.status IN {LIVE}"
        ))
        .bind(node_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(app).collect::<Result<_, _>>()?)
    }

    /// Stops a `spawning` app no node has taken (started, or handed to its
    /// host), here and now; false when a node took it (or it is not live).
    /// A node takes an app with the same condition ([`Store::take_app`]),
    /// so of a stop and a start exactly one wins.
    pub async fn stop_unclaimed(
        &self,
        id: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE apps SET status = 'stopped', reason = $1, stopped_at = $2 \
             WHERE id = $3 AND node_taken_at IS NULL AND status = 'spawning'",
        )
        .bind(reason)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Asks for a live app's stop. An app no node has taken is stopped at
    /// once (true); otherwise the request is recorded for the node holding
    /// it to act on (false).
    pub async fn request_stop(&self, id: &str, reason: &str, now: i64) -> Result<bool, StoreError> {
        if self.stop_unclaimed(id, reason, now).await? {
            return Ok(true);
        }
        sqlx::query(&format!(
            "UPDATE apps SET stop_requested_at = COALESCE(stop_requested_at, $1) \
             WHERE id = $2 AND status IN {LIVE}"
        ))
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(false)
    }

    /// The apps nodes serve (`initializing` or `running`, with an address),
    /// oldest first.
    pub async fn routed_apps(&self) -> Result<Vec<RoutedApp>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.domain, a.config_domain, a.node_addr, a.status, \
             a.certificate_origin, n.kind AS node_kind FROM apps a \
             LEFT JOIN nodes n ON n.id = a.node_owner \
             WHERE a.status IN ('initializing', 'running') AND a.node_addr IS NOT NULL \
             ORDER BY a.created_at, a.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RoutedApp {
                    id: row.try_get("id")?,
                    domain: row.try_get("domain")?,
                    config_domain: row.try_get("config_domain")?,
                    node_addr: row.try_get("node_addr")?,
                    running: row.try_get::<String, _>("status")? == "running",
                    operator_tls: certificate_origin(row)? == CertificateOrigin::Operator,
                    remote: row.try_get::<Option<String>, _>("node_kind")?.as_deref()
                        == Some("remote"),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Who holds node id `id`, if anyone ever did.
    pub async fn node_holder(&self, id: &str) -> Result<Option<NodeHolder>, StoreError> {
        let row = sqlx::query("SELECT id, host, pid, started_at, seen_at FROM nodes WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(NodeHolder {
                id: row.try_get("id")?,
                host: row.try_get("host")?,
                pid: row.try_get("pid")?,
                started_at: row.try_get("started_at")?,
                seen_at: row.try_get("seen_at")?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| e.into())
    }

    /// Makes `holder` the holder of its node id, replacing `previous` (as
    /// read by [`Store::node_holder`]). False when another process changed
    /// the holder since that read: compare and swap, so two processes never
    /// both take an id.
    pub async fn take_node(
        &self,
        holder: &NodeHolder,
        previous: Option<&NodeHolder>,
    ) -> Result<bool, StoreError> {
        let done = match previous {
            None => {
                let inserted = sqlx::query(
                    "INSERT INTO nodes (id, host, pid, started_at, seen_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&holder.id)
                .bind(&holder.host)
                .bind(holder.pid)
                .bind(holder.started_at)
                .bind(holder.seen_at)
                .execute(&self.pool)
                .await;
                match inserted {
                    Ok(done) => done,
                    Err(e) => {
                        let e = StoreError::from(e);
                        return if is_conflict(&e) { Ok(false) } else { Err(e) };
                    }
                }
            }
            Some(previous) => {
                sqlx::query(
                    "UPDATE nodes SET host = $1, pid = $2, started_at = $3, seen_at = $4 \
                     WHERE id = $5 AND host = $6 AND pid = $7 AND seen_at = $8",
                )
                .bind(&holder.host)
                .bind(holder.pid)
                .bind(holder.started_at)
                .bind(holder.seen_at)
                .bind(&holder.id)
                .bind(&previous.host)
                .bind(previous.pid)
                .bind(previous.seen_at)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(done.rows_affected() == 1)
    }

    /// Renews the lease of a node id its holder keeps; false when another
    /// process holds it now.
    pub async fn renew_node(
        &self,
        id: &str,
        host: &str,
        pid: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE nodes SET seen_at = $1 WHERE id = $2 AND host = $3 AND pid = $4")
                .bind(now)
                .bind(id)
                .bind(host)
                .bind(pid)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives up a node id (at a clean stop).
    pub async fn release_node(&self, id: &str, host: &str, pid: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM nodes WHERE id = $1 AND host = $2 AND pid = $3")
            .bind(id)
            .bind(host)
            .bind(pid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Live apps held by a node other than `except` whose lease ran out
    /// by `now` (or that holds none) become `on_error` ("node lost").
    /// Returns how many.
    pub async fn fail_lost_nodes(&self, except: &str, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE apps SET status = 'on_error', reason = 'node lost', onerror_at = $1, \
             node_pid = NULL, node_addr = NULL \
             WHERE status IN {LIVE} AND node_owner IS NOT NULL AND node_owner <> $2 \
             AND node_owner NOT IN (SELECT id FROM nodes WHERE seen_at + lease_secs >= $1)"
        ))
        .bind(now)
        .bind(except)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// A custom domain and the account it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// The name, lowercase.
    pub name: String,
    /// Its owner's id.
    pub user_id: String,
    /// Its owner's name.
    pub user_name: String,
    /// When its first app was deployed, Unix seconds.
    pub claimed_at: i64,
}

/// A change of a user's quota: per number, `None` keeps it, `Some(None)`
/// returns it to the default, `Some(Some(n))` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaChange {
    /// Live apps at once.
    pub max_live_apps: Option<Option<i64>>,
    /// Bytes of encrypted code kept.
    pub max_stored_bytes: Option<Option<i64>>,
}

/// Who holds what: custom domains, quotas and what is used of them.
impl Store {
    /// The custom domains, by name: every user's, or those of `user_id`.
    pub async fn domains(&self, user_id: Option<&str>) -> Result<Vec<Domain>, StoreError> {
        let sql = "SELECT d.name, d.user_id, u.name AS user_name, d.claimed_at FROM domains d \
                   JOIN users u ON u.id = d.user_id";
        let rows = match user_id {
            Some(user_id) => {
                sqlx::query(&format!("{sql} WHERE d.user_id = $1 ORDER BY d.name"))
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&format!("{sql} ORDER BY d.name"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(Domain {
                    name: row.try_get("name")?,
                    user_id: row.try_get("user_id")?,
                    user_name: row.try_get("user_name")?,
                    claimed_at: row.try_get("claimed_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Releases a custom domain: the next user to deploy it gets it. False
    /// when nobody holds it.
    pub async fn release_domain(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM domains WHERE name = $1")
            .bind(name.to_ascii_lowercase())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The live app on `domain`, if any, with its owner's id.
    pub async fn live_app_on_domain(
        &self,
        domain: &str,
    ) -> Result<Option<(App, String)>, StoreError> {
        let select = APP_SELECT.replacen("SELECT ", "SELECT p.user_id AS owner_id, ", 1);
        let row = sqlx::query(&format!(
            "{select} WHERE a.domain = $1 AND a.status IN {LIVE}"
        ))
        .bind(domain.to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((app(&row)?, row.try_get("owner_id")?)))
            .transpose()
            .map_err(|e: sqlx::Error| e.into())
    }

    /// A user's quota and what it uses of it; `None` when there is no such
    /// user.
    pub async fn user_quota(&self, user_id: &str) -> Result<Option<(Quota, Usage)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT max_live_apps, max_stored_bytes, ({USER_LIVE_APPS}) AS live_apps, \
             ({USER_STORED_BYTES}) AS stored_bytes FROM users WHERE id = $1"
        ))
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((quota(&row)?, usage(&row)?)))
            .transpose()
            .map_err(|e: sqlx::Error| e.into())
    }

    /// Changes a user's quota; false when there is no such user.
    pub async fn set_user_quota(
        &self,
        user_id: &str,
        change: &QuotaChange,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query("UPDATE users SET max_live_apps = max_live_apps WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !found {
            return Ok(false);
        }
        for (column, value) in [
            ("max_live_apps", change.max_live_apps),
            ("max_stored_bytes", change.max_stored_bytes),
        ] {
            if let Some(value) = value {
                sqlx::query(&format!("UPDATE users SET {column} = $1 WHERE id = $2"))
                    .bind(value)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Sets the most live apps on a resource (`None`: no limit); false when
    /// there is no such resource.
    pub async fn set_resource_limit(
        &self,
        name: &str,
        max_live_apps: Option<i64>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE resources SET max_live_apps = $1 WHERE name = $2")
            .bind(max_live_apps)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A resource by name, whoever may use it (for the operator).
    pub async fn any_resource(&self, name: &str) -> Result<Option<Resource>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(resource).transpose()?)
    }

    /// The apps whose package size is not recorded (stored before sizes
    /// were).
    pub async fn apps_without_code_bytes(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM apps WHERE code_bytes IS NULL")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get("id"))
            .collect::<Result<_, _>>()?)
    }

    /// Records the size of an app's package.
    pub async fn set_code_bytes(&self, id: &str, bytes: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE apps SET code_bytes = $1 WHERE id = $2")
            .bind(bytes)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
