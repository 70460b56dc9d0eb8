//! The control plane's store: SQLite by default, PostgreSQL for scale, one
//! portable schema (`migrations/`) reached through sqlx's `Any` driver.
//! Queries number their parameters `$1, $2, …` in order, which both engines
//! accept.

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

mod accounts;
mod apps;
mod claims;
pub mod keys;
pub mod nodes;
mod rows;
pub mod storage;
mod tenancy;

pub use apps::Reported;

use crate::domain::nodes::NoRoom;
use crate::domain::quota::QuotaExceeded;

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

/// True when `e` is a unique-constraint violation.
pub fn is_conflict(e: &StoreError) -> bool {
    match e {
        StoreError::Db(sqlx::Error::Database(db)) => db.is_unique_violation(),
        _ => false,
    }
}

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

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
}
