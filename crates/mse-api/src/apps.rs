//! Apps as the REST API shows them: the app itself and its status, who
//! provides its certificate, the deployment configuration sent with the
//! code, the deploy answer and the filters of a listing.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// An app's state, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppStatus {
    /// Accepted; its node is starting.
    Spawning,
    /// Its node waits for the owner's configuration.
    Initializing,
    /// Healthy.
    Running,
    /// Failed (terminal).
    OnError,
    /// Stopped on request or at expiry (terminal).
    Stopped,
}

impl AppStatus {
    /// Every state, in the order an app goes through them.
    pub const ALL: [AppStatus; 5] = [
        AppStatus::Spawning,
        AppStatus::Initializing,
        AppStatus::Running,
        AppStatus::OnError,
        AppStatus::Stopped,
    ];

    /// The states of an app that may still run.
    pub const LIVE: [AppStatus; 3] = [
        AppStatus::Spawning,
        AppStatus::Initializing,
        AppStatus::Running,
    ];

    /// Its name on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            AppStatus::Spawning => "spawning",
            AppStatus::Initializing => "initializing",
            AppStatus::Running => "running",
            AppStatus::OnError => "on_error",
            AppStatus::Stopped => "stopped",
        }
    }

    /// The state of that name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// True for the states there is no way out of (`on_error`, `stopped`):
    /// such an app never runs again.
    pub fn is_terminal(self) -> bool {
        matches!(self, AppStatus::OnError | AppStatus::Stopped)
    }
}

impl fmt::Display for AppStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who provides an app's TLS certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CertificateOrigin {
    /// The node's own RA-TLS certificate (zero trust).
    #[serde(rename = "self")]
    SelfSigned,
    /// The owner's certificate from `[ssl]`.
    #[serde(rename = "owner")]
    Owner,
    /// The platform's certificate (`--untrusted-ssl`).
    #[serde(rename = "operator")]
    Operator,
    /// A certificate from the platform's ACME CA (browser-trusted), whose
    /// key the node made and holds (zero trust).
    #[serde(rename = "acme")]
    Acme,
}

/// A certificate origin that is none of `self`, `owner` and `operator`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown certificate origin `{0}`: expected self, owner, operator or acme")]
pub struct UnknownCertificateOrigin(pub String);

impl CertificateOrigin {
    /// Its name on the wire, in the store and in a context file.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateOrigin::SelfSigned => "self",
            CertificateOrigin::Owner => "owner",
            CertificateOrigin::Operator => "operator",
            CertificateOrigin::Acme => "acme",
        }
    }

    /// The origin of that name.
    pub fn parse(text: &str) -> Result<Self, UnknownCertificateOrigin> {
        [
            CertificateOrigin::SelfSigned,
            CertificateOrigin::Owner,
            CertificateOrigin::Operator,
            CertificateOrigin::Acme,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
        .ok_or_else(|| UnknownCertificateOrigin(text.to_string()))
    }

    /// Who provides the certificate of an app deployed with these choices:
    /// the owner's `[ssl]` certificate when it has one, else the platform's
    /// (`--untrusted-ssl`), else a certificate from the platform's ACME CA
    /// when `acme` (the platform has one and the owner did not refuse it
    /// with `--no-acme`), else the node's own RA-TLS certificate. The
    /// platform decides with it, and the client checks the platform's
    /// answer with it.
    pub fn chosen(owner_ssl: bool, untrusted_ssl: bool, acme: bool) -> Self {
        match (owner_ssl, untrusted_ssl, acme) {
            (true, _, _) => CertificateOrigin::Owner,
            (false, true, _) => CertificateOrigin::Operator,
            (false, false, true) => CertificateOrigin::Acme,
            (false, false, false) => CertificateOrigin::SelfSigned,
        }
    }
}

