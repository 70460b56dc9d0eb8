//! How a node is started: the one description of an app that `mse-server`
//! hands to `mse-run` (`mse-run --launch FILE`), written once as JSON and
//! read back into the same type, so a field misspelt on one side fails the
//! build, not a deploy.
//!
//! A launch holds paths, names and numbers, never a secret: the code key,
//! the owner's TLS key and the app's secrets come later, over RA-TLS, with
//! the configuration ([`crate::config`]).
//!
//! ```
//! use mse_api::launch::Launch;
//!
//! let text = r#"{
//!   "app": {"uuid": "u", "application": "app:app", "domain": "u.localhost",
//!           "code": "/srv/u/code.tar"},
//!   "runtime": {"image": "ghcr.io/cosmian/mse-flask:20230124182826",
//!               "cache_dir": "/var/cache/mse"},
//!   "node": {"listen": "127.0.0.1:0", "work_dir": "/srv/u"},
//!   "quotes": {"provider": "gramine"},
//!   "tls": {"mode": "ratls", "expires_at": "2099-01-01T00:00:00Z"}
//! }"#;
//! let launch = Launch::from_json(text).unwrap();
//! assert_eq!(launch.timeouts.health.as_secs(), 120);
//! assert_eq!(Launch::from_json(&launch.to_json()).unwrap(), launch);
//!
//! let typo = text.replace("\"work_dir\"", "\"workdir\"");
//! let error = Launch::from_json(&typo).unwrap_err().to_string();
//! assert!(error.starts_with("node.workdir: unknown field"), "{error}");
//! ```

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The private folders a node makes in its work folder: `app/` (the
/// decrypted code), `home/` (the app's home, its secrets included), `tmp/`
/// (its temporary folder) and `tls/` (the key it serves with). The node
/// wipes them when it ends, and whoever started it wipes them after a node
/// that was killed.
pub const PRIVATE_DIRS: [&str; 4] = ["app", "home", "tmp", "tls"];

/// The [`PRIVATE_DIRS`] under `work_dir`.
pub fn private_dirs(work_dir: &Path) -> [PathBuf; 4] {
    PRIVATE_DIRS.map(|name| work_dir.join(name))
}

/// The name of the launch file `mse-server` writes in a node's work folder.
pub const LAUNCH_FILE: &str = "launch.json";

/// The attestation device of a Gramine enclave.
pub const DEFAULT_ATTESTATION_ROOT: &str = "/dev/attestation";

/// configfs-tsm, where a TDX or SEV-SNP guest asks for its reports.
pub const DEFAULT_TSM_ROOT: &str = "/sys/kernel/config/tsm";

/// The environment variable that holds, inside a Gramine enclave, the
/// fingerprint (hex) of the one app the enclave was built for: set by the
/// enclave's manifest (`loader.env`), so MRENCLAVE covers it.
pub const GRAMINE_FINGERPRINT_ENV: &str = "MSE_FINGERPRINT";

/// The shortest and longest validity a node may ask its ACME CA for.
pub const ACME_LIFETIME: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(30)..=Duration::from_secs(365 * 24 * 3600);

/// Everything a node needs to start one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    /// The app: who it is, its code and its health check.
    pub app: App,
    /// The Python environment it runs in.
    pub runtime: Runtime,
    /// Where the node listens and keeps its files.
    pub node: Node,
    /// How long the node waits.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// How the app is confined.
    #[serde(default)]
    pub sandbox: Sandbox,
    /// The most the app may use.
    #[serde(default)]
    pub limits: Limits,
    /// Where quotes come from.
    pub quotes: Quotes,
    /// A PCCS (`http`/`https`) from which the node fetches Intel's
    /// collateral for its SGX or TDX quote at start, to serve beside it
    /// (in its RA-TLS certificate and evidence) so verifiers need no PCCS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pccs_url: Option<String>,
    /// How the app's TLS is made, and when the app expires.
    pub tls: Tls,
    /// The app's persistent home (`[storage] persistent = true`,
    /// docs/keys.md): what the node restores before the app starts and
    /// writes back while it runs; `None`: the home is ephemeral.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
}

/// The largest persistent home an app may keep (`storage.size`): 4 GiB.
pub const MAX_STORAGE_BYTES: u64 = 4 << 30;

/// The name of the sealed manifest's file in a [`Restore`] folder.
pub const RESTORE_MANIFEST_FILE: &str = "manifest";

