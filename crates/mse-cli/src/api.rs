//! The platform's REST API, as the client sees it: a blocking HTTP client
//! with the caller's bearer token, and the JSON shapes it exchanges.

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How long connecting to the API may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request other than an upload may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The platform could not be reached.
    #[error("cannot reach the platform at {url}: {detail}; is it running, and is the URL right (`mse login --url`)?")]
    Unreachable {
        /// The API's URL.
        url: String,
        /// Why.
        detail: String,
    },
    /// The platform answered with an error.
    #[error("{message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The platform's message, with a hint for the usual cases.
        message: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from the platform: {0}")]
    Protocol(String),
}

impl ApiError {
    /// The HTTP status, when the platform answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The platform's public description (`GET /platform`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Platform {
    /// Apps are at `<uuid>.<base_domain>`.
    pub base_domain: String,
    /// The port the proxy serves apps on.
    pub proxy_port: u16,
    /// `simulation` or `gramine`.
    pub quote_provider: String,
}

/// The caller (`GET /me`).
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// Its name.
    pub name: String,
}

/// A resource (`GET /resources/{name}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resource {
    /// Its name.
    pub name: String,
    /// Memory, MB.
    pub memory_mb: i64,
    /// Cores.
    pub cores: i64,
    /// Enclave size, e.g. `1G`.
    pub enclave_size: String,
    /// Hours an app lives by default.
    pub default_hours: i64,
}

/// An app, as the API describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct App {
    /// Its uuid.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its project.
    pub project: String,
    /// Where users reach it.
    pub domain_name: String,
    /// Where its configuration server is reached.
    pub config_domain_name: String,
    /// Its resource.
    pub resource: String,
    /// Its runtime image.
    pub docker: String,
    /// `module:variable`.
    pub python_application: String,
    /// Health check path.
    pub healthcheck_endpoint: String,
    /// `self`, `owner` or `operator`.
    pub certificate_origin: String,
    /// The owner's certificate chain (PEM), owner mode.
    #[serde(default)]
    pub ssl_certificate: Option<String>,
    /// SHA-256 (hex) of the encrypted code the platform received.
    pub code_sha256: String,
    /// Enclave size.
    pub enclave_size: String,
    /// `spawning`, `initializing`, `running`, `on_error` or `stopped`.
    pub status: String,
    /// Why it failed or stopped.
    #[serde(default)]
    pub reason: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// When it became `running`.
    #[serde(default)]
    pub ready_at: Option<i64>,
    /// When it stopped.
    #[serde(default)]
    pub stopped_at: Option<i64>,
    /// When it failed.
    #[serde(default)]
    pub onerror_at: Option<i64>,
    /// When it expires, Unix seconds.
    pub expires_at: i64,
    /// How its node confines it (`UNSANDBOXED: …` where it does not), once
    /// the node said.
    #[serde(default)]
    pub sandbox: Option<String>,
    /// In the answer to a deploy: the spec digest of its image's
    /// environment in the platform's catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_digest: Option<String>,
    /// In the answer to a deploy: whether that environment is built already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_ready: Option<bool>,
}

impl App {
    /// True once the app can never run again.
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "stopped" | "on_error")
    }

    /// What to say next to the URL of an app whose domain names another
    /// uuid than its own: a redeployed name keeps the domain of its first
    /// deployment, and the app's own uuid name leads nowhere once it runs.
    pub fn kept_domain_note(&self) -> Option<String> {
        (self.certificate_origin != "owner" && self.domain_name != self.config_domain_name).then(
            || {
                format!(
                    "the domain of the first deployment of `{}` in project `{}`: a redeployed \
                     name keeps its domain, and {} leads nowhere once the app runs",
                    self.name, self.project, self.config_domain_name
                )
            },
        )
    }

    /// The time of the app's current status, Unix seconds.
    pub fn status_time(&self) -> i64 {
        match self.status.as_str() {
            "running" => self.ready_at,
            "stopped" => self.stopped_at,
            "on_error" => self.onerror_at,
            _ => None,
        }
        .unwrap_or(self.created_at)
    }
}

