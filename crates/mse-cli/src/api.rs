//! The platform's REST API, as the client sees it: a blocking HTTP client
//! with the caller's bearer token. The JSON shapes it exchanges are the
//! platform's wire types, `mse_api`'s.

use std::path::Path;
use std::time::Duration;

use mse_api::account::{Resource, User};
use mse_api::apps::{App, Created, DeployConfig, ListQuery};
use mse_api::error::ErrorBody;
use mse_api::platform::Platform;
use serde::de::DeserializeOwned;

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

    /// `GET /keys`: where the key service is and what it must prove.
    pub fn key_service(&self) -> Result<mse_api::keys::KeyServiceInfo, ApiError> {
        self.get_json("/keys")
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

    /// `GET /apps` with filters and a page, newest first.
    pub fn apps(&self, query: &ListQuery) -> Result<Vec<App>, ApiError> {
        let request = self.request(reqwest::Method::GET, "/apps").query(query);
        Self::json(self.send(request)?)
    }

    /// `GET /apps/{id}`.
    pub fn app(&self, id: &str) -> Result<App, ApiError> {
        self.get_json(&format!("/apps/{}", encode(id)))
    }

    /// `POST /apps`: the configuration and the encrypted `code.tar`.
    pub fn deploy(&self, config: &DeployConfig, code_tar: &Path) -> Result<Created, ApiError> {
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

    /// `POST /apps/{id}/keep-running`: a ticket for the key service.
    pub fn keep_running(&self, id: &str) -> Result<mse_api::keys::Ticket, ApiError> {
        Self::json(self.send(self.request(
            reqwest::Method::POST,
            &format!("/apps/{}/keep-running", encode(id)),
        ))?)
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
}
