//! The control plane's store: SQLite by default, PostgreSQL for scale, one
//! portable schema (`migrations/`) reached through sqlx's `Any` driver.
//! Queries number their parameters `$1, $2, …` in order, which both engines
//! accept.

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// True when `e` is a unique-constraint violation.
pub fn is_conflict(e: &StoreError) -> bool {
    match e {
        StoreError::Db(sqlx::Error::Database(db)) => db.is_unique_violation(),
        _ => false,
    }
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// Its id.
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// Whether it administers the platform.
    pub is_admin: bool,
    /// Creation, Unix seconds.
    pub created_at: i64,
}

/// An API token's public side (the secret is shown once, stored hashed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Token {
    /// Its id.
    pub id: String,
    /// The name its owner gave it.
    pub name: String,
    /// Creation, Unix seconds.
    pub created_at: i64,
}

/// A project.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Project {
    /// Its id.
    pub id: String,
    /// Its name, unique for its owner.
    pub name: String,
    /// Creation, Unix seconds.
    pub created_at: i64,
}

/// A resource (plan).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    })
}

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
    })
}

const RESOURCE_COLUMNS: &str = "name, memory_mb, cores, enclave_size, default_hours, public";

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
        })
    }

    /// How many users exist.
    pub async fn user_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Stores the hash of a new token of `user_id`.
    pub async fn add_token(
        &self,
        user_id: &str,
        name: &str,
        hash: &str,
        now: i64,
    ) -> Result<Token, StoreError> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO tokens (id, user_id, name, hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(name)
        .bind(hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(Token {
            id,
            name: name.to_string(),
            created_at: now,
        })
    }

    /// The user holding the live token with this hash.
    pub async fn user_by_token_hash(&self, hash: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.is_admin, u.created_at FROM tokens t \
             JOIN users u ON u.id = t.user_id WHERE t.hash = $1 AND t.revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }

    /// The live tokens of a user.
    pub async fn tokens(&self, user_id: &str) -> Result<Vec<Token>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, created_at FROM tokens WHERE user_id = $1 AND revoked_at IS NULL \
             ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Token {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Revokes a token of `user_id`; false when it has no such live token.
    pub async fn revoke_token(
        &self,
        user_id: &str,
        id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .bind(user_id)
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
        let row = sqlx::query("SELECT id, name, is_admin, created_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }
}