/// The deployment configuration sent with the code: `mse.toml` without any
/// key or local path.
#[derive(Debug, Clone, Serialize)]
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
    /// The expiry asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<chrono::DateTime<chrono::Utc>>,
    /// Owner mode: the domain and the certificate chain (never the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl: Option<DeploySsl>,
    /// Operator mode.
    pub untrusted_ssl: bool,
}

/// The owner's domain and certificate chain.
#[derive(Debug, Clone, Serialize)]
pub struct DeploySsl {
    /// The app's own domain.
    pub domain_name: String,
    /// The chain, PEM.
    pub certificate: String,
}

/// Filters of `GET /apps`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AppFilter {
    /// Project name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// App name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// At most this many, newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// A client of one platform's API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl Client {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:9443`).
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ApiError> {
        let base = base.trim_end_matches('/').to_string();
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("mse/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Unreachable {
                url: base.clone(),
                detail: e.to_string(),
            })?;
        Ok(Client { base, token, http })
    }

    /// The API's URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        let builder = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    fn send(
        &self,
        request: reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, ApiError> {
        let response = request.send().map_err(|e| ApiError::Unreachable {
            url: self.base.clone(),
            detail: error_chain(&e),
        })?;
        let status = response.status();
        // 304 answers a conditional request (`GET /catalog`): the caller's copy is current.
        if status.is_success() || status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(response);
        }
        let text = response.text().unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        let message = match status.as_u16() {
            401 => format!(
                "{message}: the platform refused the token; log in again with `mse login --url {}`",
                self.base
            ),
            _ => message,
        };
        Err(ApiError::Status {
            status: status.as_u16(),
            message,
        })
    }

    fn json<T: DeserializeOwned>(response: reqwest::blocking::Response) -> Result<T, ApiError> {
        let bytes = response
            .bytes()
            .map_err(|e| ApiError::Protocol(error_chain(&e)))?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Protocol(e.to_string()))
    }

    fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        Self::json(self.send(self.request(reqwest::Method::GET, path))?)
    }

    fn get_text(&self, path: &str) -> Result<String, ApiError> {
        self.send(self.request(reqwest::Method::GET, path))?
            .text()
            .map_err(|e| ApiError::Protocol(error_chain(&e)))
    }

    /// `GET /platform`.
    pub fn platform(&self) -> Result<Platform, ApiError> {
        self.get_json("/platform")
    }

    /// `GET /me`: checks the token.
    pub fn me(&self) -> Result<User, ApiError> {
        self.get_json("/me")
    }

    /// The operator's enclave-signing public key (PEM).
    pub fn signer(&self) -> Result<String, ApiError> {
        self.get_text("/signer")
    }

    /// The CA of simulated quotes (PEM).
    pub fn simulation_ca(&self) -> Result<String, ApiError> {
        self.get_text("/simulation-ca")
    }

    /// `GET /simulation-revoked`: the simulation quote keys the platform
    /// revoked (SHA-256 of each PCK's SubjectPublicKeyInfo).
    pub fn simulation_revoked(&self) -> Result<Vec<[u8; 32]>, ApiError> {
        let bytes = self
            .send(self.request(reqwest::Method::GET, "/simulation-revoked"))?
            .bytes()
            .map_err(|e| ApiError::Protocol(error_chain(&e)))?;
        mse_attest::verify::parse_revoked(&bytes).map_err(ApiError::Protocol)
    }

    /// The CA of the platform's own TLS certificate (PEM).
    pub fn operator_ca(&self) -> Result<String, ApiError> {
        self.get_text("/operator-ca")
    }

    /// `GET /projects/{name}`; `None` when the caller has no such project.
    pub fn project_exists(&self, name: &str) -> Result<bool, ApiError> {
        match self.get_json::<serde_json::Value>(&format!("/projects/{}", encode(name))) {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET /resources/{name}`; `None` when the caller may not use it.
    pub fn resource(&self, name: &str) -> Result<Option<Resource>, ApiError> {
        match self.get_json(&format!("/resources/{}", encode(name))) {
            Ok(resource) => Ok(Some(resource)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /apps` with filters, newest first.
    pub fn apps(&self, filter: &AppFilter) -> Result<Vec<App>, ApiError> {
        let request = self.request(reqwest::Method::GET, "/apps").query(filter);
        Self::json(self.send(request)?)
    }

    /// `GET /apps/{id}`.
    pub fn app(&self, id: &str) -> Result<App, ApiError> {
        self.get_json(&format!("/apps/{}", encode(id)))
    }

    /// `POST /apps`: the configuration and the encrypted `code.tar`.
    pub fn deploy(&self, config: &DeployConfig, code_tar: &Path) -> Result<App, ApiError> {
        let config =
            serde_json::to_string(config).map_err(|e| ApiError::Protocol(e.to_string()))?;
        let code = reqwest::blocking::multipart::Part::file(code_tar)
            .map_err(|e| ApiError::Protocol(format!("cannot read {}: {e}", code_tar.display())))?
            .mime_str("application/x-tar")
            .map_err(|e| ApiError::Protocol(e.to_string()))?;
        let config = reqwest::blocking::multipart::Part::text(config)
            .mime_str("application/json")
            .map_err(|e| ApiError::Protocol(e.to_string()))?;
        let form = reqwest::blocking::multipart::Form::new()
            .part("config", config)
            .part("code", code);
        let request = self
            .request(reqwest::Method::POST, "/apps")
            .timeout(UPLOAD_TIMEOUT)
            .multipart(form);
        Self::json(self.send(request)?)
    }

    /// `GET /catalog`; `None` when the platform's catalog still has
    /// `known_digest`.
    pub fn catalog(
        &self,
        known_digest: Option<&str>,
    ) -> Result<Option<mse_runtime::PublishedCatalog>, ApiError> {
        let mut request = self.request(reqwest::Method::GET, "/catalog");
        if let Some(digest) = known_digest {
            request = request.header(reqwest::header::IF_NONE_MATCH, format!("\"{digest}\""));
        }
        let response = self.send(request)?;
        if response.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        Self::json(response).map(Some)
    }

    /// `POST /apps/{id}/stop`.
    pub fn stop(&self, id: &str) -> Result<App, ApiError> {
        Self::json(
            self.send(self.request(reqwest::Method::POST, &format!("/apps/{}/stop", encode(id))))?,
        )
    }

    /// `DELETE /apps/{id}`.
    pub fn remove(&self, id: &str) -> Result<(), ApiError> {
        self.send(self.request(reqwest::Method::DELETE, &format!("/apps/{}", encode(id))))?;
        Ok(())
    }

    /// `GET /apps/{id}/logs`: the last 64 kB of the app's log.
    pub fn logs(&self, id: &str) -> Result<String, ApiError> {
        self.get_text(&format!("/apps/{}/logs", encode(id)))
    }

    /// `GET /apps` with filters, skipping the first `offset` apps (paging:
    /// `offset` is the count already read).
    pub fn apps_from(&self, filter: &AppFilter, offset: u32) -> Result<Vec<App>, ApiError> {
        let mut request = self.request(reqwest::Method::GET, "/apps").query(filter);
        if offset > 0 {
            request = request.query(&[("offset", offset)]);
        }
        Self::json(self.send(request)?)
    }
}

/// Percent-encodes a path segment.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// An error with its causes, on one line.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode("my-app_1.x"), "my-app_1.x");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn final_states_are_stopped_and_on_error() {
        let mut app: App = serde_json::from_value(serde_json::json!({
            "id": "x", "name": "n", "project": "default", "domain_name": "d",
            "config_domain_name": "c", "resource": "free", "docker": "i",
            "python_application": "app:app", "healthcheck_endpoint": "/health",
            "certificate_origin": "self", "code_sha256": "00", "enclave_size": "1G",
            "status": "running", "created_at": 1, "ready_at": 5, "expires_at": 9
        }))
        .unwrap();
        assert!(!app.is_final());
        assert_eq!(app.status_time(), 5);
        app.status = "on_error".into();
        assert!(app.is_final());
        assert_eq!(app.status_time(), 1);
    }
}