impl fmt::Display for CertificateOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An app (`GET /apps/{id}`, each item of `GET /apps`, the answer to
/// `POST /apps/{id}/stop`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Its uuid.
    pub id: String,
    /// Its project's name.
    pub project: String,
    /// Where users reach it.
    pub domain_name: String,
    /// Where its configuration server is reached.
    pub config_domain_name: String,
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
    /// Who provides its certificate.
    pub certificate_origin: CertificateOrigin,
    /// The owner's certificate chain (PEM), owner mode.
    #[serde(default)]
    pub ssl_certificate: Option<String>,
    /// SHA-256 (hex) of the encrypted code the platform received.
    pub code_sha256: String,
    /// The size of the encrypted code, bytes (what it counts in its user's
    /// stored bytes).
    #[serde(default)]
    pub code_bytes: i64,
    /// Enclave size (from the resource).
    pub enclave_size: String,
    /// Its state.
    pub status: AppStatus,
    /// Why it failed or stopped.
    #[serde(default)]
    pub reason: Option<String>,
    /// Creation (Unix seconds on the wire, as every time of an app).
    #[serde(with = "chrono::serde::ts_seconds")]
    pub created_at: DateTime<Utc>,
    /// When it became `running`.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub ready_at: Option<DateTime<Utc>>,
    /// When it stopped.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub stopped_at: Option<DateTime<Utc>>,
    /// When it failed.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub onerror_at: Option<DateTime<Utc>>,
    /// When it expires.
    #[serde(with = "chrono::serde::ts_seconds")]
    pub expires_at: DateTime<Utc>,
    /// How its node confines it (`UNSANDBOXED: …` where it does not), once
    /// the node said.
    #[serde(default)]
    pub sandbox: Option<String>,
    /// The memory and CPU limits its node applies (`UNLIMITED: …` where it
    /// applies none), once the node said.
    #[serde(default)]
    pub limits: Option<String>,
    /// The node it was placed on (`GET /nodes` lists them); `None` before
    /// it is placed.
    #[serde(default)]
    pub node: Option<String>,
    /// The certificate its node serves, for ACME and owner apps: issuer,
    /// end of validity, and the last error obtaining or renewing it.
    #[serde(default)]
    pub certificate: Option<crate::event::ServedCertificate>,
    /// The fingerprint (MRENCLAVE, hex) its node reported when it started:
    /// the node's claim, which `mse verify --fingerprint` checks.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// The TEE of the node it was placed on; `None` before it is placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tee: Option<crate::tee::Tee>,
    /// Whether the platform's key service keeps its keys (`mse deploy
    /// --keep-running`), so that it restarts the app elsewhere when its
    /// node is lost.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_running: bool,
    /// What the platform last did for it as a kept app, with when: restarted
    /// on another node (`rescheduled from NODE: node lost`), its keys
    /// released by the key service or refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescheduled: Option<String>,
    /// Its persistent storage (`[storage] persistent = true`): its cap and
    /// what the platform holds of it, encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<AppStorage>,
}

/// An app's persistent storage, as `GET /apps/{id}` shows it: the platform
/// holds its snapshots encrypted under a key it never sees (docs/keys.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStorage {
    /// Its cap, bytes (`[storage] size`).
    pub cap_bytes: u64,
    /// The last snapshot written back (0: none yet).
    pub version: u64,
    /// Its size, bytes (of the snapshot's tarball).
    pub size: u64,
    /// When it was written back (Unix seconds), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    /// The app (uuid) whose node wrote it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
}

impl App {
    /// True once the app can never run again.
    pub fn is_final(&self) -> bool {
        self.status.is_terminal()
    }

    /// When the app entered its current status, Unix seconds (its creation
    /// for `spawning` and `initializing`).
    pub fn status_time(&self) -> DateTime<Utc> {
        match self.status {
            AppStatus::Running => self.ready_at,
            AppStatus::Stopped => self.stopped_at,
            AppStatus::OnError => self.onerror_at,
            AppStatus::Spawning | AppStatus::Initializing => None,
        }
        .unwrap_or(self.created_at)
    }
}

/// The answer to `POST /apps`: the new app, and the environment it runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// The new app.
    #[serde(flatten)]
    pub app: App,
    /// The spec digest of its image's environment in the platform's
    /// catalog (part of its fingerprint).
    pub runtime_digest: String,
    /// Whether that environment is built already (else its first start
    /// waits for the build).
    pub runtime_ready: bool,
}

