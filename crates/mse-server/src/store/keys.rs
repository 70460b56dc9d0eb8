//! The key service's row (docs/keys.md): where it listens, on which node,
//! with which measurement. Its node writes it when the service starts and
//! clears it when the service ends; the API publishes it and the proxy
//! routes the service's domain by it.

use sqlx::Row;

use super::rows::{LIVE, RESOURCE_COLUMNS};
use super::{Store, StoreError};

/// The key service's one row id.
const ID: &str = "keys";

/// What a node says of the key service it started.
#[derive(Debug, Clone, Copy)]
pub struct StartedService<'a> {
    /// Its domain.
    pub domain: &'a str,
    /// The node that runs it.
    pub node_id: &'a str,
    /// Where it listens (`IP:port`).
    pub addr: &'a str,
    /// Its measurement, hex.
    pub measurement: &'a str,
    /// The TEE of its node.
    pub tee: mse_api::tee::Tee,
    /// SHA-256 (hex) of the credential it calls the API with.
    pub credential_hash: Option<&'a str>,
}

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
    /// Records that the key service runs as `started` says.
    pub async fn set_key_service(
        &self,
        started: &StartedService<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        let StartedService {
            domain,
            node_id,
            addr,
            measurement,
            tee,
            credential_hash,
        } = *started;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM key_service WHERE id = $1")
            .bind(ID)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO key_service (id, domain, node_id, addr, measurement, tee, \
             credential_hash, started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(ID)
        .bind(domain)
        .bind(node_id)
        .bind(addr)
        .bind(measurement)
        .bind(tee.as_str())
        .bind(credential_hash)
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

/// What the key service keeps and the tickets owners give it.
impl Store {
    /// Whether `hash` is the running key service's credential.
    pub async fn is_key_service_credential(&self, hash: &str) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT 1 AS one FROM key_service WHERE id = $1 AND credential_hash = $2")
                .bind(ID)
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    /// The sealed record `name`, if the service stored one.
    pub async fn key_record(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT sealed FROM key_records WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("sealed")).transpose()?)
    }

    /// Stores the sealed record `name`, replacing the one it had.
    pub async fn put_key_record(
        &self,
        name: &str,
        sealed: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM key_records WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO key_records (name, sealed, updated_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(sealed)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a ticket (its hash) for app `app_id`.
    pub async fn add_key_ticket(
        &self,
        hash: &str,
        app_id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Tickets nobody redeemed in time go.
        sqlx::query("DELETE FROM key_tickets WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO key_tickets (hash, app_id, expires_at) VALUES ($1, $2, $3)")
            .bind(hash)
            .bind(app_id)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Redeems the ticket of hash `hash`: its app's id, once, while it is
    /// valid at `now`; the app's keys are kept by the key service from now
    /// on (it redeems a ticket only with a provisioning it accepted so far).
    pub async fn redeem_key_ticket(
        &self,
        hash: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "DELETE FROM key_tickets WHERE hash = $1 AND expires_at >= $2 RETURNING app_id",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let app_id: Option<String> = row.map(|r| r.try_get("app_id")).transpose()?;
        if let Some(id) = &app_id {
            sqlx::query("UPDATE apps SET keep_running = 1 WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(app_id)
    }
}

/// Restarting the apps the key service keeps when their node is lost.
impl Store {
    /// The live apps the key service keeps that node `node` holds, whose
    /// owner did not ask them to stop.
    pub async fn kept_apps_of(&self, node: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT id FROM apps WHERE keep_running = 1 AND status IN {LIVE} \
             AND stop_requested_at IS NULL AND node_owner = $1"
        ))
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(Into::into))
            .collect()
    }

    /// Starts app `id`, which the key service keeps and whose node `from`
    /// is gone (`why`), again on the least loaded live node that fits it
    /// (never `except`): `spawning`, placed, no node process yet, and its
    /// `rescheduled` note says so. False when it is not such an app, or no
    /// node has room (it then fails as any other app would).
    pub async fn reschedule_kept(
        &self,
        id: &str,
        from: &str,
        why: &str,
        except: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // A write first (SQLite): the app's row is this transaction's.
        let row = sqlx::query(&format!(
            "UPDATE apps SET keep_running = keep_running WHERE id = $1 AND keep_running = 1 \
             AND status IN {LIVE} AND stop_requested_at IS NULL RETURNING resource"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let resource: String = row.try_get("resource")?;
        let Some(resource) = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE name = $1"
        ))
        .bind(&resource)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(false);
        };
        let resource = super::rows::resource(&resource)?;
        let placed = super::nodes::place_except(
            &mut tx,
            resource.memory_mb,
            resource.cores,
            &resource.tees,
            except,
            now,
        )
        .await;
        let (node, tee) = match placed {
            Ok(placed) => placed,
            Err(StoreError::NoRoom(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let note = crate::domain::lifecycle::rescheduled_note(now, from, why);
        sqlx::query(
            "UPDATE apps SET status = 'spawning', node_owner = $1, tee = $2, node_pid = NULL, \
             node_addr = NULL, node_taken_at = NULL, reason = NULL, rescheduled = $3 \
             WHERE id = $4",
        )
        .bind(&node)
        .bind(tee.as_str())
        .bind(&note)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        eprintln!("app {id}: {note}; placed on {node}");
        Ok(true)
    }

    /// Adds to the `rescheduled` note of app `id` (what the key service did).
    pub async fn note_rescheduled(&self, id: &str, note: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE apps SET rescheduled = COALESCE(rescheduled || '; ', '') || $1 WHERE id = $2",
        )
        .bind(note)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl Store {
    /// The apps the key service keeps that the platform restarted and whose
    /// new node waits for its configuration (`revoked_hosts` left empty).
    pub async fn pending_releases(&self) -> Result<Vec<mse_api::keys::PendingRelease>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, p.user_id, p.name AS project, a.name, a.config_domain, a.node_addr, \
             a.node_owner FROM apps a JOIN projects p ON p.id = a.project_id \
             WHERE a.keep_running = 1 AND a.status = 'initializing' AND a.rescheduled IS NOT NULL \
             AND a.node_addr IS NOT NULL AND a.node_owner IS NOT NULL \
             AND a.stop_requested_at IS NULL ORDER BY a.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(mse_api::keys::PendingRelease {
                    app_id: row.try_get("id")?,
                    owner: row.try_get("user_id")?,
                    project: row.try_get("project")?,
                    name: row.try_get("name")?,
                    config_domain: row.try_get("config_domain")?,
                    node_addr: row.try_get("node_addr")?,
                    node: row.try_get("node_owner")?,
                    revoked_hosts: Vec::new(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