/// An app's persistent home: its encrypted snapshots (`mse_package::snapshot`)
/// are restored from the platform's store and written back to it through
/// the node's outbox. The storage key comes with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// The app name the snapshots belong to, `owner/project/name`: bound
    /// into every manifest, so another app's snapshot does not restore.
    pub app: String,
    /// The most the home may hold, in bytes of its tarball (`storage.size`,
    /// at most [`MAX_STORAGE_BYTES`]).
    pub cap_bytes: u64,
    /// The snapshot to restore before the app starts; `None`: the app
    /// starts with an empty home (it has none yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<Restore>,
    /// The folder the node writes snapshots into (blobs named by their id,
    /// manifests named `manifest-<version>`, each file mode 0600 and whole:
    /// written under a temporary name starting with `.`, then renamed),
    /// each snapshot announced by an event once its files are there;
    /// created (mode 0700) when missing.
    pub outbox: PathBuf,
    /// How often the home is written back while the app runs (whole
    /// seconds in JSON, at least one).
    #[serde(rename = "period_secs", with = "secs")]
    pub period: Duration,
}

/// The snapshot a node restores: the platform's committed head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    /// The folder holding the sealed manifest as the file
    /// [`RESTORE_MANIFEST_FILE`] and every blob it names as a file named by
    /// its id.
    pub dir: PathBuf,
    /// The head's version: an older snapshot is refused as stale.
    pub version: u64,
}

/// Who the app is (the configuration must name the same uuid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// The app's uuid.
    pub uuid: String,
    /// The app, as `module:variable`.
    pub application: String,
    /// The app's domain: the certificate's subject alternative name.
    pub domain: String,
    /// The encrypted code tarball.
    pub code: PathBuf,
    /// The health check path, polled until it answers 2xx (404 or 405, no
    /// such GET route, ends the node at once).
    #[serde(default = "default_healthcheck")]
    pub healthcheck: String,
}

fn default_healthcheck() -> String {
    "/health".to_string()
}

/// The app's runtime environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// The runtime image (`code.docker`), looked up in the catalog.
    pub image: String,
    /// The enclave size, as the platform names it (part of the fingerprint).
    #[serde(default = "default_enclave_size")]
    pub enclave_size: String,
    /// The runtime catalog (TOML); `None`: the built-in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<PathBuf>,
    /// Where runtime environments are built and cached.
    pub cache_dir: PathBuf,
    /// What installs packages; `None`: `$MSE_UV`, else uv on `PATH`, else
    /// pip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installer: Option<Installer>,
}

fn default_enclave_size() -> String {
    "1G".to_string()
}

/// What installs an environment's packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Installer {
    /// The environment's own pip.
    Pip,
    /// `uv`, found on `PATH`.
    Uv,
    /// The uv binary at this path.
    UvAt(PathBuf),
}

/// Where the node listens and keeps its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// The address it listens on, first for the configuration, then for
    /// the app (port 0: a free port, told in the `initializing` event).
    pub listen: SocketAddr,
    /// The app's private folder (created, mode 0700).
    pub work_dir: PathBuf,
    /// The log file; `None`: `WORK_DIR/app.log`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<PathBuf>,
}

/// How long the node waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// For the app to become healthy once configured (seconds in JSON;
    /// default 120).
    #[serde(rename = "health_secs", with = "secs", default = "default_health")]
    pub health: Duration,
    /// For the configuration (seconds in JSON); `None`: until the app's
    /// expiry.
    #[serde(
        rename = "config_secs",
        with = "opt_secs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub config: Option<Duration>,
}

fn default_health() -> Duration {
    Duration::from_secs(120)
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            health: default_health(),
            config: None,
        }
    }
}

/// What the operator asked of the app's sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sandbox {
    /// Confine the app (Landlock, its own uid where the node runs as root)
    /// or refuse to start it.
    #[default]
    Required,
    /// The operator's explicit opt-out: run the app unconfined, and say so,
    /// where the kernel offers no sandbox.
    BestEffort,
}

/// The most the app server and every process it starts may use, in a
/// cgroup of its own (without limits, said so, where the kernel offers no
/// writable cgroup). Nothing asked: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory, MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<NonZeroU64>,
    /// CPU time, in cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<NonZeroU32>,
}

