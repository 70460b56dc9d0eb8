//! Persistent storage (docs/keys.md): per app name (its scope,
//! `OWNER/PROJECT/NAME`), the encrypted snapshots its nodes wrote back —
//! content-addressed blobs and the head naming the last whole snapshot's
//! sealed manifest. The store holds ciphertext only, and makes a snapshot
//! the head only under [`mse_package::snapshot::Head::commit`]: the next
//! version, every blob it names already held, in one transaction.

use mse_api::node::{AssignedStorage, StorageCommit, StorageHead};
use mse_package::snapshot::{CommitError, Head};
use sqlx::Row;

use super::{Store, StoreError};
use crate::domain::app::App;

/// What a scope may hold in blobs at once: two snapshots at its cap (the
/// head and the one being written), and a chunk more.
fn blob_budget(cap_bytes: u64) -> u64 {
    cap_bytes
        .saturating_mul(2)
        .saturating_add(2 * mse_api::node::MAX_STORAGE_BLOB as u64)
}

/// Why a blob is refused.
#[derive(Debug, thiserror::Error)]
pub enum BlobRefused {
    /// Over the scope's budget.
    #[error(
        "the app's storage holds {held} bytes of blobs, and may hold {budget}: write back \
         smaller snapshots (its cap is [storage] size)"
    )]
    OverBudget {
        /// Bytes held.
        held: u64,
        /// Bytes allowed.
        budget: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for BlobRefused {
    fn from(e: sqlx::Error) -> Self {
        BlobRefused::Store(e.into())
    }
}

/// Why a commit is refused.
#[derive(Debug, thiserror::Error)]
pub enum CommitRefused {
    /// The commit rule.
    #[error(transparent)]
    Rule(#[from] CommitError),
    /// Bigger than the cap.
    #[error("the snapshot is {size} bytes; the app's storage is capped at {cap}")]
    OverCap {
        /// Its size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CommitRefused {
    fn from(e: sqlx::Error) -> Self {
        CommitRefused::Store(e.into())
    }
}

impl Store {
    /// The persistent storage of `app`, when it keeps one: its scope, cap
    /// and the version held.
    pub async fn assigned_storage(&self, app: &App) -> Result<Option<AssignedStorage>, StoreError> {
        Ok(self.app_storage(app).await?.map(|(storage, _)| storage))
    }

    /// [`Store::assigned_storage`], with the snapshot it names.
    pub async fn app_storage(
        &self,
        app: &App,
    ) -> Result<Option<(AssignedStorage, Option<StorageHeadRow>)>, StoreError> {
        let Some(cap) = app.spec.storage_bytes else {
            return Ok(None);
        };
        let Some(owner) = self.app_owner(&app.id).await? else {
            return Ok(None);
        };
        let scope = format!("{owner}/{}/{}", app.project, app.spec.name);
        let head = self.storage_head(&scope).await?;
        let storage = AssignedStorage {
            scope,
            cap_bytes: u64::try_from(cap).unwrap_or(0),
            version: head.as_ref().map_or(0, |h| h.version),
        };
        Ok(Some((storage, head)))
    }

    /// The snapshot held for `scope`, with when it was written.
    pub async fn storage_head(&self, scope: &str) -> Result<Option<StorageHeadRow>, StoreError> {
        let row = sqlx::query(
            "SELECT version, manifest, size, blobs, updated_at, written_by FROM storage_heads \
             WHERE scope = $1",
        )
        .bind(scope)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let blobs: String = row.try_get("blobs")?;
            Ok(StorageHeadRow {
                version: u64::try_from(row.try_get::<i64, _>("version")?).unwrap_or(0),
                manifest: row.try_get("manifest")?,
                size: u64::try_from(row.try_get::<i64, _>("size")?).unwrap_or(0),
                blobs: blobs
                    .split(',')
                    .filter(|b| !b.is_empty())
                    .map(String::from)
                    .collect(),
                updated_at: row.try_get("updated_at")?,
                written_by: row.try_get("written_by")?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| e.into())
    }

    /// Blob `id` of `scope` (base64), if held.
    pub async fn storage_blob(&self, scope: &str, id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT bytes FROM storage_blobs WHERE scope = $1 AND id = $2")
            .bind(scope)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("bytes")).transpose()?)
    }

    /// Keeps blob `id` of `scope` (base64 of bytes whose SHA-256 is `id`),
    /// within the scope's budget for a cap of `cap_bytes`.
    pub async fn put_storage_blob(
        &self,
        scope: &str,
        id: &str,
        base64: &str,
        cap_bytes: u64,
    ) -> Result<(), BlobRefused> {
        let mut tx = self.pool.begin().await?;
        let held: i64 = sqlx::query(
            "SELECT COALESCE(SUM(LENGTH(bytes)), 0) AS held FROM storage_blobs WHERE scope = $1",
        )
        .bind(scope)
        .fetch_one(&mut *tx)
        .await?
        .try_get("held")?;
        // Base64: 4 characters for 3 bytes.
        let held = u64::try_from(held).unwrap_or(0) / 4 * 3;
        let budget = blob_budget(cap_bytes);
        if held + (base64.len() as u64) / 4 * 3 > budget {
            return Err(BlobRefused::OverBudget { held, budget });
        }
        sqlx::query(
            "INSERT INTO storage_blobs (scope, id, bytes) VALUES ($1, $2, $3) \
             ON CONFLICT (scope, id) DO NOTHING",
        )
        .bind(scope)
        .bind(id)
        .bind(base64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Makes `commit` the head of `scope` under the commit rule, then lets
    /// go of the blobs it does not name.
    pub async fn commit_storage(
        &self,
        scope: &str,
        commit: &StorageCommit,
        cap_bytes: u64,
        now: i64,
        writer: &str,
    ) -> Result<(), CommitRefused> {
        if commit.size > cap_bytes {
            return Err(CommitRefused::OverCap {
                size: commit.size,
                cap: cap_bytes,
            });
        }
        let mut tx = self.pool.begin().await?;
        // A write first (SQLite): the head's row is this transaction's.
        sqlx::query("UPDATE storage_heads SET version = version WHERE scope = $1")
            .bind(scope)
            .execute(&mut *tx)
            .await?;
        let version: Option<i64> =
            sqlx::query("SELECT version FROM storage_heads WHERE scope = $1")
                .bind(scope)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("version"))
                .transpose()?;
        let held: std::collections::HashSet<String> =
            sqlx::query("SELECT id FROM storage_blobs WHERE scope = $1")
                .bind(scope)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get("id"))
                .collect::<Result<_, _>>()?;
        let head = Head {
            version: version.and_then(|v| u64::try_from(v).ok()).unwrap_or(0),
        };
        head.commit(commit.version, &commit.blobs, |id| held.contains(id))?;
        let version = i64::try_from(commit.version).unwrap_or(i64::MAX);
        let size = i64::try_from(commit.size).unwrap_or(i64::MAX);
        let blobs = commit.blobs.join(",");
        sqlx::query("DELETE FROM storage_heads WHERE scope = $1")
            .bind(scope)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO storage_heads (scope, version, manifest, size, blobs, updated_at, \
             written_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(scope)
        .bind(version)
        .bind(&commit.manifest)
        .bind(size)
        .bind(&blobs)
        .bind(now)
        .bind(writer)
        .execute(&mut *tx)
        .await?;
        for id in held.iter().filter(|id| !commit.blobs.contains(id)) {
            sqlx::query("DELETE FROM storage_blobs WHERE scope = $1 AND id = $2")
                .bind(scope)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The snapshot the store holds of a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageHeadRow {
    /// Its version.
    pub version: u64,
    /// Its sealed manifest, base64.
    pub manifest: String,
    /// Its size, bytes.
    pub size: u64,
    /// The blobs it names, in order.
    pub blobs: Vec<String>,
    /// When it was written (Unix seconds).
    pub updated_at: i64,
    /// The app whose node wrote it.
    pub written_by: Option<String>,
}

impl From<StorageHeadRow> for StorageHead {
    fn from(row: StorageHeadRow) -> Self {
        StorageHead {
            version: row.version,
            manifest: row.manifest,
            size: row.size,
            blobs: row.blobs,
        }
    }
}
