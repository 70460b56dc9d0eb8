//! The store's side of node hosts: join tokens, remote hosts' leases and
//! credentials, what each node offers and what its apps take of it, and the
//! placement of a new app on the least loaded node that fits.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::rows::{app, APP_SELECT, LIVE};
use super::{Store, StoreError};
use crate::domain::app::App;
use crate::domain::nodes::{
    least_loaded, JoinTokenRow, Joined, NoRoom, NodeKind, NodeRow, NodeUsage, TokenUse,
    TOKEN_ID_LEN,
};

const NODE_COLUMNS: &str =
    "id, kind, host, address, tee, memory_mb, cores, lease_secs, started_at, seen_at";

fn node(row: &AnyRow) -> Result<NodeRow, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    Ok(NodeRow {
        id: row.try_get("id")?,
        kind: if kind == "remote" {
            NodeKind::Remote
        } else {
            NodeKind::Local
        },
        host: row.try_get("host")?,
        address: row.try_get("address")?,
        tee: {
            let tee: String = row.try_get("tee")?;
            tee.parse()
                .map_err(|e: String| sqlx::Error::Decode(format!("column tee: {e}").into()))?
        },
        memory_mb: row.try_get("memory_mb")?,
        cores: row.try_get("cores")?,
        lease_secs: row.try_get("lease_secs")?,
        started_at: row.try_get("started_at")?,
        seen_at: row.try_get("seen_at")?,
    })
}

/// What the live apps of each node take: `node_owner, memory, cores, id`.
const USAGE: &str = "SELECT a.node_owner, r.memory_mb, r.cores, a.id FROM apps a \
    JOIN resources r ON r.name = a.resource WHERE a.node_owner IS NOT NULL";