/// Where the node's quotes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case", deny_unknown_fields)]
pub enum Quotes {
    /// No hardware: quotes signed with the host's quote key, certified by
    /// the platform's simulation CA.
    Simulation {
        /// The host's quote-signing key (P-256, PKCS#8 PEM).
        quote_key: PathBuf,
        /// Its certificate chain (PCK leaf, then the simulation CA; PEM).
        quote_chain: PathBuf,
        /// The operator's enclave-signing public key (RSA-3072, PEM): sets
        /// MRSIGNER.
        signer_key: PathBuf,
    },
    /// Real SGX through Gramine's attestation device.
    Gramine {
        /// The device's root.
        #[serde(default = "default_attestation_root")]
        attestation_root: PathBuf,
    },
    /// A TDX guest, through configfs-tsm.
    Tdx {
        /// configfs-tsm's root (the folder holding `report/`).
        #[serde(default = "default_tsm_root")]
        tsm_root: PathBuf,
    },
    /// An SEV-SNP guest, through configfs-tsm.
    #[serde(rename = "sev-snp")]
    SevSnp {
        /// configfs-tsm's root (the folder holding `report/`).
        #[serde(default = "default_tsm_root")]
        tsm_root: PathBuf,
    },
}

impl Quotes {
    /// The kind of TEE these quotes come from.
    pub fn tee(&self) -> crate::tee::Tee {
        use crate::tee::Tee;
        match self {
            Quotes::Simulation { .. } => Tee::Simulation,
            Quotes::Gramine { .. } => Tee::Sgx,
            Quotes::Tdx { .. } => Tee::Tdx,
            Quotes::SevSnp { .. } => Tee::SevSnp,
        }
    }
}

fn default_attestation_root() -> PathBuf {
    PathBuf::from(DEFAULT_ATTESTATION_ROOT)
}

fn default_tsm_root() -> PathBuf {
    PathBuf::from(DEFAULT_TSM_ROOT)
}

/// How the app's TLS is made; each mode carries the app's expiry (RFC
/// 3339 in JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Tls {
    /// The node's RA-TLS certificate, valid until `expires_at`.
    Ratls {
        /// The app's expiry.
        #[serde(with = "rfc3339")]
        expires_at: DateTime<Utc>,
    },
    /// A browser-trusted certificate from an ACME CA for the node's RA-TLS
    /// key, obtained and renewed by the node itself (TLS-ALPN-01 on the
    /// node's address), the RA-TLS certificate served until then.
    Acme {
        /// The app's expiry.
        #[serde(with = "rfc3339")]
        expires_at: DateTime<Utc>,
        /// The ACME directory URL.
        directory: String,
        /// The host's ACME account key (PKCS#8 PEM, made, mode 0600, when
        /// missing).
        account_key: PathBuf,
        /// PEM roots for the ACME server's own HTTPS; `None`: the system's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_bundle: Option<PathBuf>,
        /// The validity to ask for (an order's `notAfter`; seconds in JSON,
        /// within [`ACME_LIFETIME`]); `None`: the CA's choice.
        #[serde(
            rename = "lifetime_secs",
            with = "opt_secs",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        lifetime: Option<Duration>,
    },
    /// The owner's certificate chain (PEM); its key comes with the
    /// configuration.
    Owner {
        /// The chain.
        certificate: PathBuf,
        /// The app's expiry, if before the certificate's own.
        #[serde(with = "opt_rfc3339", default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
    },
    /// Plain HTTP: TLS ends at the platform's proxy.
    Plain {
        /// The app's expiry.
        #[serde(with = "rfc3339")]
        expires_at: DateTime<Utc>,
    },
}

/// Why a launch description is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// Not JSON of this shape; `at` names the field (`tls.expires_at`),
    /// empty at the top.
    #[error("{}{message}", at_prefix(at))]
    Malformed {
        /// Where, as a path of fields.
        at: String,
        /// What was wrong.
        message: String,
    },
    /// Well formed, but a value is out of its range.
    #[error("{at}: {message}")]
    Invalid {
        /// The field.
        at: &'static str,
        /// What was wrong.
        message: String,
    },
}

fn at_prefix(at: &str) -> String {
    if at.is_empty() || at == "." {
        String::new()
    } else {
        format!("{at}: ")
    }
}

impl Launch {
    /// Reads a launch description and checks what its types cannot say.
    pub fn from_json(text: &str) -> Result<Launch, LaunchError> {
        let mut reader = serde_json::Deserializer::from_str(text);
        let launch: Launch =
            serde_path_to_error::deserialize(&mut reader).map_err(|e| LaunchError::Malformed {
                at: e.path().to_string(),
                message: e.into_inner().to_string(),
            })?;
        reader.end().map_err(|e| LaunchError::Malformed {
            at: String::new(),
            message: e.to_string(),
        })?;
        launch.check()?;
        Ok(launch)
    }

