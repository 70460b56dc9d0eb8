//! The validated configuration: every path absolute, every value checked.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use crate::expiry::Expiry;
use crate::fields::PythonApplication;
use crate::image::ImageReference;

/// A valid `mse.toml`, as the rest of the system consumes it.
#[derive(Debug, Clone, Serialize)]
pub struct AppConfig {
    /// The file this configuration was read from.
    pub path: PathBuf,
    /// Application name, unique among the running apps of its project.
    pub name: String,
    /// Project the app belongs to.
    pub project: String,
    /// Resource (plan) the app runs on.
    pub resource: String,
    /// `expiration_date` as written, in UTC.
    pub expiration_date: Option<DateTime<Utc>>,
    /// The `[code]` section.
    pub code: CodeConfig,
    /// The `[ssl]` section, unless absent or ignored by `--untrusted-ssl`.
    pub ssl: Option<SslConfig>,
    /// The `[storage]` section, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageConfig>,
    /// When the app will stop, after the seed's rules.
    pub expiry: Expiry,
}

/// The `[code]` section.
#[derive(Debug, Clone, Serialize)]
pub struct CodeConfig {
    /// Absolute path of the code folder.
    pub location: PathBuf,
    /// The runtime image reference, as written.
    pub docker: String,
    /// The same reference, parsed.
    #[serde(skip)]
    pub image: ImageReference,
    /// `module:variable` of the WSGI/ASGI application.
    #[serde(serialize_with = "as_display")]
    pub python_application: PythonApplication,
    /// The file `python_application`'s module resolves to.
    pub module_file: PathBuf,
    /// Path the node polls until the app answers.
    pub healthcheck_endpoint: String,
    /// Absolute path of the JSON secrets file, if any.
    pub secrets: Option<PathBuf>,
}

/// The `[ssl]` section: the owner's own domain and certificate.
#[derive(Debug, Clone, Serialize)]
pub struct SslConfig {
    /// The app's own domain name.
    pub domain_name: String,
    /// Absolute path of the PEM private key (never read into the model).
    pub private_key: PathBuf,
    /// Absolute path of the PEM full chain.
    pub certificate: PathBuf,
    /// The leaf certificate's notBefore.
    pub certificate_not_before: DateTime<Utc>,
    /// The leaf certificate's notAfter.
    pub certificate_not_after: DateTime<Utc>,
}

/// The `[storage]` section: whether the app's `$HOME` outlives its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StorageConfig {
    /// `persistent`: the home is kept, encrypted, across restarts,
    /// reschedules and upgrades (default false: it goes with the node).
    pub persistent: bool,
    /// `storage.size` in bytes: the most the kept home may hold (default
    /// [`crate::fields::DEFAULT_STORAGE_SIZE`]).
    pub size_bytes: u64,
}

impl StorageConfig {
    /// The cap of the persistent home, in bytes, when the app keeps one.
    pub fn persistent_size(&self) -> Option<u64> {
        self.persistent.then_some(self.size_bytes)
    }
}

fn as_display<T: std::fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}
