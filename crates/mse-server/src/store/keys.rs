//! The key service's replicas (docs/keys.md): where each listens, on
//! which node, with which measurement, and which root key it holds. A node
//! writes its replica's row when the service starts and clears it when the
//! service ends; the API publishes the leader (the live replica holding the
//! root key that started first), the proxy routes the service's domain to
//! it, and only it releases keys, so that no two replicas release at once.

use sqlx::Row;

use super::rows::{LIVE, RESOURCE_COLUMNS};
use super::{Store, StoreError};

/// The root key's one row id.
const ROOT: &str = "root";

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

/// A replica of the key service, as its node last said.
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
    /// The check value of the root key it holds, once it holds one.
    pub root_check: Option<String>,
    /// Whether its node is a remote host.
    pub remote: bool,
}

/// Why a replica's root key is not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RootClaimError {
    /// The platform's root key is another one.
    #[error(
        "the platform's root key is {platform}, this replica holds {held}: a replica that holds \
         another root key keeps nothing (remove its root.key to get the platform's from a \
         replica, or recover the platform's from its shares)"
    )]
    Other {
        /// The platform's check value.
        platform: String,
        /// The replica's.
        held: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RootClaimError {
    fn from(e: sqlx::Error) -> Self {
        RootClaimError::Store(e.into())
    }
}

impl Store {
    /// Records that a replica of the key service runs as `started` says
    /// (replacing the row its node had).
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
            .bind(node_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO key_service (id, domain, node_id, addr, measurement, tee, \
             credential_hash, started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(node_id)
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

    /// Forgets the replica of node `node_id`.
    pub async fn clear_key_service(&self, node_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM key_service WHERE id = $1")
            .bind(node_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every replica, the leader first: live ones before the others, those
    /// holding the platform's root key first, then the one started first.
    pub async fn key_replicas(&self, now: i64) -> Result<Vec<KeyServiceRow>, StoreError> {
        let platform = self.root_check().await?;
        let rows = sqlx::query(
            "SELECT k.domain, k.node_id, k.addr, k.measurement, k.tee, k.started_at, \
             k.root_check, n.seen_at, n.lease_secs, n.kind AS node_kind FROM key_service k \
             LEFT JOIN nodes n ON n.id = k.node_id ORDER BY k.started_at, k.node_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut replicas = rows
            .iter()
            .map(|row| {
                let seen_at: Option<i64> = row.try_get("seen_at")?;
                let lease_secs: Option<i64> = row.try_get("lease_secs")?;
                let tee: String = row.try_get("tee")?;
                Ok(KeyServiceRow {
                    domain: row.try_get("domain")?,
                    node_id: row.try_get("node_id")?,
                    addr: row.try_get("addr")?,
                    measurement: row.try_get("measurement")?,
                    tee: mse_api::tee::Tee::from_name(&tee).unwrap_or_default(),
                    started_at: row.try_get("started_at")?,
                    live: matches!((seen_at, lease_secs), (Some(seen), Some(lease)) if seen + lease >= now),
                    root_check: row.try_get("root_check")?,
                    remote: row.try_get::<Option<String>, _>("node_kind")?.as_deref()
                        == Some("remote"),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        // Stable: within each rank, the one started first stays first.
        replicas.sort_by_key(|r| {
            let holds = platform.is_some() && r.root_check == platform;
            (!r.live, !holds)
        });
        Ok(replicas)
    }

    /// The replica the platform publishes and routes to, and the only one
    /// that releases keys: the first of [`Store::key_replicas`].
    pub async fn key_service(&self, now: i64) -> Result<Option<KeyServiceRow>, StoreError> {
        Ok(self.key_replicas(now).await?.into_iter().next())
    }

    /// The check value of the platform's root key, once a replica made it.
    pub async fn root_check(&self) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT check_value FROM key_root WHERE id = $1")
            .bind(ROOT)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("check_value")).transpose()?)
    }

    /// The root key's recovery shares, each sealed to its holder (none when
    /// no holders were named when it was made).
    pub async fn root_shares(&self) -> Result<Vec<String>, StoreError> {
        let row = sqlx::query("SELECT shares FROM key_root WHERE id = $1")
            .bind(ROOT)
            .fetch_optional(&self.pool)
            .await?;
        let text: Option<String> = row.map(|r| r.try_get("shares")).transpose()?.flatten();
        Ok(text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    /// Records that the replica of `node_id` holds the root key `check`:
    /// the platform's from now on when it has none (the first replica to
    /// say so makes it); refused when the platform's is another one.
    pub async fn claim_root(
        &self,
        node_id: &str,
        check: &str,
        shares: &[String],
        now: i64,
    ) -> Result<(), RootClaimError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT check_value FROM key_root WHERE id = $1")
            .bind(ROOT)
            .fetch_optional(&mut *tx)
            .await?;
        match row
            .map(|r| r.try_get::<String, _>("check_value"))
            .transpose()?
        {
            Some(platform) if platform != check => {
                return Err(RootClaimError::Other {
                    platform,
                    held: check.to_string(),
                })
            }
            Some(_) => {}
            None => {
                let shares =
                    (!shares.is_empty()).then(|| serde_json::to_string(shares).unwrap_or_default());
                sqlx::query(
                    "INSERT INTO key_root (id, check_value, created_by, created_at, shares) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(ROOT)
                .bind(check)
                .bind(node_id)
                .bind(now)
                .bind(shares)
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query("UPDATE key_service SET root_check = $1 WHERE id = $2")
            .bind(check)
            .bind(node_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// What the key service keeps and the tickets owners give it.
impl Store {
    /// The node whose running replica's credential hashes to `hash`.
    pub async fn key_service_by_credential(
        &self,
        hash: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT node_id FROM key_service WHERE credential_hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("node_id")).transpose()?)
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
             node_addr = NULL, node_taken_at = NULL, reason = NULL, rescheduled = $3, \
             moving = NULL WHERE id = $4",
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

    /// Marks app `id`, which the key service keeps, as moving off its node
    /// (`why`): its node is told to stop, and it is placed again once it
    /// has stopped. False when it is not a live kept app.
    pub async fn begin_move(&self, id: &str, why: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE apps SET moving = $1 WHERE id = $2 AND keep_running = 1 \
             AND status IN {LIVE} AND stop_requested_at IS NULL"
        ))
        .bind(why)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
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
             a.node_owner, a.docker FROM apps a JOIN projects p ON p.id = a.project_id \
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
                    docker: row.try_get("docker")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
