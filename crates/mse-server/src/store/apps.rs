//! Apps: inserted under their quota, moved along their lifecycle, listed.

use sqlx::Row;

use super::nodes;
use super::rows::{
    app, quota, usage, user, APP_SELECT, LIVE, USER_COLUMNS, USER_LIVE_APPS, USER_STORED_BYTES,
};
use super::{Store, StoreError};
use crate::domain::accounts::User;
use crate::domain::app::{App, AppFilter, NewApp};
use crate::domain::lifecycle::{self, CertificateOrigin, Status};
use crate::domain::nodes::Placement;
use crate::domain::quota;

/// What a node reports of its app, each in a column of the app's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// How it confines the app (`sandbox`).
    Sandbox,
    /// The limits it applies (`limits`).
    Limits,
    /// The fingerprint its quote carries, hex (`fingerprint`).
    Fingerprint,
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
        quota::admit(&quota::Admission {
            quota,
            usage,
            resource: &new.spec.resource,
            resource_limit,
            on_resource,
            // A live app with persistent storage reserves its cap.
            stored_bytes_added: new
                .spec
                .code_bytes
                .saturating_add(new.spec.storage_bytes.unwrap_or(0)),
        })
        .map_err(StoreError::Quota)?;
        let (node_owner, tee) = match placement {
            Placement::Fit {
                memory_mb,
                cores,
                tees,
                now,
            } => {
                let (node, tee) = nodes::place(&mut tx, *memory_mb, *cores, tees, *now).await?;
                (Some(node), Some(tee.as_str()))
            }
            Placement::Unclaimed => (None, None),
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
            .bind(new.created_at.timestamp())
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
             code_sha256, code_bytes, enclave_size, status, created_at, expires_at, node_owner, \
             tee, storage_bytes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19, $20)",
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
        .bind(new.created_at.timestamp())
        .bind(new.expires_at.timestamp())
        .bind(node_owner)
        .bind(tee)
        .bind(new.spec.storage_bytes)
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

    /// The user id of the owner of app `id`.
    pub async fn app_owner(&self, id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT p.user_id FROM apps a JOIN projects p ON p.id = a.project_id WHERE a.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("user_id")).transpose()?)
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
        let sources = lifecycle::sources(to);
        if sources.is_empty() {
            return Ok(false);
        }
        let list = sources
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
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
            Reported::Fingerprint => "UPDATE apps SET fingerprint = $1 WHERE id = $2",
        };
        sqlx::query(sql)
            .bind(value)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records the certificate an app's node serves (kept as JSON in the
    /// `certificate` column).
    pub async fn set_certificate(
        &self,
        id: &str,
        certificate: &mse_api::event::ServedCertificate,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(certificate)
            .map_err(|e| StoreError::Db(sqlx::Error::Encode(Box::new(e))))?;
        sqlx::query("UPDATE apps SET certificate = $1 WHERE id = $2")
            .bind(json)
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
