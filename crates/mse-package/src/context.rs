//! Deployment contexts: what a client keeps about each deployed app, in
//! `$MSE_CONF_PATH/context/<uuid>/` as `context.mse` (TOML) and `code.tar`.
//!
//! A context plus the plaintext code is enough to recompute the encrypted
//! package, hence the app's fingerprint. It holds the code key: it is written
//! with mode 0600 and never printed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::{CodeKey, Nonce};
use crate::pack::NonceMap;

/// Version written in new contexts.
pub const CONTEXT_VERSION: &str = "1.0";
/// File name of the context in its folder.
pub const CONTEXT_FILE: &str = "context.mse";
/// File name of the encrypted package in its folder.
pub const CODE_FILE: &str = "code.tar";

/// Why a context could not be read, written or found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// Not a UUID: refused before touching the file system.
    #[error("`{0}` is not an app UUID")]
    BadId(String),
    /// No context for that app.
    #[error("no context for app {0}")]
    NotFound(String),
    /// The file is not a context of a version this client reads.
    #[error("{0}: {1}")]
    Invalid(PathBuf, String),
    /// File-system failure.
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
}

/// Who provides the app's TLS certificate: the platform's wire type, which
/// a context file writes the same way (`self`, `owner`, `operator`).
pub use mse_api::apps::CertificateOrigin;

/// `context.mse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// Format version.
    pub version: String,
    /// What the owner configured.
    pub config: ContextConfig,
    /// What the platform assigned.
    pub instance: ContextInstance,
}

/// The `[config]` table of a context.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextConfig {
    /// App name.
    pub name: String,
    /// Project name.
    pub project: String,
    /// `module:variable`.
    pub python_application: String,
    /// Runtime image reference.
    pub docker: String,
    /// The code key, 64 hex digits.
    pub code_secret_key: String,
    /// The owner's certificate (PEM), in owner mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_app_certificate: Option<String>,
}

impl fmt::Debug for ContextConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextConfig")
            .field("name", &self.name)
            .field("project", &self.project)
            .field("python_application", &self.python_application)
            .field("docker", &self.docker)
            .field("code_secret_key", &"<redacted>")
            .field("ssl_app_certificate", &self.ssl_app_certificate.is_some())
            .finish()
    }
}

/// The `[instance]` table of a context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextInstance {
    /// The app's UUID.
    pub id: String,
    /// Domain of the node's configuration server.
    pub config_domain_name: String,
    /// The app's own domain (part of the fingerprint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    /// Digest of the runtime environment spec the image maps to (part of the fingerprint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_spec_digest: Option<String>,
    /// Enclave size, e.g. `"4G"`; the original client writes a number of
    /// megabytes (`1024`), read as the same size (`"1G"`).
    #[serde(deserialize_with = "enclave_size")]
    pub enclave_size: String,
    /// When the app stops.
    pub expires_at: DateTime<Utc>,
    /// Who provides the app's certificate.
    pub ssl_certificate_origin: CertificateOrigin,
    /// Nonce of every encrypted file, hex.
    pub nonces: BTreeMap<String, String>,
}

/// An enclave size as text (`"4G"`, `"512M"`), or as the original client
/// writes it, a number of megabytes: `1024` is `"1G"`, `512` is `"512M"`.
fn enclave_size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Text(String),
        Megabytes(u64),
    }
    Ok(match Size::deserialize(deserializer)? {
        Size::Text(text) => text,
        Size::Megabytes(mb) if mb > 0 && mb % 1024 == 0 => format!("{}G", mb / 1024),
        Size::Megabytes(mb) => format!("{mb}M"),
    })
}

impl Context {
    /// Parses `context.mse` text.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ContextError> {
        let context: Context = toml::from_str(text)
            .map_err(|e| ContextError::Invalid(path.to_path_buf(), e.message().to_string()))?;
        if context.version.split('.').next() != Some("1") {
            return Err(ContextError::Invalid(
                path.to_path_buf(),
                format!(
                    "context version {} is not supported (this client reads 1.x)",
                    context.version
                ),
            ));
        }
        check_id(&context.instance.id)?;
        context
            .key()
            .map_err(|e| ContextError::Invalid(path.to_path_buf(), e.to_string()))?;
        context
            .nonces()
            .map_err(|e| ContextError::Invalid(path.to_path_buf(), e))?;
        Ok(context)
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|_| unreachable!("a context always serializes"))
    }

    /// The code key.
    pub fn key(&self) -> Result<CodeKey, crate::CryptoError> {
        CodeKey::from_hex(&self.config.code_secret_key)
    }

    /// The nonce map, parsed.
    pub fn nonces(&self) -> Result<NonceMap, String> {
        self.instance
            .nonces
            .iter()
            .map(|(path, hex)| {
                Nonce::from_hex(hex)
                    .map(|n| (path.clone(), n))
                    .map_err(|e| format!("nonce of `{path}`: {e}"))
            })
            .collect()
    }
}

