//! The platform's image catalog: the operator's `catalog.toml`, published at
//! `GET /catalog` (`crate::api::catalog`) for clients (which use it for `validate`, `test`, the
//! pre-check and the fingerprint), checked at deploy, and prepared in the
//! background at start so the first deploy of a default image does not wait.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use mse_runtime::{Catalog, EnvCache};
use sha2::{Digest, Sha256};

/// The catalog file in the data folder.
pub const FILE: &str = "catalog.toml";

/// SHA-256 of default catalogs shipped before this one: a data folder still
/// holding one of them, unedited, is moved to the current default.
const SUPERSEDED_DEFAULTS: &[&str] = &[
    "783f466c6492404c576077a4c1fe9e4bf6f8130cf2f28dbfa8b11d8c66c38e42",
    // The default of 17 images, whose mse-anonymization:20230810125234 had a
    // cosmian-anonymization released after the tag.
    "493f779eea295f910c822bce72e75efa98718a244a2917bbab214f23b73ee82d",
];

/// Reads and checks the catalog of the data folder at `root`.
pub fn read(root: &Path) -> Result<Catalog, mse_runtime::RuntimeError> {
    let path = root.join(FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        mse_runtime::RuntimeError::Catalog(path.display().to_string(), e.to_string())
    })?;
    Catalog::parse(&path.display().to_string(), &text)
}

/// Writes the default catalog where there is none, or where the file is an
/// older shipped default nobody edited. Returns what it did, for the log.
pub fn install_default(root: &Path) -> anyhow::Result<Option<&'static str>> {
    let path = root.join(FILE);
    match std::fs::read(&path) {
        Ok(old) => {
            let digest = hex::encode(Sha256::digest(&old));
            if SUPERSEDED_DEFAULTS.contains(&digest.as_str()) {
                super::dir::write_public(&path, mse_runtime::DEFAULT_CATALOG)?;
                Ok(Some(
                    "replaced the previous default catalog with the current one",
                ))
            } else {
                Ok(None)
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            super::dir::write_public(&path, mse_runtime::DEFAULT_CATALOG)?;
            Ok(Some("wrote the default catalog"))
        }
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// The catalog file as last read: parsed, checked and digested once per
/// change of the file, not at every request.
#[derive(Debug, Default)]
pub struct Cached {
    last: std::sync::Mutex<Option<(FileStamp, Arc<Published>)>>,
}

/// What tells that the file changed.
type FileStamp = (std::time::SystemTime, u64);

/// A checked catalog and its digest.
#[derive(Debug)]
pub struct Published {
    /// The images.
    pub catalog: Catalog,
    /// [`Catalog::digest`].
    pub digest: String,
    /// The enclave-signing key's signature of the catalog's reference
    /// measurements ([`Catalog::references_message`]), when it has some.
    pub references_signature: Option<String>,
}

/// Signs the catalog's reference measurements with the data folder's
/// enclave-signing key; `None` (said on the standard error) when there are
/// none or the key cannot sign, and verifiers then refuse the references.
fn sign_references(root: &Path, catalog: &Catalog) -> Option<String> {
    let message = catalog.references_message()?;
    let key_path = root.join("signer.key");
    let signed = std::fs::read_to_string(&key_path)
        .map_err(|e| format!("cannot read {}: {e}", key_path.display()))
        .and_then(|pem| mse_attest::signer::sign(&pem, &message).map_err(|e| e.to_string()));
    match signed {
        Ok(signature) => Some(signature),
        Err(e) => {
            eprintln!("the catalog's reference measurements are not signed: {e}");
            None
        }
    }
}

impl Cached {
    /// The catalog of the data folder at `root`, read again only when the
    /// file's modification time or size changed.
    pub fn get(&self, root: &Path) -> Result<Arc<Published>, mse_runtime::RuntimeError> {
        let path = root.join(FILE);
        let stamp = std::fs::metadata(&path)
            .and_then(|m| Ok((m.modified()?, m.len())))
            .map_err(|e| {
                mse_runtime::RuntimeError::Catalog(path.display().to_string(), e.to_string())
            })?;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, published)) = last.as_ref() {
            if *seen == stamp {
                return Ok(published.clone());
            }
        }
        let catalog = read(root)?;
        let references_signature = sign_references(root, &catalog);
        let published = Arc::new(Published {
            digest: catalog.digest(),
            catalog,
            references_signature,
        });
        *last = Some((stamp, published.clone()));
        Ok(published)
    }
}

/// Builds the environment of every image marked `prepare`, one after the
/// other (the default image first), telling the log. Environments already
/// built are only checked.
pub fn prepare(catalog: &Catalog, cache: &EnvCache) {
    // The image new apps name first (`mse scaffold`, `mse init`): the
    // first deploy on a new platform is most likely of it.
    let mut images: Vec<_> = catalog.images.iter().filter(|i| i.prepare).collect();
    images.sort_by_key(|i| i.reference != mse_config::DEFAULT_DOCKER_IMAGE);
    let total = images.len();
    for (n, spec) in images.into_iter().enumerate() {
        let n = n + 1;
        if cache.is_ready(spec) {
            println!("runtime image {n}/{total} {}: ready", spec.reference);
            continue;
        }
        println!(
            "runtime image {n}/{total} {}: building its environment with {}",
            spec.reference,
            cache.installer().name()
        );
        let started = Instant::now();
        match cache.ensure(spec, &mut |_| {}) {
            Ok(_) => println!(
                "runtime image {n}/{total} {}: ready (built in {:.1} s)",
                spec.reference,
                started.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!(
                "runtime image {n}/{total} {}: {e} (its first deploy will try again)",
                spec.reference
            ),
        }
    }
}
