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
    /// Whether it answers now and keeps keys: its node renewed its lease
    /// lately and it holds the platform's root key.
    pub running: bool,
    /// Every replica, the leader first (the one above, reached at the
    /// domain, and the only one that releases keys).
    #[serde(default)]
    pub replicas: Vec<ReplicaInfo>,
}

/// A replica of the key service, as `GET /keys` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// Its node.
    pub node: String,
    /// Whether its node renewed its lease lately.
    pub live: bool,
    /// Whether it holds the platform's root key (a replica that started
    /// lately waits until another one hands it over).
    pub holds_root: bool,
}

/// The key service's own `GET /`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`SERVICE`].
    pub service: String,
    /// Its measurement, hex: what its RA-TLS certificate's evidence binds.
    pub measurement: String,
}

/// `POST /apps/{id}/keep-running` (the owner's token): the app's keys may be
/// kept by the key service. The ticket, single use and short-lived, is what
/// the owner's client hands the service with the keys: the service redeems
/// it with the platform to learn whose app it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The ticket.
    pub ticket: String,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
}

/// What a redeemed ticket says (`POST /keys/tickets/redeem`, the service's
/// credential only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketInfo {
    /// The app's uuid.
    pub app_id: String,
    /// Its owner's user id.
    pub owner: String,
    /// Its project's name.
    pub project: String,
    /// Its name.
    pub name: String,
    /// The fingerprint its node reported, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Where its node waits for its configuration, when it does: what the
    /// service releases the keys to for `mse deploy --keep-secrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<PendingRelease>,
}

/// An app the platform restarted on another node, waiting for the key
/// service to release its keys (`GET /keys/pending`, the service's
/// credential only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRelease {
    /// The app's uuid.
    pub app_id: String,
    /// Its owner's user id.
    pub owner: String,
    /// Its project's name.
    pub project: String,
    /// Its name.
    pub name: String,
    /// The name its node's RA-TLS certificate is for (the configuration
    /// server's SNI).
    pub config_domain: String,
    /// Where its node listens, `IP:port`.
    pub node_addr: String,
    /// The node it runs on.
    pub node: String,
    /// The node hosts the platform revoked.
    pub revoked_hosts: Vec<String>,
    /// Its runtime image (`code.docker`): whose reference measurements a
    /// hardware node's evidence is checked against (a wrong one only makes
    /// the check fail: the fingerprint its evidence binds names the image).
    #[serde(default)]
    pub docker: String,
}

/// What the key service did for a pending app (`POST /keys/released`, the
/// service's credential only), for its owner's `mse status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Released {
    /// The app's uuid.
    pub app_id: String,
    /// Whether its node received its keys.
    pub released: bool,
    /// Why not, in words for the owner (no secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A record the key service keeps in the platform's store, sealed under
/// its root key (`GET /keys/record?name=`, `PUT /keys/record`; the
/// service's credential only). The platform never sees inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedRecord {
    /// The record's name (`app/OWNER/PROJECT/NAME`).
    pub name: String,
    /// The sealed bytes, base64.
    pub sealed: String,
}

/// The longest sealed record the platform keeps, in bytes of base64.
pub const MAX_SEALED: usize = 2 * 1024 * 1024;

/// `POST /provision` to the key service, over TLS pinned to its verified
/// certificate: an app's keys and the owner's signed policy for its name.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRequest {
    /// The ticket of `POST /apps/{id}/keep-running`.
    pub ticket: String,
    /// The owner's signed release policy (`mse_keys::SignedPolicy`).
    pub policy: serde_json::Value,
    /// The code key, 64 hex digits.
    pub code_secret_key: String,
    /// The private key of the owner's certificate (PEM), owner mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_private_key: Option<String>,
    /// The app's secrets: a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_secrets: Option<serde_json::Value>,
    /// The key of its persistent storage (64 hex digits), when it keeps
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_key: Option<String>,
    /// `mse deploy --keep-secrets`: a new deployment of an app name whose
    /// keys the service keeps; the secrets, the owner's TLS key and the
    /// storage key are those kept (none is sent), and the service releases
    /// everything to the new app's waiting node.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_secrets: bool,
    /// The service configures the app's waiting node itself with what it
    /// then keeps (implied by `keep_secrets`; an app with persistent
    /// storage, whose storage key only the service knows once kept).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub configure: bool,
    /// `mse rotate --storage-key`: `storage_key` replaces the one kept,
    /// which is kept as the previous one until the home is sealed under
    /// the new one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotate_storage_key: bool,
}

impl std::fmt::Debug for ProvisionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisionRequest").finish_non_exhaustive()
    }
}

impl Drop for ProvisionRequest {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.code_secret_key.zeroize();
        if let Some(key) = self.ssl_private_key.as_mut() {
            key.zeroize();
        }
        if let Some(key) = self.storage_key.as_mut() {
            key.zeroize();
        }
    }
}

