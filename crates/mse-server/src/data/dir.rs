//! The operator's data folder: created on first start, reused afterwards.
//!
//! | file | what |
//! | --- | --- |
//! | `mse.db` | the SQLite store (unless `--database-url` names another) |
//! | `signer.key`, `signer.pub` | the RSA-3072 enclave-signing key (MRSIGNER) |
//! | `simulation-ca.pem`, `simulation-ca.key` | the CA of simulated quotes |
//! | `operator-ca.pem`, `operator-ca.key` | the CA of the platform's TLS certificate |
//! | `wildcard.pem`, `wildcard.key` | `*.<base domain>`, for `--untrusted-ssl` apps |
//! | `catalog.toml` | the image allow-list (the default one, to edit) |
//! | `admin.token` | the first admin's API token (mode 0600) |
//!
//! Every key is written with mode 0600 and the folder with 0700. A file that
//! exists is kept; a missing one is created, so an interrupted first start
//! completes on the next.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use chrono::{DateTime, Utc};
use mse_attest::simulation::SimulationCa;

/// The operator's public material and the paths of the rest.
#[derive(Debug)]
pub struct DataDir {
    /// The folder.
    pub root: PathBuf,
    /// The enclave-signing public key, PEM (SPKI).
    pub signer_pub_pem: String,
    /// The simulation CA certificate, PEM.
    pub simulation_ca_pem: String,
    /// The operator CA certificate, PEM.
    pub operator_ca_pem: String,
}

impl DataDir {
    /// A file of the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    mse_package::context::write_private(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a file others may read (certificates, the catalog).
pub fn write_public(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// An exclusive lock on the data folder, released when dropped.
#[derive(Debug)]
pub struct DirLock {
    _dir: std::fs::File,
}

/// Creates the folder (mode 0700) if missing and locks it, waiting for any
/// other process holding the lock: processes of one platform starting
/// together (its roles run apart) must not both create its keys or both
/// migrate its SQLite store.
#[allow(unsafe_code)]
pub fn lock(root: &Path) -> anyhow::Result<DirLock> {
    use std::os::unix::fs::DirBuilderExt;
    use std::os::unix::io::AsRawFd;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .with_context(|| format!("cannot create {}", root.display()))?;
    let dir =
        std::fs::File::open(root).with_context(|| format!("cannot open {}", root.display()))?;
    loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(DirLock { _dir: dir });
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).with_context(|| format!("cannot lock {}", root.display()));
        }
    }
}

/// The folder of uploads in progress, under `apps/`.
pub fn incoming_dir(root: &Path) -> PathBuf {
    root.join("apps").join(".incoming")
}

/// Creates a new upload file in [`incoming_dir`], locked (`flock`) for as
/// long as the returned file is open, so [`clean_incoming`] in another
/// process never removes it.
#[allow(unsafe_code)]
pub fn create_incoming(root: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::io::AsRawFd;
    let dir = incoming_dir(root);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(crate::store::new_id());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok((path, file))
}

/// Removes what interrupted uploads (a killed server) left in
/// [`incoming_dir`]: every entry no live upload holds locked. Returns how
/// many were removed.
#[allow(unsafe_code)]
pub fn clean_incoming(root: &Path) -> anyhow::Result<usize> {
    use std::os::unix::io::AsRawFd;
    let dir = incoming_dir(root);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            // A live upload holds its file locked: leave it.
            let Ok(file) = std::fs::File::open(&path) else {
                continue;
            };
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                continue;
            }
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("cannot remove {}", path.display()))?;
        removed += 1;
    }
    Ok(removed)
}

/// Creates what is missing in `root` and loads the public material.
pub fn init(root: &Path, base_domain: &str, now: DateTime<Utc>) -> anyhow::Result<DataDir> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .with_context(|| format!("cannot create {}", root.display()))?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", root.display()))?;

    let signer_pub = root.join("signer.pub");
    if !signer_pub.exists() {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
        // RSA-3072 with exponent 3: what SGX requires of the key that signs
        // an enclave's SIGSTRUCT.
        let key = rsa::RsaPrivateKey::new_with_exp(
            &mut rand::thread_rng(),
            3072,
            &rsa::BigUint::from(3u8),
        )
        .context("cannot generate the enclave-signing key")?;
        let private = key
            .to_pkcs8_pem(Default::default())
            .context("cannot encode the enclave-signing key")?;
        write_private(&root.join("signer.key"), &private)?;
        let public = key
            .to_public_key()
            .to_public_key_pem(Default::default())
            .context("cannot encode the signer public key")?;
        write_public(&signer_pub, &public)?;
    }

    let simulation_ca = root.join("simulation-ca.pem");
    if !simulation_ca.exists() {
        let ca = SimulationCa::generate(now).context("cannot create the simulation CA")?;
        write_private(&root.join("simulation-ca.key"), &ca.key_pem())?;
        write_public(&simulation_ca, ca.cert_pem())?;
    }

    let operator_ca = root.join("operator-ca.pem");
    if !operator_ca.exists() {
        let (ca_pem, ca_key) = operator_ca_new(now)?;
        write_private(&root.join("operator-ca.key"), &ca_key)?;
        write_public(&operator_ca, &ca_pem)?;
        let _ = std::fs::remove_file(root.join("wildcard.pem"));
    }
    let wildcard = root.join("wildcard.pem");
    if !wildcard.exists() {
        let (cert, key) = wildcard_new(
            &read(&operator_ca)?,
            &read(&root.join("operator-ca.key"))?,
            base_domain,
            now,
        )?;
        write_private(&root.join("wildcard.key"), &key)?;
        write_public(&wildcard, &cert)?;
    }

    Ok(DataDir {
        root: root.to_path_buf(),
        signer_pub_pem: read(&signer_pub)?,
        simulation_ca_pem: read(&simulation_ca)?,
        operator_ca_pem: read(&operator_ca)?,
    })
}

fn offset(t: DateTime<Utc>) -> anyhow::Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| anyhow!("date out of range: {e}"))
}

fn operator_ca_new(now: DateTime<Utc>) -> anyhow::Result<(String, String)> {
    let key = rcgen::KeyPair::generate().context("cannot generate the operator CA key")?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "MSE operator CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.not_before = offset(now - chrono::Duration::days(1))?;
    params.not_after = offset(now + chrono::Duration::days(3650))?;
    let cert = params
        .self_signed(&key)
        .context("cannot sign the operator CA")?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn wildcard_new(
    ca_pem: &str,
    ca_key_pem: &str,
    base_domain: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<(String, String)> {
    let ca_key = rcgen::KeyPair::from_pem(ca_key_pem).context("the operator CA key")?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca_pem, ca_key).context("the operator CA")?;
    let key = rcgen::KeyPair::generate().context("cannot generate the wildcard key")?;
    let mut params =
        rcgen::CertificateParams::new(vec![format!("*.{base_domain}"), base_domain.to_string()])
            .with_context(|| format!("`{base_domain}` is not a valid base domain"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("*.{base_domain}"));
    params.not_before = offset(now - chrono::Duration::days(1))?;
    params.not_after = offset(now + chrono::Duration::days(825))?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("cannot sign the wildcard certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The folder of an app's files on this host.
pub fn app_dir(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("apps").join(id)
}

/// Creates a folder only this process's user reads (0700).
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .with_context(|| format!("cannot create {}", dir.display()))
}
