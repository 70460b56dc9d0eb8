//! An app as deployed and as it lives: what the store keeps of it.

use chrono::{DateTime, Utc};
use mse_api::event::ServedCertificate;

use super::lifecycle::{
    CertificateOrigin, Status, EXPIRED, MOVING, NO_LONGER_LIVE, STOPPED_BY_OWNER,
};

/// What an app is, as deployed: the same before and after it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// Its name.
    pub name: String,
    /// Its resource.
    pub resource: String,
    /// Its runtime image.
    pub docker: String,
    /// `module:variable`.
    pub python_application: String,
    /// Its health check path.
    pub healthcheck_endpoint: String,
    /// Who provides its certificate (the `certificate_origin` column).
    pub certificate_origin: CertificateOrigin,
    /// The owner's certificate chain (PEM), owner mode.
    pub ssl_certificate: Option<String>,
    /// SHA-256 (hex) of the encrypted code.
    pub code_sha256: String,
    /// The size of the encrypted code, bytes: what it counts in its user's
    /// stored bytes.
    pub code_bytes: i64,
    /// Enclave size (from the resource).
    pub enclave_size: String,
    /// The cap of its persistent `$HOME`, bytes, when it keeps one.
    pub storage_bytes: Option<i64>,
}

/// An app, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Its uuid.
    pub id: String,
    /// Its project's name.
    pub project: String,
    /// Where users reach it.
    pub domain_name: String,
    /// Where its configuration server is reached.
    pub config_domain_name: String,
    /// What was deployed.
    pub spec: AppSpec,
    /// Its state.
    pub status: Status,
    /// Why it failed or stopped.
    pub reason: Option<String>,
    /// Unix seconds.
    pub created_at: DateTime<Utc>,
    /// When it became `running`.
    pub ready_at: Option<DateTime<Utc>>,
    /// When it stopped.
    pub stopped_at: Option<DateTime<Utc>>,
    /// When it failed.
    pub onerror_at: Option<DateTime<Utc>>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// How its node confines it (`UNSANDBOXED: …` where it does not), once
    /// the node said.
    pub sandbox: Option<String>,
    /// The memory and CPU limits its node applies (`UNLIMITED: …` where it
    /// applies none), once the node said.
    pub limits: Option<String>,
    /// The certificate its node serves it with, as the node last reported
    /// it, for ACME and owner
    /// apps.
    pub certificate: Option<ServedCertificate>,
    /// The fingerprint (hex) its node reported when it started.
    pub fingerprint: Option<String>,
    /// The TEE of the node it was placed on, once placed.
    pub tee: Option<mse_api::tee::Tee>,
    /// Its node's address, while it has one.
    pub node_addr: Option<String>,
    /// Its node's process, while it has one.
    pub node_pid: Option<i64>,
    /// The node (its id) it was placed on; `None` until one has it.
    pub node_owner: Option<String>,
    /// When a stop was asked for, if one was.
    pub stop_requested_at: Option<DateTime<Utc>>,
    /// Whether the key service keeps its keys (its owner asked).
    pub keep_running: bool,
    /// What the platform last did for it as a kept app (restarted on
    /// another node, keys released or refused), with when.
    pub rescheduled: Option<String>,
    /// Why it is moving to another node once its node has stopped (a
    /// drain), while it is.
    pub moving: Option<String>,
}

/// What a new app is made of.
#[derive(Debug, Clone)]
pub struct NewApp {
    /// Its uuid.
    pub id: String,
    /// Its project.
    pub project_id: String,
    /// The domain to give it when its name has none yet in the project.
    pub domain: String,
    /// Its configuration domain.
    pub config_domain: String,
    /// What is deployed.
    pub spec: AppSpec,
    /// Creation, Unix seconds.
    pub created_at: DateTime<Utc>,
    /// Expiry, Unix seconds.
    pub expires_at: DateTime<Utc>,
}

/// Filters of an app listing.
#[derive(Debug, Clone, Default)]
pub struct AppFilter {
    /// Project name.
    pub project: Option<String>,
    /// App name.
    pub name: Option<String>,
    /// Status.
    pub status: Option<Status>,
    /// At most this many, newest first.
    pub limit: Option<u32>,
    /// Skip this many first (paging: `offset` = the count already read).
    pub offset: Option<u32>,
}

/// Who holds a node id: the node process that runs the apps claimed under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHolder {
    /// The node id (`--node-id`).
    pub id: String,
    /// The host the process runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: i64,
    /// When it took the id, Unix seconds.
    pub started_at: i64,
    /// When it last renewed its lease, Unix seconds.
    pub seen_at: i64,
}

/// Why the node running an app must stop it at `now`, if it
/// must: `app` is the app as the store lists it among its node's live
/// apps, `None` when it is not listed there any more.
pub fn stop_reason(app: Option<&App>, now: DateTime<Utc>) -> Option<&'static str> {
    match app {
        Some(app) if app.stop_requested_at.is_some() => Some(STOPPED_BY_OWNER),
        Some(app) if app.moving.is_some() => Some(MOVING),
        Some(app) if app.expires_at <= now => Some(EXPIRED),
        Some(_) => None,
        None => Some(NO_LONGER_LIVE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(expires_at: i64, stop_requested: bool) -> App {
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        App {
            id: "a".into(),
            project: "default".into(),
            domain_name: "a.localhost".into(),
            config_domain_name: "cfg-a.localhost".into(),
            spec: AppSpec {
                name: "a".into(),
                resource: "free".into(),
                docker: "image:1".into(),
                python_application: "app:app".into(),
                healthcheck_endpoint: "/".into(),
                certificate_origin: CertificateOrigin::SelfSigned,
                ssl_certificate: None,
                code_sha256: "00".repeat(32),
                code_bytes: 0,
                enclave_size: "1G".into(),
                storage_bytes: None,
            },
            status: Status::Running,
            reason: None,
            created_at: at(0),
            ready_at: None,
            stopped_at: None,
            onerror_at: None,
            expires_at: at(expires_at),
            tee: None,
            sandbox: None,
            limits: None,
            certificate: None,
            fingerprint: None,
            node_addr: None,
            node_pid: None,
            node_owner: None,
            stop_requested_at: stop_requested.then(|| at(5)),
            keep_running: false,
            rescheduled: None,
            moving: None,
        }
    }

    #[test]
    fn a_node_stops_an_app_its_owner_stopped_one_past_its_expiry_and_one_no_longer_listed() {
        let now = DateTime::from_timestamp(100, 0).unwrap();
        assert_eq!(stop_reason(Some(&app(200, false)), now), None);
        assert_eq!(
            stop_reason(Some(&app(200, true)), now),
            Some(STOPPED_BY_OWNER)
        );
        assert_eq!(stop_reason(Some(&app(100, false)), now), Some(EXPIRED));
        assert_eq!(stop_reason(None, now), Some(NO_LONGER_LIVE));
    }
}