/// Turns a nonce map into the hex form a context stores.
pub fn nonces_to_hex(nonces: &NonceMap) -> BTreeMap<String, String> {
    nonces
        .iter()
        .map(|(k, v)| (k.clone(), v.to_hex()))
        .collect()
}

/// Refuses anything but a canonical hyphenated UUID, so an id can never
/// name a path outside the store.
pub fn check_id(id: &str) -> Result<(), ContextError> {
    let ok = id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if ok {
        Ok(())
    } else {
        Err(ContextError::BadId(id.to_string()))
    }
}

/// The folder of contexts, `$MSE_CONF_PATH/context`.
#[derive(Debug, Clone)]
pub struct ContextStore {
    root: PathBuf,
}

/// One stored context, for listing.
#[derive(Debug, Clone)]
pub struct StoredContext {
    /// Its folder.
    pub dir: PathBuf,
    /// The parsed context, or why it could not be read.
    pub context: Result<Context, String>,
}

impl ContextStore {
    /// The store under a client configuration folder.
    pub fn new(conf_dir: &Path) -> Self {
        ContextStore {
            root: conf_dir.join("context"),
        }
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of one app's context.
    pub fn dir(&self, id: &str) -> Result<PathBuf, ContextError> {
        check_id(id)?;
        Ok(self.root.join(id.to_ascii_lowercase()))
    }

    /// Saves a context and its package, replacing any earlier one for that app.
    pub fn save(&self, context: &Context, code_tar: &Path) -> Result<PathBuf, ContextError> {
        let dir = self.dir(&context.instance.id)?;
        let io = |p: &Path, e: std::io::Error| ContextError::Io(p.to_path_buf(), e);
        create_private_dirs(&dir).map_err(|e| io(&dir, e))?;
        let file = dir.join(CONTEXT_FILE);
        write_private(&file, context.to_toml().as_bytes()).map_err(|e| io(&file, e))?;
        let code = dir.join(CODE_FILE);
        if code_tar != code {
            std::fs::copy(code_tar, &code).map_err(|e| io(&code, e))?;
        }
        Ok(dir)
    }

    /// Loads one app's context.
    pub fn load(&self, id: &str) -> Result<Context, ContextError> {
        let file = self.dir(id)?.join(CONTEXT_FILE);
        let text = std::fs::read_to_string(&file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ContextError::NotFound(id.to_string()),
            _ => ContextError::Io(file.clone(), e),
        })?;
        Context::from_toml(&file, &text)
    }

    /// Every stored context, sorted by expiry then id; unreadable ones included.
    pub fn list(&self) -> Result<Vec<StoredContext>, ContextError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ContextError::Io(self.root.clone(), e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if check_id(&name).is_err() || !entry.path().is_dir() {
                continue;
            }
            out.push(StoredContext {
                dir: entry.path(),
                context: self.load(&name).map_err(|e| e.to_string()),
            });
        }
        out.sort_by(|a, b| {
            let key = |s: &StoredContext| s.context.as_ref().ok().map(|c| c.instance.expires_at);
            key(a).cmp(&key(b)).then_with(|| a.dir.cmp(&b.dir))
        });
        Ok(out)
    }

    /// Removes one app's context.
    pub fn remove(&self, id: &str) -> Result<(), ContextError> {
        let dir = self.dir(id)?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ContextError::NotFound(id.to_string()))
            }
            Err(e) => Err(ContextError::Io(dir, e)),
        }
    }

    /// Removes every context; returns how many there were.
    pub fn purge(&self) -> Result<usize, ContextError> {
        let count = self.list()?.len();
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(count),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(ContextError::Io(self.root.clone(), e)),
        }
    }
}

