//! The key service's row (docs/keys.md): where it listens, on which node,
//! with which measurement. Its node writes it when the service starts and
//! clears it when the service ends; the API publishes it and the proxy
//! routes the service's domain by it.

use sqlx::Row;

use super::{Store, StoreError};

/// The key service's one row id.
const ID: &str = "keys";

/// Where the key service runs, as its node last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyServiceRow {
    /// Its domain.
    pub domain: String,
    /// The node that runs it.
    pub node_id: String,
    /// Where it listens (`IP:port`).
    pub addr: String,
    /// Its measurement, hex.
    pub measurement: String,
    /// The TEE its node runs in.
    pub tee: mse_api::tee::Tee,
    /// When it started (Unix seconds).
    pub started_at: i64,
    /// Whether its node's lease is current at the time asked.
    pub live: bool,
}

impl Store {
    /// Records that the key service runs on `node_id` at `addr`.
    pub async fn set_key_service(
        &self,
        domain: &str,
        node_id: &str,
        addr: &str,
        measurement: &str,
        tee: mse_api::tee::Tee,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM key_service WHERE id = $1")
            .bind(ID)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO key_service (id, domain, node_id, addr, measurement, tee, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(ID)
        .bind(domain)
        .bind(node_id)
        .bind(addr)
        .bind(measurement)
        .bind(tee.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets the key service, when `node_id` is the node that ran it.
    pub async fn clear_key_service(&self, node_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM key_service WHERE id = $1 AND node_id = $2")
            .bind(ID)
            .bind(node_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The key service, if a node runs it or ran it last; `live` when that
    /// node's lease is current at `now`.
    pub async fn key_service(&self, now: i64) -> Result<Option<KeyServiceRow>, StoreError> {
        let row = sqlx::query(
            "SELECT k.domain, k.node_id, k.addr, k.measurement, k.tee, k.started_at, \
             n.seen_at, n.lease_secs FROM key_service k \
             LEFT JOIN nodes n ON n.id = k.node_id WHERE k.id = $1",
        )
        .bind(ID)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let seen_at: Option<i64> = row.try_get("seen_at")?;
        let lease_secs: Option<i64> = row.try_get("lease_secs")?;
        let tee: String = row.try_get("tee")?;
        Ok(Some(KeyServiceRow {
            domain: row.try_get("domain")?,
            node_id: row.try_get("node_id")?,
            addr: row.try_get("addr")?,
            measurement: row.try_get("measurement")?,
            tee: mse_api::tee::Tee::from_name(&tee).unwrap_or_default(),
            started_at: row.try_get("started_at")?,
            live: matches!((seen_at, lease_secs), (Some(seen), Some(lease)) if seen + lease >= now),
        }))
    }
}