/// The nodes whose lease is current at `now` (every node for a `now` far in
/// the past), with what their live apps take; without the barred and
/// drained ones when `placeable`.
async fn usage_of(
    conn: &mut sqlx::AnyConnection,
    now: i64,
    placeable: bool,
) -> Result<Vec<NodeUsage>, StoreError> {
    let unbarred = if placeable {
        " AND id NOT IN (SELECT node FROM node_bars) AND id NOT IN (SELECT node FROM node_drains)"
    } else {
        ""
    };
    let nodes = sqlx::query(&format!(
        "SELECT {NODE_COLUMNS} FROM nodes WHERE seen_at + lease_secs >= $1{unbarred} ORDER BY id"
    ))
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let mut out: Vec<NodeUsage> = nodes
        .iter()
        .map(|row| {
            Ok(NodeUsage {
                node: node(row)?,
                memory_mb: 0,
                cores: 0,
                apps: Vec::new(),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let used = sqlx::query(&format!(
        "{USAGE} AND a.status IN {LIVE} ORDER BY a.created_at"
    ))
    .fetch_all(&mut *conn)
    .await?;
    for row in &used {
        let owner: String = row.try_get("node_owner")?;
        if let Some(n) = out.iter_mut().find(|n| n.node.id == owner) {
            n.memory_mb += row.try_get::<i64, _>("memory_mb")?;
            n.cores += row.try_get::<i64, _>("cores")?;
            n.apps.push(row.try_get("id")?);
        }
    }
    Ok(out)
}

/// Picks the node of a new app inside the transaction that inserts it. The
/// live nodes' rows are locked first (a write that changes nothing), so two
/// placements count one after the other and never overfill a node.
pub(super) async fn place(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    memory_mb: i64,
    cores: i64,
    tees: &[mse_api::tee::Tee],
    now: i64,
) -> Result<(String, mse_api::tee::Tee), StoreError> {
    place_except(tx, memory_mb, cores, tees, None, now).await
}

/// [`place`], never on node `except`.
pub(super) async fn place_except(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    memory_mb: i64,
    cores: i64,
    tees: &[mse_api::tee::Tee],
    except: Option<&str>,
    now: i64,
) -> Result<(String, mse_api::tee::Tee), StoreError> {
    sqlx::query("UPDATE nodes SET cores = cores WHERE seen_at + lease_secs >= $1")
        .bind(now)
        .execute(&mut **tx)
        .await?;
    let mut nodes = usage_of(tx, now, true).await?;
    nodes.retain(|n| Some(n.node.id.as_str()) != except);
    match least_loaded(&nodes, memory_mb, cores, tees) {
        Some(chosen) => Ok((chosen.node.id.clone(), chosen.node.tee)),
        None => Err(StoreError::NoRoom(NoRoom {
            memory_mb,
            cores,
            tees: tees.to_vec(),
            free: nodes
                .iter()
                .map(|n| {
                    (
                        n.node.id.clone(),
                        n.node.memory_mb - n.memory_mb,
                        n.node.cores - n.cores,
                        n.node.tee,
                    )
                })
                .collect(),
        })),
    }
}

const TOKEN_COLUMNS: &str = "hash, created_by, created_at, expires_at, max_hosts, \
    max_memory_mb, max_cores, advertise, revoked_at";

fn join_token_row(row: &AnyRow) -> Result<JoinTokenRow, sqlx::Error> {
    Ok(JoinTokenRow {
        hash: row.try_get("hash")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        max_hosts: row.try_get("max_hosts")?,
        max_memory_mb: row.try_get("max_memory_mb")?,
        max_cores: row.try_get("max_cores")?,
        advertise: row.try_get("advertise")?,
        revoked_at: row.try_get("revoked_at")?,
        hosts: Vec::new(),
    })
}

impl Store {
    /// Records a join token (`token.hash`; its hosts are ignored).
    pub async fn add_join_token(&self, token: &JoinTokenRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO node_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&token.hash)
        .bind(&token.created_by)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.max_hosts)
        .bind(token.max_memory_mb)
        .bind(token.max_cores)
        .bind(token.advertise.clone())
        .bind(token.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every join token with the hosts it joined, newest first.
    pub async fn join_tokens(&self) -> Result<Vec<JoinTokenRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM node_tokens ORDER BY created_at DESC, hash"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut tokens = rows
            .iter()
            .map(join_token_row)
            .collect::<Result<Vec<_>, _>>()?;
        let uses =
            sqlx::query("SELECT token_hash, node FROM node_token_uses ORDER BY joined_at, node")
                .fetch_all(&self.pool)
                .await?;
        for row in &uses {
            let hash: String = row.try_get("token_hash")?;
            if let Some(token) = tokens.iter_mut().find(|t| t.hash == hash) {
                token.hosts.push(row.try_get("node")?);
            }
        }
        Ok(tokens)
    }

    /// The join token of this hash, with the hosts it joined.
    pub async fn join_token(&self, hash: &str) -> Result<Option<JoinTokenRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM node_tokens WHERE hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut token = join_token_row(&row)?;
        let uses = sqlx::query(
            "SELECT node FROM node_token_uses WHERE token_hash = $1 ORDER BY joined_at, node",
        )
        .bind(hash)
        .fetch_all(&self.pool)
        .await?;
        token.hosts = uses
            .iter()
            .map(|row| row.try_get("node"))
            .collect::<Result<_, _>>()?;
        Ok(Some(token))
    }

    /// Revokes the join token of id `id` (the first hex digits of its
    /// hash): it joins nothing after. False when no token has this id.
    pub async fn revoke_join_token(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        if id.len() != TOKEN_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        let done = sqlx::query(
            "UPDATE node_tokens SET revoked_at = COALESCE(revoked_at, $1) \
             WHERE substr(hash, 1, 16) = $2",
        )
        .bind(now)
        .bind(id.to_ascii_lowercase())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Takes a use of join token `hash` for host `node`: a host that joined
    /// with it before takes none; a new host takes one while the token has
    /// some left. One use at a time (the token's row is locked first), so
    /// concurrent joins never exceed its count.
    pub async fn use_join_token(
        &self,
        hash: &str,
        node: &str,
        now: i64,
    ) -> Result<TokenUse, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE node_tokens SET max_hosts = max_hosts WHERE hash = $1")
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        let max_hosts: i64 = sqlx::query("SELECT max_hosts FROM node_tokens WHERE hash = $1")
            .bind(hash)
            .fetch_one(&mut *tx)
            .await?
            .try_get("max_hosts")?;
        let hosts: Vec<String> = sqlx::query(
            "SELECT node FROM node_token_uses WHERE token_hash = $1 ORDER BY joined_at, node",
        )
        .bind(hash)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get("node"))
        .collect::<Result<_, _>>()?;
        if hosts.iter().any(|h| h == node) {
            tx.commit().await?;
            return Ok(TokenUse::Taken { new: false });
        }
        if hosts.len() as i64 >= max_hosts {
            tx.commit().await?;
            return Ok(TokenUse::UsedUp { hosts });
        }
        sqlx::query(
            "INSERT INTO node_token_uses (token_hash, node, joined_at) VALUES ($1, $2, $3)",
        )
        .bind(hash)
        .bind(node)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(TokenUse::Taken { new: true })
    }

    /// Gives back the use of join token `hash` that host `node` took (a
    /// join undone).
    pub async fn return_join_token(&self, hash: &str, node: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM node_token_uses WHERE token_hash = $1 AND node = $2")
            .bind(hash)
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Bars node name `node`: no placement on it, no join under it, until
    /// [`Store::allow_node`].
    pub async fn bar_node(&self, node: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO node_bars (node, barred_at) VALUES ($1, $2) ON CONFLICT (node) DO NOTHING",
        )
        .bind(node)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Lifts the bar of node name `node`; false when it was not barred.
    pub async fn allow_node(&self, node: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM node_bars WHERE node = $1")
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Drains node `node`: nothing new is placed on it, until
    /// [`Store::undrain_node`].
    pub async fn drain_node(&self, node: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO node_drains (node, drained_at) VALUES ($1, $2) \
             ON CONFLICT (node) DO NOTHING",
        )
        .bind(node)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends the drain of node `node`; false when it was not drained.
    pub async fn undrain_node(&self, node: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM node_drains WHERE node = $1")
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The drained node names.
    pub async fn drained_nodes(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT node FROM node_drains")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get("node"))
            .collect::<Result<_, _>>()?)
    }

    /// The barred node names.
    pub async fn barred_nodes(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT node FROM node_bars")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get("node"))
            .collect::<Result<_, _>>()?)
    }

    /// Ends remote host `id`'s lease and credential at once: its next call
    /// is refused, and no placement counts it live.
    pub async fn fence_remote(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE nodes SET credential_hash = NULL, seen_at = 0, lease_secs = 0 \
             WHERE id = $1 AND kind = 'remote'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes node `id` from the store (its apps must have ended).
    pub async fn remove_node(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A node by id.
    pub async fn node(&self, id: &str) -> Result<Option<NodeRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(node).transpose()?)
    }

    /// The remote host whose credential hashes to `hash`.
    pub async fn node_by_credential(&self, hash: &str) -> Result<Option<NodeRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {NODE_COLUMNS} FROM nodes WHERE credential_hash = $1 AND kind = 'remote'"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(node).transpose()?)
    }

    /// Every node, with what its live apps take.
    pub async fn nodes(&self) -> Result<Vec<NodeUsage>, StoreError> {
        // Every node, live or not: a lease far in the past still lists.
        let mut conn = self.pool.acquire().await?;
        usage_of(&mut conn, i64::MIN / 2, false).await
    }

    /// Makes a remote host the holder of node id `row.id` with a new
    /// credential: a new id is inserted; an id whose lease ran out is taken
    /// over (its live apps are lost, `on_error`); a live node's id is not.
    pub async fn join_remote(
        &self,
        row: &NodeRow,
        credential_hash: &str,
        now: i64,
    ) -> Result<Joined, StoreError> {
        if let Some(held) = self.node(&row.id).await? {
            if held.live_at(now) || held.kind == NodeKind::Local {
                return Ok(Joined::Held(held));
            }
            self.fail_node_apps(&row.id, "node lost", now).await?;
            let done = sqlx::query(
                "UPDATE nodes SET kind = 'remote', host = $1, pid = 0, address = $2, \
                 memory_mb = $3, cores = $4, lease_secs = $5, credential_hash = $6, \
                 started_at = $7, seen_at = $7, tee = $10 WHERE id = $8 AND seen_at = $9",
            )
            .bind(&row.host)
            .bind(row.address.clone())
            .bind(row.memory_mb)
            .bind(row.cores)
            .bind(row.lease_secs)
            .bind(credential_hash)
            .bind(now)
            .bind(&row.id)
            .bind(held.seen_at)
            .bind(row.tee.as_str())
            .execute(&self.pool)
            .await?;
            return Ok(if done.rows_affected() == 1 {
                Joined::Joined
            } else {
                Joined::Held(held)
            });
        }
        let inserted = sqlx::query(
            "INSERT INTO nodes (id, kind, host, pid, address, memory_mb, cores, lease_secs, \
             credential_hash, started_at, seen_at, tee) \
             VALUES ($1, 'remote', $2, 0, $3, $4, $5, $6, $7, $8, $8, $9)",
        )
        .bind(&row.id)
        .bind(&row.host)
        .bind(row.address.clone())
        .bind(row.memory_mb)
        .bind(row.cores)
        .bind(row.lease_secs)
        .bind(credential_hash)
        .bind(now)
        .bind(row.tee.as_str())
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(Joined::Joined),
            Err(e) => {
                let e = StoreError::from(e);
                if super::is_conflict(&e) {
                    match self.node(&row.id).await? {
                        Some(held) => Ok(Joined::Held(held)),
                        None => Err(e),
                    }
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Removes remote host `id` joined with this credential (a join undone).
    pub async fn forget_remote(&self, id: &str, credential_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM nodes WHERE id = $1 AND kind = 'remote' AND credential_hash = $2")
            .bind(id)
            .bind(credential_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Renews a remote host's lease while it is current; false once it ran
    /// out (the host must stop its apps and join again).
    pub async fn renew_remote(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE nodes SET seen_at = $1 WHERE id = $2 AND kind = 'remote' \
             AND seen_at + lease_secs >= $1",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets what a local node offers, its TEE and how long its lease lasts.
    pub async fn set_node_capacity(
        &self,
        id: &str,
        memory_mb: i64,
        cores: i64,
        tee: mse_api::tee::Tee,
        lease_secs: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE nodes SET kind = 'local', memory_mb = $1, cores = $2, lease_secs = $3, \
             credential_hash = NULL, tee = $5 WHERE id = $4",
        )
        .bind(memory_mb)
        .bind(cores)
        .bind(lease_secs)
        .bind(id)
        .bind(tee.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records where an app's node listens.
    pub async fn set_node_addr(&self, id: &str, addr: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE apps SET node_addr = $1 WHERE id = $2")
            .bind(addr)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks a node's live apps `on_error` with `reason`; how many.
    pub async fn fail_node_apps(
        &self,
        id: &str,
        reason: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        // The apps the key service keeps start again on another node.
        for kept in self.kept_apps_of(id).await? {
            self.reschedule_kept(&kept, id, reason, Some(id), now)
                .await?;
        }
        let done = sqlx::query(&format!(
            "UPDATE apps SET status = 'on_error', reason = $1, onerror_at = $2, \
             node_pid = NULL, node_addr = NULL WHERE node_owner = $3 AND status IN {LIVE}"
        ))
        .bind(reason)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The `spawning` apps placed on remote host `id` that it has not taken
    /// yet, marked taken now: each is handed out once.
    pub async fn take_assigned(&self, id: &str, now: i64) -> Result<Vec<App>, StoreError> {
        let rows = sqlx::query(&format!(
            "{APP_SELECT} WHERE a.node_owner = $1 AND a.status = 'spawning' \
             AND a.node_taken_at IS NULL AND a.stop_requested_at IS NULL \
             ORDER BY a.created_at, a.id"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let mut taken = Vec::new();
        for row in &rows {
            let candidate = app(row)?;
            let done = sqlx::query(
                "UPDATE apps SET node_taken_at = $1 WHERE id = $2 AND node_taken_at IS NULL",
            )
            .bind(now)
            .bind(&candidate.id)
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 1 {
                taken.push(candidate);
            }
        }
        Ok(taken)
    }

    /// Takes a `spawning` app placed on node `node` to start it: false when
    /// it was taken already, or stopped first ([`Store::stop_unclaimed`]).
    pub async fn take_app(&self, id: &str, node: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE apps SET node_taken_at = $1 WHERE id = $2 AND node_owner = $3 \
             AND node_taken_at IS NULL AND status = 'spawning' AND stop_requested_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The live apps of remote host `id` that it took before `cutoff` but
    /// no longer runs (it restarted, or lost them) become `on_error`.
    pub async fn fail_untracked(
        &self,
        id: &str,
        running: &[String],
        cutoff: i64,
        now: i64,
    ) -> Result<u64, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT id FROM apps WHERE node_owner = $1 AND status IN {LIVE} \
             AND node_taken_at IS NOT NULL AND node_taken_at < $2"
        ))
        .bind(id)
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?;
        let mut failed = 0;
        for row in &rows {
            let app: String = row.try_get("id")?;
            if running.contains(&app) {
                continue;
            }
            failed += self
                .transition(
                    &app,
                    crate::domain::lifecycle::Status::OnError,
                    Some("the node host no longer runs it"),
                    now,
                )
                .await? as u64;
        }
        Ok(failed)
    }
}