    /// The description as JSON, as [`Launch::from_json`] reads it.
    pub fn to_json(&self) -> String {
        // Plain data: serializing it cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks what the types cannot say.
    pub fn check(&self) -> Result<(), LaunchError> {
        if let Some(url) = &self.pccs_url {
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || url.chars().any(char::is_whitespace) {
                return Err(LaunchError::Invalid {
                    at: "pccs_url",
                    message: format!("`{url}` is not an http or https URL"),
                });
            }
        }
        if let Tls::Acme {
            lifetime: Some(lifetime),
            ..
        } = &self.tls
        {
            if !ACME_LIFETIME.contains(lifetime) {
                return Err(LaunchError::Invalid {
                    at: "tls.lifetime_secs",
                    message: format!(
                        "{} is not between {} and {} seconds",
                        lifetime.as_secs(),
                        ACME_LIFETIME.start().as_secs(),
                        ACME_LIFETIME.end().as_secs()
                    ),
                });
            }
        }
        if let Some(storage) = &self.storage {
            storage.check()?;
        }
        Ok(())
    }
}

impl Storage {
    /// Checks what the types cannot say.
    fn check(&self) -> Result<(), LaunchError> {
        if self.app.is_empty() || self.app.chars().any(char::is_control) {
            return Err(LaunchError::Invalid {
                at: "storage.app",
                message: "the app name (owner/project/name) is empty or holds control \
                          characters"
                    .into(),
            });
        }
        if self.cap_bytes == 0 || self.cap_bytes > MAX_STORAGE_BYTES {
            return Err(LaunchError::Invalid {
                at: "storage.cap_bytes",
                message: format!(
                    "{} is not between 1 and {MAX_STORAGE_BYTES} bytes",
                    self.cap_bytes
                ),
            });
        }
        if self.period < Duration::from_secs(1) {
            return Err(LaunchError::Invalid {
                at: "storage.period_secs",
                message: "the write-back period is at least 1 second".into(),
            });
        }
        if self.restore.as_ref().is_some_and(|r| r.version == 0) {
            return Err(LaunchError::Invalid {
                at: "storage.restore.version",
                message: "a snapshot to restore is version 1 or later; leave `restore` out \
                          when the app has none"
                    .into(),
            });
        }
        Ok(())
    }
}

impl Tls {
    /// The app's expiry, as the launch states it (an owner's certificate
    /// may end it sooner).
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Tls::Ratls { expires_at }
            | Tls::Acme { expires_at, .. }
            | Tls::Plain { expires_at } => Some(*expires_at),
            Tls::Owner { expires_at, .. } => *expires_at,
        }
    }
}

/// A duration as whole seconds.
mod secs {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

/// An optional duration as whole seconds.
mod opt_secs {
    use super::*;

    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.serialize_some(&value.as_secs()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(deserializer).map(|v| v.map(Duration::from_secs))
    }
}

/// A time as RFC 3339 text (whole seconds when it has no fraction).
pub(crate) mod rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(
        value: &DateTime<Utc>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "`{text}` is not an RFC 3339 time (as 2026-12-01T12:00:00Z)"
                ))
            })
    }
}

