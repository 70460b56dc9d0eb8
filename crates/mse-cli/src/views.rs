//! The JSON shape of each object the commands print, defined once: an app
//! reads the same in `mse list --json`, `mse status --json` and
//! `mse deploy --json`, which add their own fields around it.

use chrono::{DateTime, SecondsFormat, Utc};
use mse_api::apps::{App, AppStatus, CertificateOrigin};
use mse_api::event::ServedCertificate;
use serde::Serialize;

/// The fields of an app in `--json` output, for the help texts.
pub const APP_FIELDS: &str = "uuid, name, project, url, domain_name, config_domain_name, \
resource, python_application, docker, healthcheck_endpoint, certificate_origin, enclave_size, \
code_sha256, status, status_at, reason, created_at, ready_at, stopped_at, onerror_at, \
expires_at, sandbox, limits (the memory, processes, open files and disk its node applies), \
certificate (issuer, not_after and error of the certificate the node serves, ACME and [ssl] \
apps), fingerprint (the app's MRENCLAVE, hex), node (the node host it was placed on, the only \
one whose reports move its status), keep_running (the key service keeps its keys: `mse deploy \
--keep-running`), rescheduled (what the platform last did for it as a kept app: restarted \
elsewhere, keys released or refused), storage (its persistent $HOME: cap_bytes, version, size, \
updated_at in Unix seconds; absent without [storage]) (times are RFC 3339, UTC; absent ones are null)";

/// An app as `--json` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AppView {
    /// Its uuid.
    pub uuid: String,
    /// Its name.
    pub name: String,
    /// Its project.
    pub project: String,
    /// Where users reach it.
    pub url: String,
    /// The domain of its URL.
    pub domain_name: String,
    /// Where its configuration server is reached.
    pub config_domain_name: String,
    /// Its resource.
    pub resource: String,
    /// `module:variable`.
    pub python_application: String,
    /// Its runtime image.
    pub docker: String,
    /// Its health check path.
    pub healthcheck_endpoint: String,
    /// Who provides its certificate.
    pub certificate_origin: CertificateOrigin,
    /// Its enclave size.
    pub enclave_size: String,
    /// SHA-256 (hex) of its encrypted code.
    pub code_sha256: String,
    /// Its state.
    pub status: AppStatus,
    /// When it entered that state.
    pub status_at: Option<String>,
    /// Why it failed or stopped.
    pub reason: Option<String>,
    /// When it was deployed.
    pub created_at: Option<String>,
    /// When it became `running`.
    pub ready_at: Option<String>,
    /// When it stopped.
    pub stopped_at: Option<String>,
    /// When it failed.
    pub onerror_at: Option<String>,
    /// When it expires.
    pub expires_at: Option<String>,
    /// How its node confines it.
    pub sandbox: Option<String>,
    /// The limits its node applies.
    pub limits: Option<String>,
    /// The certificate its node serves (ACME, owner): issuer, expiry, error.
    pub certificate: Option<ServedCertificate>,
    /// Its fingerprint (MRENCLAVE, hex): the one its node reported, or the
    /// one `mse deploy` computed and verified.
    pub fingerprint: Option<String>,
    /// The node it was placed on.
    pub node: Option<String>,
    /// The key service keeps its keys.
    pub keep_running: bool,
    /// What the platform last did for it as a kept app.
    pub rescheduled: Option<String>,
    /// Its persistent storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<mse_api::apps::AppStorage>,
}

impl AppView {
    /// `app`, reached at `url`.
    pub fn new(app: &App, url: String) -> Self {
        AppView {
            uuid: app.id.clone(),
            name: app.name.clone(),
            project: app.project.clone(),
            url,
            domain_name: app.domain_name.clone(),
            config_domain_name: app.config_domain_name.clone(),
            resource: app.resource.clone(),
            python_application: app.python_application.clone(),
            docker: app.docker.clone(),
            healthcheck_endpoint: app.healthcheck_endpoint.clone(),
            certificate_origin: app.certificate_origin,
            enclave_size: app.enclave_size.clone(),
            code_sha256: app.code_sha256.clone(),
            status: app.status,
            status_at: Some(rfc3339(app.status_time())),
            reason: app.reason.clone(),
            created_at: Some(rfc3339(app.created_at)),
            ready_at: app.ready_at.map(rfc3339),
            stopped_at: app.stopped_at.map(rfc3339),
            onerror_at: app.onerror_at.map(rfc3339),
            expires_at: Some(rfc3339(app.expires_at)),
            sandbox: app.sandbox.clone(),
            limits: app.limits.clone(),
            certificate: app.certificate.clone(),
            fingerprint: app.fingerprint.clone(),
            node: app.node.clone(),
            keep_running: app.keep_running,
            rescheduled: app.rescheduled.clone(),
            storage: app.storage.clone(),
        }
    }
}

/// A time in RFC 3339 (`2030-01-01T12:00:00Z`).
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_shows_what_its_node_reported_and_times_in_rfc3339() {
        let app: App = serde_json::from_value(serde_json::json!({
            "id": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "name": "hello",
            "project": "default", "domain_name": "d.localhost",
            "config_domain_name": "d.localhost", "resource": "free",
            "docker": "img", "python_application": "app:app",
            "healthcheck_endpoint": "/", "certificate_origin": "acme",
            "code_sha256": "ab", "enclave_size": "1G", "status": "running",
            "created_at": 1_900_000_000, "ready_at": 1_900_000_060,
            "expires_at": 1_900_014_400, "limits": "memory 512 MB",
            "fingerprint": "cd",
            "certificate": {"issuer": "CN=CA", "not_after": "2030-04-01T00:00:00Z"},
        }))
        .unwrap();
        let value = serde_json::to_value(AppView::new(&app, "https://d.localhost".into())).unwrap();
        assert_eq!(value["uuid"], "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0");
        assert_eq!(value["status_at"], "2030-03-17T17:47:40Z");
        assert_eq!(value["expires_at"], "2030-03-17T21:46:40Z");
        assert_eq!(value["limits"], "memory 512 MB");
        assert_eq!(value["fingerprint"], "cd");
        assert_eq!(value["certificate"]["issuer"], "CN=CA");
        assert_eq!(value["stopped_at"], serde_json::Value::Null);
        assert_eq!(value["node"], serde_json::Value::Null);
    }
}