/// The `config` part of `POST /apps`: `mse.toml` without any key or local
/// path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// The app's name.
    pub name: String,
    /// Its project.
    pub project: String,
    /// Its resource.
    pub resource: String,
    /// Its runtime image.
    pub docker: String,
    /// `module:variable`.
    pub python_application: String,
    /// Health check path.
    pub healthcheck_endpoint: String,
    /// The expiry the owner asked for (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<DateTime<Utc>>,
    /// Owner mode: the domain and the certificate chain (never the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl: Option<DeploySsl>,
    /// Operator mode: serve with the platform's certificate at the proxy.
    #[serde(default)]
    pub untrusted_ssl: bool,
    /// Zero trust without a browser-trusted certificate: keep the node's
    /// RA-TLS certificate even where the platform has an ACME CA.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_acme: bool,
    /// `[storage] persistent = true`: the cap of the app's persistent
    /// `$HOME`, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_bytes: Option<u64>,
}

/// The owner's domain and certificate chain (never its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySsl {
    /// The app's own domain.
    pub domain_name: String,
    /// The full chain, PEM.
    pub certificate: String,
}

/// The query of `GET /apps`: filters and a page, every one optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only the apps of this project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Only the apps of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only the apps in this state.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "status_text"
    )]
    pub status: Option<AppStatus>,
    /// At most this many, newest first.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "limit_text"
    )]
    pub limit: Option<u32>,
    /// Skip this many first (paging: the count already read).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "offset_text"
    )]
    pub offset: Option<u32>,
}

/// A status in a query string, with a message naming the states.
fn status_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AppStatus>, D::Error> {
    let text = String::deserialize(d)?;
    AppStatus::parse(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown status `{text}`: spawning, initializing, running, on_error or stopped"
        ))
    })
}

/// A count in a query string, with a message naming the parameter.
fn count_text<'de, D: Deserializer<'de>>(name: &str, d: D) -> Result<Option<u32>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse::<u32>().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{name} must be a non-negative integer (at most {}), not `{text}`",
            u32::MAX
        ))
    })
}

fn limit_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    count_text("limit", d)
}

