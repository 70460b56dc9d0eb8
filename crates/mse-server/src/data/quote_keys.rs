//! Node hosts' simulation quote keys: each host makes its own key and has
//! it certified here by the data folder's simulation CA (which never leaves
//! the API host), as Intel certifies each platform's PCK key. A stolen host
//! key then forges quotes for that host only, and the operator revokes it:
//! verifiers fetch the revoked keys (`GET /simulation-revoked`) and refuse
//! the quotes signed under them.
//!
//! Table `quote_keys`: one row per certified key, named by the SHA-256 of
//! its SubjectPublicKeyInfo (DER, hex; [`mse_attest::simulation::quote_key_id`]).

use std::path::Path;

use mse_attest::simulation::SimulationCa;
use sqlx::Row;

use crate::store::{Store, StoreError};

/// Errors of quote-key certification and revocation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteKeyError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key cannot be certified (malformed, not P-256, bad host name).
    #[error("{0}")]
    Certificate(#[from] mse_attest::AttestError),
    /// The key was revoked: the host must make a new one.
    #[error("quote key {0} was revoked: the node host must make a new quote key to be certified")]
    Revoked(String),
    /// The key was certified for another node: each host makes its own.
    #[error(
        "quote key {key} was certified for node `{node}`: each node host must make a quote key \
         of its own"
    )]
    OtherNode {
        /// The key's id.
        key: String,
        /// The node it was certified for.
        node: String,
    },
    /// The data folder's simulation CA cannot be read.
    #[error("cannot read the simulation CA of the data folder ({0}): {1}")]
    Ca(String, String),
}

fn db(e: sqlx::Error) -> QuoteKeyError {
    QuoteKeyError::Store(StoreError::Db(e))
}

/// Loads the simulation CA of the data folder (`simulation-ca.pem` and
/// `simulation-ca.key`).
pub fn load_ca(data_dir: &Path) -> Result<SimulationCa, QuoteKeyError> {
    let read = |name: &str| {
        let path = data_dir.join(name);
        std::fs::read_to_string(&path)
            .map_err(|e| QuoteKeyError::Ca(path.display().to_string(), e.to_string()))
    };
    let cert = read("simulation-ca.pem")?;
    let key = read("simulation-ca.key")?;
    SimulationCa::from_pem(&cert, &key)
        .map_err(|e| QuoteKeyError::Ca(data_dir.display().to_string(), e.to_string()))
}

/// Certifies node `node`'s quote key (P-256, SPKI PEM) with the simulation
/// CA `ca` and records it; returns the chain (leaf, CA; PEM). A key revoked
/// before is refused.
pub async fn certify(
    store: &Store,
    ca: &SimulationCa,
    node: &str,
    public_key_pem: &str,
    now: i64,
) -> Result<String, QuoteKeyError> {
    let at = chrono::DateTime::from_timestamp(now, 0).unwrap_or_else(chrono::Utc::now);
    let chain = ca.certify(public_key_pem, node, at)?;
    let id = mse_attest::simulation::chain_key_id(&chain)?;
    let known = sqlx::query("SELECT node, revoked_at FROM quote_keys WHERE sha256 = $1")
        .bind(&id)
        .fetch_optional(store.pool())
        .await
        .map_err(db)?;
    match known {
        Some(row) => {
            let revoked: Option<i64> = row.try_get("revoked_at").map_err(db)?;
            let holder: String = row.try_get("node").map_err(db)?;
            if revoked.is_some() {
                return Err(QuoteKeyError::Revoked(id));
            }
            if holder != node {
                return Err(QuoteKeyError::OtherNode {
                    key: id,
                    node: holder,
                });
            }
        }
        None => {
            sqlx::query("INSERT INTO quote_keys (sha256, node, issued_at) VALUES ($1, $2, $3)")
                .bind(&id)
                .bind(node)
                .bind(now)
                .execute(store.pool())
                .await
                .map_err(db)?;
        }
    }
    Ok(chain)
}