/// `POST /policy` to the key service, over TLS pinned to its verified
/// certificate: a new version of the owner's signed policy for an app name
/// whose keys it keeps (`mse policy edit`); the keys stay as they are.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyUpdate {
    /// A ticket of `POST /apps/{id}/keep-running` for an app of that name.
    pub ticket: String,
    /// The owner's signed release policy (`mse_keys::SignedPolicy`).
    pub policy: serde_json::Value,
}

/// The key service's answer to a provisioning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionAnswer {
    /// The app name the keys are kept for (`OWNER/PROJECT/NAME`).
    pub app: String,
    /// The policy version now in force.
    pub policy_version: u64,
    /// With `keep_secrets`: the new app's node received its keys.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

/// The largest provisioning body the key service reads (1 MiB).
pub const MAX_PROVISION_BODY: usize = 1024 * 1024;

/// How the key service reaches the platform's API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiAccess {
    /// The API's URL (`http://127.0.0.1:PORT` on the platform's machine,
    /// `https://…` from a node host).
    pub url: String,
    /// The URLs of the platform's other API replicas (a node host joined
    /// with several `--join`), tried in turn when one does not answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_urls: Vec<String>,
    /// The file holding the service's credential (mode 0600), a new one at
    /// each start.
    pub credential: PathBuf,
    /// With an `https` URL: SHA-256 (hex) of the platform CA's certificate,
    /// the only CA trusted (a node host's join token pins it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_sha256: Option<String>,
}

/// The holders of the key service's recovery shares (`mse-server
/// --recovery-holder KEY … --recovery-threshold K`): each share is sealed to
/// one holder's key, and any `threshold` of them recover the root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryHolders {
    /// How many shares recover the root key.
    pub threshold: u8,
    /// The holders' public keys (`mse-holder-v1.HEX`).
    pub holders: Vec<String>,
}

/// `GET /keys/recovery-shares` (admin): the root key's shares, each sealed to
/// its holder, for the holders to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedShares {
    /// The root key's check value.
    pub check: Option<String>,
    /// The sealed shares (`mse-share-box-v1.…`), one per holder.
    pub shares: Vec<String>,
}

/// `POST /recover` on a replica that holds no root key: shares opened by
/// their holders (`mse-recovery-v1.…`), at least the threshold.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recover {
    /// The shares.
    pub shares: Vec<String>,
}

impl std::fmt::Debug for Recover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recover").finish_non_exhaustive()
    }
}

impl Drop for Recover {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        for share in &mut self.shares {
            share.zeroize();
        }
    }
}

/// `GET /keys/root` and `POST /keys/root` (the service's credential): the
/// check value of the platform's root key (`mse_keys::recovery::service_id`),
/// public; `None` until a replica made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootCheck {
    /// The check value, hex.
    pub check: Option<String>,
    /// With `POST` by the replica that made the root key: its recovery
    /// shares, each sealed to its holder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<String>,
}

/// A live replica of the key service holding the platform's root key
/// (`GET /keys/replicas`, the service's credential): where a replica that
/// waits for the root key asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// Its node.
    pub node: String,
    /// Where it listens, `IP:port`.
    pub addr: String,
    /// The name its RA-TLS certificate is for.
    pub domain: String,
}

/// The root key handed from one replica to another (`POST /handover` on a
/// replica, over TLS where each side showed its verified RA-TLS
/// certificate).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handover {
    /// The root key, 64 hex digits.
    pub root_key: String,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover").finish_non_exhaustive()
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.root_key.zeroize();
    }
}

/// `POST /nodes/key-service` (a node host's credential): the replica the
/// host started listens on `port` of the host's advertised address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaStarted {
    /// Its port.
    pub port: u16,
    /// Its measurement, hex.
    pub measurement: String,
    /// SHA-256 (hex) of the credential it calls the API with.
    pub credential_hash: String,
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
    /// How it reaches the platform's API; `None`: it keeps nothing (no
    /// API runs beside its node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiAccess>,
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
            api: Some(ApiAccess {
                url: "http://127.0.0.1:9443".into(),
                other_urls: vec!["https://198.18.0.2:9443".into()],
                credential: "/srv/keys/credential".into(),
                ca_sha256: None,
            }),
        };
        assert_eq!(launch.domain, "keys.mse.localhost");
        let text = launch.to_json();
        assert_eq!(KeyServiceLaunch::from_json(&text).unwrap(), launch);
        let typo = text.replace("\"work_dir\"", "\"workdir\"");
        let error = KeyServiceLaunch::from_json(&typo).unwrap_err();
        assert!(error.starts_with("workdir: unknown field"), "{error}");
    }
}
