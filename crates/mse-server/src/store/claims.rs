//! The roles in separate processes: nodes claim apps, the API records stop
//! requests, node ids are leased.

use sqlx::Row;

use super::rows::{app, certificate_origin, APP_SELECT, LIVE};
use super::{is_conflict, Store, StoreError};
use crate::domain::app::{App, NodeHolder};
use crate::domain::lifecycle::CertificateOrigin;
use crate::domain::routing::RoutedApp;

/// The roles in separate processes: nodes claim apps, the API records stop
/// requests, node ids are leased.
impl Store {
    /// Claims a `spawning` app for node `node_id`. Of any number of
    /// concurrent claimants, exactly one gets true (a conditional UPDATE);
    /// an app whose stop was asked for is not claimed.
    pub async fn claim_app(&self, id: &str, node_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE apps SET node_owner = $1, tee = (SELECT tee FROM nodes WHERE id = $1) \
             WHERE id = $2 AND node_owner IS NULL \
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
        let mut routed = rows
            .iter()
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
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        // The key service is reached through the proxy like an app: its
        // leader (docs/keys.md).
        if let Some(leader) = self.key_service(chrono::Utc::now().timestamp()).await? {
            routed.push(RoutedApp {
                id: crate::domain::routing::KEY_SERVICE_ROUTE.into(),
                config_domain: leader.domain.clone(),
                domain: leader.domain,
                node_addr: leader.addr,
                running: true,
                operator_tls: false,
                remote: leader.remote,
            });
        }
        Ok(routed)
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
        // The apps the key service keeps start again on another node.
        let lost = sqlx::query(&format!(
            "SELECT id, node_owner FROM apps WHERE keep_running = 1 AND status IN {LIVE} \
             AND stop_requested_at IS NULL AND node_owner IS NOT NULL AND node_owner <> $2 \
             AND node_owner NOT IN (SELECT id FROM nodes WHERE seen_at + lease_secs >= $1)"
        ))
        .bind(now)
        .bind(except)
        .fetch_all(&self.pool)
        .await?;
        for row in &lost {
            let id: String = row.try_get("id")?;
            let from: String = row.try_get("node_owner")?;
            self.reschedule_kept(
                &id,
                &from,
                crate::domain::lifecycle::NODE_LOST,
                Some(&from),
                now,
            )
            .await?;
        }
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