fn offset_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    count_text("offset", d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owners_certificate_wins_then_the_operators_then_acme() {
        use CertificateOrigin::*;
        assert_eq!(CertificateOrigin::chosen(true, true, true), Owner);
        assert_eq!(CertificateOrigin::chosen(false, true, true), Operator);
        assert_eq!(CertificateOrigin::chosen(false, false, true), Acme);
        assert_eq!(CertificateOrigin::chosen(false, false, false), SelfSigned);
    }

    /// Unix seconds as a time.
    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn app(status: AppStatus) -> App {
        App {
            id: "x".into(),
            project: "default".into(),
            domain_name: "d".into(),
            config_domain_name: "c".into(),
            name: "n".into(),
            resource: "free".into(),
            docker: "i".into(),
            python_application: "app:app".into(),
            healthcheck_endpoint: "/health".into(),
            certificate_origin: CertificateOrigin::SelfSigned,
            ssl_certificate: None,
            code_sha256: "00".into(),
            code_bytes: 3,
            enclave_size: "1G".into(),
            status,
            reason: None,
            created_at: at(1),
            ready_at: Some(at(5)),
            stopped_at: None,
            onerror_at: None,
            expires_at: at(9),
            sandbox: None,
            limits: None,
            certificate: None,
            fingerprint: None,
            node: None,
            tee: None,
            keep_running: false,
            rescheduled: None,
            storage: None,
        }
    }

    #[test]
    fn statuses_read_back_from_their_names_and_only_two_are_terminal() {
        for status in AppStatus::ALL {
            assert_eq!(AppStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
            assert_eq!(
                status.is_terminal(),
                !AppStatus::LIVE.contains(&status),
                "{status}"
            );
        }
        assert_eq!(AppStatus::parse("sleeping"), None);
    }

    #[test]
    fn certificate_origins_are_self_owner_operator_and_acme_and_nothing_else() {
        for (origin, text) in [
            (CertificateOrigin::SelfSigned, "self"),
            (CertificateOrigin::Owner, "owner"),
            (CertificateOrigin::Operator, "operator"),
            (CertificateOrigin::Acme, "acme"),
        ] {
            assert_eq!(CertificateOrigin::parse(text), Ok(origin));
            assert_eq!(origin.to_string(), text);
            assert_eq!(serde_json::to_value(origin).unwrap(), text);
        }
        let error = CertificateOrigin::parse("Self").unwrap_err().to_string();
        assert!(error.contains("`Self`") && error.contains("self, owner, operator or acme"));
    }

    #[test]
    fn an_app_is_written_with_every_field_and_nulls_for_the_absent_ones() {
        let value = serde_json::to_value(app(AppStatus::Running)).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys.len(), 26, "{keys:?}");
        assert_eq!(value["limits"], serde_json::Value::Null);
        assert_eq!(value["certificate"], serde_json::Value::Null);
        assert_eq!(value["node"], serde_json::Value::Null);
        assert_eq!(value["status"], "running");
        assert_eq!(value["certificate_origin"], "self");
        assert_eq!(value["ssl_certificate"], serde_json::Value::Null);
        assert_eq!(value["stopped_at"], serde_json::Value::Null);
        assert_eq!(value["created_at"], 1, "Unix seconds on the wire");
        assert_eq!(value["ready_at"], 5);
        let back: App = serde_json::from_value(value).unwrap();
        assert_eq!(back, app(AppStatus::Running));
    }

    #[test]
    fn the_status_time_is_that_of_the_current_status_or_the_creation() {
        let mut app = app(AppStatus::Running);
        assert!(!app.is_final());
        assert_eq!(app.status_time(), at(5));
        app.status = AppStatus::OnError;
        assert!(app.is_final());
        assert_eq!(app.status_time(), at(1), "no onerror_at: the creation");
        app.onerror_at = Some(at(7));
        assert_eq!(app.status_time(), at(7));
    }

    #[test]
    fn the_deploy_answer_is_the_app_with_its_environment() {
        let created = Created {
            app: app(AppStatus::Spawning),
            runtime_digest: "ab".into(),
            runtime_ready: false,
        };
        let value = serde_json::to_value(&created).unwrap();
        assert_eq!(value["id"], "x");
        assert_eq!(value["runtime_digest"], "ab");
        assert_eq!(value["runtime_ready"], false);
        assert_eq!(serde_json::from_value::<Created>(value).unwrap(), created);
    }

    #[test]
    fn a_deploy_config_leaves_out_what_is_not_set_and_refuses_unknown_fields() {
        let config = DeployConfig {
            name: "n".into(),
            project: "p".into(),
            resource: "free".into(),
            docker: "i".into(),
            python_application: "app:app".into(),
            healthcheck_endpoint: "/".into(),
            expiration_date: None,
            ssl: None,
            untrusted_ssl: false,
            no_acme: false,
            storage_bytes: None,
        };
        let value = serde_json::to_value(&config).unwrap();
        assert!(value.get("ssl").is_none() && value.get("expiration_date").is_none());
        assert!(value.get("no_acme").is_none());
        assert_eq!(value["untrusted_ssl"], false);
        let mut extra = value.clone();
        extra["code_secret_key"] = serde_json::json!("00");
        assert!(serde_json::from_value::<DeployConfig>(extra).is_err());
    }

    #[test]
    fn list_queries_say_which_parameter_is_wrong() {
        let query = ListQuery {
            status: Some(AppStatus::OnError),
            limit: Some(3),
            ..ListQuery::default()
        };
        assert_eq!(
            serde_json::to_value(&query).unwrap(),
            serde_json::json!({"status": "on_error", "limit": 3})
        );
        let parse = |pairs: &[(&str, &str)]| {
            let map: serde_json::Map<String, serde_json::Value> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                .collect();
            serde_json::from_value::<ListQuery>(serde_json::Value::Object(map))
        };
        let read = parse(&[("status", "on_error"), ("offset", "4")]).unwrap();
        assert_eq!(read.status, Some(AppStatus::OnError));
        assert_eq!(read.offset, Some(4));
        let error = parse(&[("limit", "-3")]).unwrap_err().to_string();
        assert!(
            error.contains("limit must be a non-negative integer"),
            "{error}"
        );
        let error = parse(&[("status", "sleeping")]).unwrap_err().to_string();
        assert!(error.contains("unknown status `sleeping`"), "{error}");
        assert!(parse(&[("page", "2")]).is_err());
    }
}