/// An optional time as RFC 3339 text.
mod opt_rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(
        value: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => {
                serializer.serialize_some(&value.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::rfc3339")] DateTime<Utc>);
        Option::<Wrapped>::deserialize(deserializer).map(|v| v.map(|Wrapped(t)| t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Launch {
        Launch {
            app: App {
                uuid: "3f1c9a52-0000-4000-8000-000000000001".into(),
                application: "app:app".into(),
                domain: "3f1c9a52.localhost".into(),
                code: "/srv/nodes/3f1c9a52/code.tar".into(),
                healthcheck: "/ready".into(),
            },
            runtime: Runtime {
                image: "ghcr.io/cosmian/mse-flask:20230124182826".into(),
                enclave_size: "2G".into(),
                catalog: Some("/etc/mse/catalog.toml".into()),
                cache_dir: "/var/cache/mse".into(),
                installer: Some(Installer::UvAt("/usr/local/bin/uv".into())),
            },
            node: Node {
                listen: "127.0.0.1:0".parse().unwrap(),
                work_dir: "/srv/nodes/3f1c9a52".into(),
                log_file: Some("/srv/nodes/logs/3f1c9a52.log".into()),
            },
            timeouts: Timeouts {
                health: Duration::from_secs(60),
                config: Some(Duration::from_secs(180)),
            },
            sandbox: Sandbox::BestEffort,
            limits: Limits {
                memory_mb: NonZeroU64::new(512),
                cores: NonZeroU32::new(2),
            },
            quotes: Quotes::Simulation {
                quote_key: "/srv/nodes/quote-keys/n1/quote-key.pem".into(),
                quote_chain: "/srv/nodes/quote-keys/n1/quote-chain.pem".into(),
                signer_key: "/srv/data/signer.pub".into(),
            },
            pccs_url: Some("https://pccs.example:8081".into()),
            tls: Tls::Acme {
                expires_at: DateTime::from_timestamp(4_000_000_000, 0).unwrap(),
                directory: "https://acme.example/directory".into(),
                account_key: "/srv/nodes/acme/account.pem".into(),
                ca_bundle: Some("/srv/nodes/acme/ca-0011.pem".into()),
                lifetime: Some(Duration::from_secs(3600)),
            },
            storage: Some(Storage {
                app: "u-1/default/shop".into(),
                cap_bytes: 256 << 20,
                restore: Some(Restore {
                    dir: "/srv/nodes/3f1c9a52/restore".into(),
                    version: 7,
                }),
                outbox: "/srv/nodes/3f1c9a52/outbox".into(),
                period: Duration::from_secs(5),
            }),
        }
    }

    #[test]
    fn a_launch_round_trips_through_json() {
        let launch = full();
        let text = launch.to_json();
        assert_eq!(Launch::from_json(&text).unwrap(), launch);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["tls"]["mode"], "acme");
        assert_eq!(json["tls"]["expires_at"], "2096-10-02T07:06:40Z");
        assert_eq!(json["tls"]["lifetime_secs"], 3600);
        assert_eq!(json["timeouts"]["health_secs"], 60);
        assert_eq!(json["sandbox"], "best-effort");
        assert_eq!(json["quotes"]["provider"], "simulation");
        assert_eq!(json["runtime"]["installer"]["uv_at"], "/usr/local/bin/uv");
        assert_eq!(json["pccs_url"], "https://pccs.example:8081");
        assert_eq!(json["storage"]["period_secs"], 5);
        assert_eq!(json["storage"]["restore"]["version"], 7);
        let mut bad = full();
        bad.pccs_url = Some("file:///etc/passwd".into());
        assert!(bad.check().unwrap_err().to_string().contains("pccs_url"));

        for tls in [
            Tls::Ratls {
                expires_at: DateTime::from_timestamp(4_000_000_000, 0).unwrap(),
            },
            Tls::Owner {
                certificate: "/srv/nodes/u/owner.pem".into(),
                expires_at: None,
            },
            Tls::Plain {
                expires_at: DateTime::from_timestamp(4_000_000_000, 0).unwrap(),
            },
        ] {
            let mut launch = full();
            launch.tls = tls;
            launch.quotes = Quotes::Gramine {
                attestation_root: DEFAULT_ATTESTATION_ROOT.into(),
            };
            launch.runtime.installer = Some(Installer::Pip);
            launch.limits = Limits::default();
            launch.timeouts.config = None;
            launch.storage = None;
            assert_eq!(Launch::from_json(&launch.to_json()).unwrap(), launch);
            assert!(!launch.to_json().contains("storage"));
        }
    }

    /// The error text of `edit` applied to the JSON of a full launch.
    fn refused(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut json = serde_json::to_value(full()).unwrap();
        edit(&mut json);
        Launch::from_json(&json.to_string())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_unknown_field_is_refused_naming_it_and_where_it_is() {
        let error = refused(|j| j["app"]["uid"] = "x".into());
        assert!(error.starts_with("app.uid: unknown field `uid`"), "{error}");
        let error = refused(|j| j["sandbox_mode"] = "required".into());
        assert!(error.contains("unknown field `sandbox_mode`"), "{error}");
        let error = refused(|j| j["quotes"]["ca_key"] = "/x".into());
        assert!(error.contains("unknown field `ca_key`"), "{error}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_naming_its_field() {
        let error = refused(|j| j["timeouts"]["health_secs"] = "120".into());
        assert!(
            error.starts_with("timeouts.health_secs: invalid type: string"),
            "{error}"
        );
        let error = refused(|j| j["limits"]["memory_mb"] = 0.into());
        assert!(error.starts_with("limits.memory_mb: "), "{error}");
        let error = refused(|j| j["node"]["listen"] = "localhost".into());
        assert!(error.starts_with("node.listen: "), "{error}");
        let error = refused(|j| j["sandbox"] = "off".into());
        assert!(
            error.starts_with("sandbox: unknown variant `off`"),
            "{error}"
        );
        let error = refused(|j| j["tls"]["expires_at"] = "in a while".into());
        assert!(
            error.contains("`in a while` is not an RFC 3339 time"),
            "{error}"
        );
        let error = refused(|j| {
            j["app"].as_object_mut().unwrap().remove("uuid");
        });
        assert!(error.starts_with("app: missing field `uuid`"), "{error}");
    }

    #[test]
    fn an_acme_lifetime_out_of_range_is_refused() {
        let error = refused(|j| j["tls"]["lifetime_secs"] = 10.into());
        assert_eq!(
            error,
            "tls.lifetime_secs: 10 is not between 30 and 31536000 seconds"
        );
    }

    #[test]
    fn a_storage_out_of_its_bounds_is_refused_naming_the_field() {
        let error = refused(|j| j["storage"]["cap_bytes"] = (5u64 << 30).into());
        assert_eq!(
            error,
            "storage.cap_bytes: 5368709120 is not between 1 and 4294967296 bytes"
        );
        let error = refused(|j| j["storage"]["period_secs"] = 0.into());
        assert!(error.starts_with("storage.period_secs: "), "{error}");
        let error = refused(|j| j["storage"]["restore"]["version"] = 0.into());
        assert!(error.starts_with("storage.restore.version: "), "{error}");
        let error = refused(|j| j["storage"]["app"] = "".into());
        assert!(error.starts_with("storage.app: "), "{error}");
        let error = refused(|j| j["storage"]["key"] = "00".into());
        assert!(
            error.starts_with("storage.key: unknown field `key`"),
            "{error}"
        );
        let error = refused(|j| {
            j["storage"].as_object_mut().unwrap().remove("outbox");
        });
        assert!(
            error.starts_with("storage: missing field `outbox`"),
            "{error}"
        );
    }

    #[test]
    fn defaults_fill_what_a_short_launch_leaves_out() {
        let launch = Launch::from_json(
            r#"{"app": {"uuid": "u", "application": "app:app", "domain": "u.localhost",
                        "code": "code.tar"},
                "runtime": {"image": "i", "cache_dir": "c"},
                "node": {"listen": "[::1]:7443", "work_dir": "w"},
                "quotes": {"provider": "gramine"},
                "tls": {"mode": "plain", "expires_at": "2099-01-01T00:00:00+02:00"}}"#,
        )
        .unwrap();
        assert_eq!(launch.app.healthcheck, "/health");
        assert_eq!(launch.runtime.enclave_size, "1G");
        assert_eq!(launch.timeouts, Timeouts::default());
        assert_eq!(launch.sandbox, Sandbox::Required);
        assert_eq!(launch.limits, Limits::default());
        assert_eq!(launch.storage, None);
        assert_eq!(
            launch.quotes,
            Quotes::Gramine {
                attestation_root: "/dev/attestation".into()
            }
        );
        assert_eq!(
            launch.tls.expires_at().unwrap().to_rfc3339(),
            "2098-12-31T22:00:00+00:00"
        );
    }

    #[test]
    fn confidential_vm_quotes_name_configfs_tsm_and_their_kind() {
        let quotes: Quotes = serde_json::from_str(r#"{"provider": "tdx"}"#).unwrap();
        assert_eq!(
            quotes,
            Quotes::Tdx {
                tsm_root: "/sys/kernel/config/tsm".into()
            }
        );
        assert_eq!(quotes.tee(), crate::tee::Tee::Tdx);
        let quotes: Quotes =
            serde_json::from_str(r#"{"provider": "sev-snp", "tsm_root": "/t"}"#).unwrap();
        assert_eq!(
            quotes,
            Quotes::SevSnp {
                tsm_root: "/t".into()
            }
        );
        assert_eq!(quotes.tee().quote_provider(), "sev-snp");
        let json = serde_json::to_value(&quotes).unwrap();
        assert_eq!(json["provider"], "sev-snp");
    }

    #[test]
    fn trailing_text_and_a_launch_that_is_not_an_object_are_refused() {
        let text = full().to_json();
        assert!(Launch::from_json(&format!("{text} {{}}")).is_err());
        let error = Launch::from_json("42").unwrap_err().to_string();
        assert!(error.starts_with("invalid type: integer `42`"), "{error}");
    }
}