fn create_private_dirs(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// Writes a file readable by its owner only (created 0600, then replaced
/// atomically).
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let _ = std::fs::remove_file(&tmp);
        let mut file = options.open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_enclave_size_in_megabytes_as_the_original_client_writes_it_reads_as_ours() {
        #[derive(serde::Deserialize)]
        struct Size {
            #[serde(deserialize_with = "super::enclave_size")]
            enclave_size: String,
        }
        let read = |text: &str| toml::from_str::<Size>(text).unwrap().enclave_size;
        assert_eq!(read("enclave_size = 1024"), "1G");
        assert_eq!(read("enclave_size = 4096"), "4G");
        assert_eq!(read("enclave_size = 512"), "512M");
        assert_eq!(read("enclave_size = \"2G\""), "2G");
        assert!(toml::from_str::<Size>("enclave_size = -1").is_err());
    }

    use super::*;
    use chrono::TimeZone;

    const ID: &str = "0f4e8a52-9c1b-4d7e-a3f0-1b2c3d4e5f60";

    fn sample() -> Context {
        Context {
            version: CONTEXT_VERSION.into(),
            config: ContextConfig {
                name: "app".into(),
                project: "default".into(),
                python_application: "app:app".into(),
                docker: "ghcr.io/cosmian/mse-flask:20230124182826".into(),
                code_secret_key: "11".repeat(32),
                ssl_app_certificate: None,
            },
            instance: ContextInstance {
                id: ID.into(),
                config_domain_name: format!("{ID}.config.localhost"),
                domain_name: Some(format!("{ID}.localhost")),
                runtime_spec_digest: Some("ef".repeat(32)),
                enclave_size: "4G".into(),
                expires_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
                ssl_certificate_origin: CertificateOrigin::SelfSigned,
                nonces: BTreeMap::from([("app.py".to_string(), "22".repeat(24))]),
            },
        }
    }

    #[test]
    fn context_round_trips_through_toml() {
        let context = sample();
        let text = context.to_toml();
        assert!(text.contains("ssl_certificate_origin = \"self\""), "{text}");
        assert_eq!(Context::from_toml(Path::new("c"), &text).unwrap(), context);
    }

    #[test]
    fn context_of_another_major_version_is_refused() {
        let text = sample()
            .to_toml()
            .replace("version = \"1.0\"", "version = \"2.0\"");
        let err = Context::from_toml(Path::new("c"), &text).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
    }

    #[test]
    fn context_with_a_bad_key_or_nonce_is_refused() {
        let mut context = sample();
        context.config.code_secret_key = "zz".into();
        assert!(Context::from_toml(Path::new("c"), &context.to_toml()).is_err());
        let mut context = sample();
        context.instance.nonces.insert("x".into(), "12".into());
        assert!(Context::from_toml(Path::new("c"), &context.to_toml()).is_err());
    }

    #[test]
    fn debug_output_hides_the_code_key() {
        assert!(!format!("{:?}", sample()).contains(&"11".repeat(32)));
    }

    #[test]
    fn ids_that_are_not_uuids_never_become_paths() {
        let store = ContextStore::new(Path::new("/conf"));
        for bad in [
            "..",
            "../../etc",
            "",
            "0f4e8a52-9c1b-4d7e-a3f0-1b2c3d4e5f6/",
            "0f4e8a52/9c1b-4d7e-a3f0-1b2c3d4e5f60",
        ] {
            assert!(
                matches!(store.dir(bad), Err(ContextError::BadId(_))),
                "{bad}"
            );
        }
        assert_eq!(store.dir(ID).unwrap(), Path::new("/conf/context").join(ID));
    }

    #[test]
    fn store_saves_lists_and_removes_contexts() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ContextStore::new(tmp.path());
        let tar = tmp.path().join("code.tar");
        std::fs::write(&tar, b"tar").unwrap();
        let dir = store.save(&sample(), &tar).unwrap();
        assert_eq!(std::fs::read(dir.join(CODE_FILE)).unwrap(), b"tar");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(CONTEXT_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(store.load(ID).unwrap(), sample());
        assert_eq!(store.list().unwrap().len(), 1);
        store.remove(ID).unwrap();
        assert!(matches!(store.load(ID), Err(ContextError::NotFound(_))));
        assert!(matches!(store.remove(ID), Err(ContextError::NotFound(_))));
        assert_eq!(store.purge().unwrap(), 0);
    }
}
