//! Rows as the store reads them, mapped onto the domain's types, and the
//! SQL fragments the store's modules share.

use sqlx::any::AnyRow;
use sqlx::Row;

use chrono::{DateTime, Utc};

use crate::domain::accounts::{Project, Resource, Scope, Token, User};
use crate::domain::app::{App, AppSpec};
use crate::domain::lifecycle::{CertificateOrigin, Status};
use crate::domain::quota::{Quota, Usage, DEFAULT_MAX_LIVE_APPS, DEFAULT_MAX_STORED_BYTES};

pub(super) fn user(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        created_at: row.try_get("created_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}

pub(super) const USER_COLUMNS: &str = "id, name, is_admin, created_at, disabled_at";

pub(super) fn token(row: &AnyRow) -> Result<Token, sqlx::Error> {
    let scope: String = row.try_get("scope")?;
    Ok(Token {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        scope: Scope::parse(&scope).map_err(|e| sqlx::Error::Decode(e.into()))?,
        expires_at: row.try_get("expires_at")?,
    })
}

pub(super) const TOKEN_COLUMNS: &str = "id, name, created_at, scope, expires_at";

pub(super) fn project(row: &AnyRow) -> Result<Project, sqlx::Error> {
    Ok(Project {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn resource(row: &AnyRow) -> Result<Resource, sqlx::Error> {
    Ok(Resource {
        name: row.try_get("name")?,
        memory_mb: row.try_get("memory_mb")?,
        cores: row.try_get("cores")?,
        enclave_size: row.try_get("enclave_size")?,
        default_hours: row.try_get("default_hours")?,
        public: row.try_get::<i64, _>("public")? != 0,
        max_live_apps: row.try_get("max_live_apps")?,
        tees: mse_api::tee::split(&row.try_get::<String, _>("tees")?)
            .map_err(|e| sqlx::Error::Decode(format!("column tees: {e}").into()))?,
    })
}

pub(super) const RESOURCE_COLUMNS: &str =
    "name, memory_mb, cores, enclave_size, default_hours, public, max_live_apps, tees";

pub(super) const APP_SELECT: &str = "SELECT a.id, p.name AS project, a.name, a.domain, a.config_domain, \
    a.resource, a.docker, a.python_application, a.healthcheck_endpoint, a.certificate_origin, \
    a.ssl_certificate, a.code_sha256, a.code_bytes, a.enclave_size, a.status, a.reason, a.created_at, \
    a.ready_at, a.stopped_at, a.onerror_at, a.expires_at, a.node_addr, a.node_pid, \
    a.node_owner, a.stop_requested_at, a.sandbox, a.limits, a.certificate, a.fingerprint, a.tee, \
    a.keep_running, a.rescheduled, a.storage_bytes, a.moving FROM apps a JOIN projects p ON p.id = a.project_id";

/// The states in which an app has, or is getting, a node.
pub(super) const LIVE: &str = "('spawning', 'initializing', 'running')";

/// The `certificate_origin` column of an app's row, or a decode error
/// naming the app and the value.
pub(super) fn certificate_origin(row: &AnyRow) -> Result<CertificateOrigin, sqlx::Error> {
    let text: String = row.try_get("certificate_origin")?;
    CertificateOrigin::parse(&text).map_err(|e| {
        let id = row.try_get::<String, _>("id").unwrap_or_default();
        sqlx::Error::Decode(format!("app {id}: column certificate_origin: {e}").into())
    })
}

pub(super) fn app(row: &AnyRow) -> Result<App, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(App {
        id: row.try_get("id")?,
        project: row.try_get("project")?,
        domain_name: row.try_get("domain")?,
        config_domain_name: row.try_get("config_domain")?,
        spec: AppSpec {
            name: row.try_get("name")?,
            resource: row.try_get("resource")?,
            docker: row.try_get("docker")?,
            python_application: row.try_get("python_application")?,
            healthcheck_endpoint: row.try_get("healthcheck_endpoint")?,
            certificate_origin: certificate_origin(row)?,
            ssl_certificate: row.try_get("ssl_certificate")?,
            code_sha256: row.try_get("code_sha256")?,
            code_bytes: row.try_get::<Option<i64>, _>("code_bytes")?.unwrap_or(0),
            enclave_size: row.try_get("enclave_size")?,
            storage_bytes: row.try_get("storage_bytes")?,
        },
        status: Status::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown status `{status}`").into()))?,
        reason: row.try_get("reason")?,
        created_at: time(row, "created_at")?,
        ready_at: optional_time(row, "ready_at")?,
        stopped_at: optional_time(row, "stopped_at")?,
        onerror_at: optional_time(row, "onerror_at")?,
        expires_at: time(row, "expires_at")?,
        sandbox: row.try_get("sandbox")?,
        limits: row.try_get("limits")?,
        // Written by the store from a node's event (`Store::set_certificate`):
        // an unreadable one reads as none.
        certificate: row
            .try_get::<Option<String>, _>("certificate")?
            .and_then(|json| serde_json::from_str(&json).ok()),
        fingerprint: row.try_get("fingerprint")?,
        // Written by the store from a node's row: an unknown kind reads as
        // none.
        tee: row
            .try_get::<Option<String>, _>("tee")?
            .and_then(|tee| tee.parse().ok()),
        node_addr: row.try_get("node_addr")?,
        node_pid: row.try_get("node_pid")?,
        node_owner: row.try_get("node_owner")?,
        stop_requested_at: optional_time(row, "stop_requested_at")?,
        keep_running: row.try_get::<i64, _>("keep_running")? != 0,
        rescheduled: row.try_get("rescheduled")?,
        moving: row.try_get("moving")?,
    })
}

/// The live apps of user `$1`.
pub(super) const USER_LIVE_APPS: &str =
    "SELECT COUNT(*) FROM apps a JOIN projects p ON p.id = a.project_id \
    WHERE p.user_id = $1 AND a.status IN ('spawning', 'initializing', 'running')";

/// The stored bytes of user `$1`: the encrypted code of every app not
/// removed, whatever its state, and the persistent storage each live app
/// reserves (its `[storage] size`).
pub(super) const USER_STORED_BYTES: &str = "SELECT CAST(COALESCE(SUM(a.code_bytes), 0) + \
    COALESCE(SUM(CASE WHEN a.status IN ('spawning', 'initializing', 'running') \
    THEN a.storage_bytes ELSE 0 END), 0) AS BIGINT) \
    FROM apps a JOIN projects p ON p.id = a.project_id WHERE p.user_id = $1";

/// A user's quota from its `max_live_apps` and `max_stored_bytes` columns
/// (NULL: the default).
pub(super) fn quota(row: &AnyRow) -> Result<Quota, sqlx::Error> {
    Ok(Quota {
        max_live_apps: row
            .try_get::<Option<i64>, _>("max_live_apps")?
            .unwrap_or(DEFAULT_MAX_LIVE_APPS),
        max_stored_bytes: row
            .try_get::<Option<i64>, _>("max_stored_bytes")?
            .unwrap_or(DEFAULT_MAX_STORED_BYTES),
    })
}

pub(super) fn usage(row: &AnyRow) -> Result<Usage, sqlx::Error> {
    Ok(Usage {
        live_apps: row.try_get("live_apps")?,
        stored_bytes: row.try_get("stored_bytes")?,
    })
}

/// A time column (Unix seconds) as a time, or a decode error naming it.
pub(super) fn time(row: &AnyRow, column: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    let seconds: i64 = row.try_get(column)?;
    DateTime::from_timestamp(seconds, 0).ok_or_else(|| {
        sqlx::Error::Decode(format!("column {column}: {seconds} is not a time").into())
    })
}

/// A time column that may be NULL.
pub(super) fn optional_time(
    row: &AnyRow,
    column: &str,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    match row.try_get::<Option<i64>, _>(column)? {
        Some(_) => time(row, column).map(Some),
        None => Ok(None),
    }
}

/// The token of a row that joins tokens to their users, its columns named
/// `token_id`, `token_name`, `token_created_at`, `scope`, `expires_at`.
pub(super) fn joined_token(row: &AnyRow) -> Result<Token, sqlx::Error> {
    let scope: String = row.try_get("scope")?;
    Ok(Token {
        id: row.try_get("token_id")?,
        name: row.try_get("token_name")?,
        created_at: row.try_get("token_created_at")?,
        scope: Scope::parse(&scope).map_err(|e| sqlx::Error::Decode(e.into()))?,
        expires_at: row.try_get("expires_at")?,
    })
}
