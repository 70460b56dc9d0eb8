//! The key service (docs/keys.md): how the platform starts it
//! (`mse-run --key-service FILE`), what it answers on its own TLS endpoint,
//! and what the platform publishes of it (`GET /keys`) for owners to
//! verify it before trusting it with anything.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::launch::Quotes;
use crate::tee::Tee;

/// The first label of the key service's domain: `keys.<base domain>`.
pub const LABEL: &str = "keys";
/// What the service's `GET /` calls itself.
pub const SERVICE: &str = "mse-keys";
/// The name of the key service's launch file in its folder.
pub const LAUNCH_FILE: &str = "key-service.json";

/// The key service's domain on a platform whose base domain is `base`.
pub fn domain(base: &str) -> String {
    format!("{LABEL}.{base}")
}

/// `GET /keys` on the platform's API (no token needed): where the key
/// service is reached, through the proxy like an app, and what its evidence
/// must show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyServiceInfo {
    /// Its domain, reached on the platform's proxy port.
    pub domain: String,
    /// The measurement its evidence carries (MRENCLAVE in simulation and on
    /// SGX, REPORTDATA[32..64] on TDX and SEV-SNP), hex; `None` until a
    /// node host runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<String>,
    /// The TEE it runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tee: Option<Tee>,
    /// The node that runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Whether it answers now (its node renewed its lease lately).
    pub running: bool,
}

/// The key service's own `GET /`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`SERVICE`].
    pub service: String,
    /// Its measurement, hex: what its RA-TLS certificate's evidence binds.
    pub measurement: String,
}

/// How a node starts the key service: one JSON file, as for an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyServiceLaunch {
    /// Its domain: its RA-TLS certificate's subject alternative name.
    pub domain: String,
    /// Where it listens (port 0: a free port, told in its `running` event).
    pub listen: SocketAddr,
    /// Its private folder (created, mode 0700): its root key lives there.
    pub work_dir: PathBuf,
    /// Where quotes come from.
    pub quotes: Quotes,
    /// The end of its RA-TLS certificate's validity.
    #[serde(with = "crate::launch::rfc3339")]
    pub expires_at: DateTime<Utc>,
}

impl KeyServiceLaunch {
    /// Reads a launch from JSON, naming the key that is wrong.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            }
        })
    }

    /// The launch as JSON.
    pub fn to_json(&self) -> String {
        // Paths, names and numbers only: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_reads_back_what_was_written_and_names_a_wrong_key() {
        let launch = KeyServiceLaunch {
            domain: domain("mse.localhost"),
            listen: "127.0.0.1:0".parse().unwrap(),
            work_dir: "/srv/keys".into(),
            quotes: Quotes::Tdx {
                tsm_root: "/sys/kernel/config/tsm".into(),
            },
            expires_at: "2099-01-01T00:00:00Z".parse().unwrap(),
        };
        assert_eq!(launch.domain, "keys.mse.localhost");
        let text = launch.to_json();
        assert_eq!(KeyServiceLaunch::from_json(&text).unwrap(), launch);
        let typo = text.replace("\"work_dir\"", "\"workdir\"");
        let error = KeyServiceLaunch::from_json(&typo).unwrap_err();
        assert!(error.starts_with("workdir: unknown field"), "{error}");
    }
}
