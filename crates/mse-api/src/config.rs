//! The configuration hand-over between the owner's client and a waiting
//! node, spoken over TLS to the node's RA-TLS certificate once the client
//! has verified it: the code key, the owner's TLS key and the app's secrets,
//! which nothing else carries.
//!
//! - `GET /` answers 200 with the header `Mse-Status: Waiting` while the node
//!   waits for its configuration.
//! - `POST /` with a JSON [`ConfigRequest`] configures it: 200 when accepted;
//!   401 for another app's uuid; 400 for a malformed body; 413 for a body over
//!   [`MAX_BODY`]; 422 for a key that does not decrypt the package, a private
//!   key that does not match the owner certificate, or a missing or malformed
//!   storage key for an app that keeps persistent storage. A refused request
//!   changes nothing and the node keeps waiting.

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// The header telling the node's state.
pub const STATUS_HEADER: &str = "Mse-Status";
/// Its value while the node waits for its configuration.
pub const WAITING: &str = "Waiting";
/// The largest configuration body accepted (1 MB).
pub const MAX_BODY: usize = 1024 * 1024;
/// Connections one address may hold open at once to a configuration server.
pub const MAX_CONNECTIONS_PER_SOURCE: u32 = 8;
/// Connections a configuration server holds open at once.
pub const MAX_CONNECTIONS: u32 = 64;
/// Refused configurations noted in the app's log; past it, one line says
/// that further ones are not, so that strangers cannot push the runtime's
/// own lines out of the log window.
pub const MAX_REFUSAL_NOTES: u32 = 16;

/// What the owner sends to a verified node.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigRequest {
    /// The app's uuid: must be the node's.
    pub uuid: String,
    /// The code key, 64 hex digits.
    pub code_secret_key: String,
    /// The private key of the owner's certificate (PEM), owner mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_private_key: Option<String>,
    /// The app's secrets: a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_secrets: Option<serde_json::Value>,
    /// The key the app's persistent home is sealed under, 64 hex digits
    /// (from the key service, docs/keys.md): required by a node whose
    /// launch has `storage`, ignored by any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_key: Option<String>,
    /// The storage key it replaced (`mse rotate --storage-key`), 64 hex
    /// digits: a snapshot that does not open under `storage_key` is
    /// restored under this one, and the next write-back seals the home
    /// under `storage_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_storage_key: Option<String>,
}

impl std::fmt::Debug for ConfigRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigRequest")
            .field("uuid", &self.uuid)
            .finish_non_exhaustive()
    }
}

impl Drop for ConfigRequest {
    fn drop(&mut self) {
        self.code_secret_key.zeroize();
        if let Some(key) = self.ssl_private_key.as_mut() {
            key.zeroize();
        }
        for key in [&mut self.storage_key, &mut self.previous_storage_key]
            .into_iter()
            .flatten()
        {
            key.zeroize();
        }
    }
}

/// The JSON body of every answer: `{"status": "accepted"}` or `{"error": "…"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigAnswer {
    /// Set when the configuration was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Why the request was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_a_storage_key_reads_and_writes_as_before() {
        let request: ConfigRequest =
            serde_json::from_str(r#"{"uuid": "u", "code_secret_key": "00"}"#).unwrap();
        assert_eq!(request.storage_key, None);
        let json = serde_json::to_string(&request).unwrap();
        assert!(!json.contains("storage_key"), "{json}");
    }

    #[test]
    fn debug_never_shows_a_key() {
        let request: ConfigRequest = serde_json::from_str(&format!(
            r#"{{"uuid": "u", "code_secret_key": "{}", "storage_key": "{}"}}"#,
            "ab".repeat(32),
            "cd".repeat(32)
        ))
        .unwrap();
        assert_eq!(
            request.storage_key.as_deref(),
            Some("cd".repeat(32).as_str())
        );
        let shown = format!("{request:?}");
        assert!(
            !shown.contains("abab") && !shown.contains("cdcd"),
            "{shown}"
        );
    }
}