/// Whether node `node` ever had a quote key certified.
pub async fn known_node(store: &Store, node: &str) -> Result<bool, QuoteKeyError> {
    Ok(sqlx::query("SELECT sha256 FROM quote_keys WHERE node = $1")
        .bind(node)
        .fetch_optional(store.pool())
        .await
        .map_err(db)?
        .is_some())
}

/// Revokes every quote key of node `node` not revoked yet; returns how many.
pub async fn revoke_node(store: &Store, node: &str, now: i64) -> Result<u64, QuoteKeyError> {
    Ok(
        sqlx::query("UPDATE quote_keys SET revoked_at = $1 WHERE node = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(node)
            .execute(store.pool())
            .await
            .map_err(db)?
            .rows_affected(),
    )
}

/// The revoked quote keys (SHA-256 of their SubjectPublicKeyInfo, hex), in
/// a stable order.
pub async fn revoked(store: &Store) -> Result<Vec<String>, QuoteKeyError> {
    let rows =
        sqlx::query("SELECT sha256 FROM quote_keys WHERE revoked_at IS NOT NULL ORDER BY sha256")
            .fetch_all(store.pool())
            .await
            .map_err(db)?;
    rows.iter()
        .map(|row| row.try_get("sha256").map_err(db))
        .collect()
}

/// The nodes that have a revoked quote key.
pub async fn revoked_nodes(
    store: &Store,
) -> Result<std::collections::HashSet<String>, QuoteKeyError> {
    let rows = sqlx::query("SELECT DISTINCT node FROM quote_keys WHERE revoked_at IS NOT NULL")
        .fetch_all(store.pool())
        .await
        .map_err(db)?;
    rows.iter()
        .map(|row| row.try_get("node").map_err(db))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mse_attest::simulation::QuoteKey;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::open(&url).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn certified_keys_are_recorded_and_revoked_per_node() {
        let (_dir, store) = store().await;
        let ca = SimulationCa::generate(chrono::Utc::now()).unwrap();
        let a = QuoteKey::generate();
        let b = QuoteKey::generate();
        let chain_a = certify(&store, &ca, "a", &a.public_key_pem().unwrap(), 10)
            .await
            .unwrap();
        certify(&store, &ca, "b", &b.public_key_pem().unwrap(), 10)
            .await
            .unwrap();
        assert!(known_node(&store, "a").await.unwrap());
        assert!(!known_node(&store, "c").await.unwrap());
        assert!(revoked(&store).await.unwrap().is_empty());

        assert_eq!(revoke_node(&store, "a", 20).await.unwrap(), 1);
        let id_a = mse_attest::simulation::chain_key_id(&chain_a).unwrap();
        assert_eq!(revoked(&store).await.unwrap(), vec![id_a]);
        // A revoked key is never certified again; a new one is.
        let again = certify(&store, &ca, "a", &a.public_key_pem().unwrap(), 30).await;
        assert!(matches!(again, Err(QuoteKeyError::Revoked(_))), "{again:?}");
        let other = certify(&store, &ca, "c", &b.public_key_pem().unwrap(), 30).await;
        assert!(
            matches!(&other, Err(QuoteKeyError::OtherNode { node, .. }) if node == "b"),
            "{other:?}"
        );
        let fresh = QuoteKey::generate();
        certify(&store, &ca, "a", &fresh.public_key_pem().unwrap(), 30)
            .await
            .unwrap();
        assert_eq!(revoked(&store).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_malformed_key_is_refused_and_not_recorded() {
        let (_dir, store) = store().await;
        let ca = SimulationCa::generate(chrono::Utc::now()).unwrap();
        let err = certify(&store, &ca, "a", "garbage", 10).await.unwrap_err();
        assert!(err.to_string().contains("not a P-256 public key"), "{err}");
        assert!(!known_node(&store, "a").await.unwrap());
    }
}
