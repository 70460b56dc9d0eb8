//! Encrypted snapshots of an app's persistent folder (its `$HOME` under
//! `[storage] persistent = true`, docs/keys.md): what a node writes back to
//! the platform and what the app's next node restores. The platform keeps
//! only ciphertext, as content-addressed blobs and a sealed manifest.
//!
//! A snapshot is a deterministic tarball of the folder (folders and regular
//! files, sorted, modes kept, times zeroed), cut into chunks of at most
//! [`CHUNK`] bytes. Each chunk is sealed (XSalsa20-Poly1305) under the
//! storage key with a nonce derived from the key and the chunk, so an
//! unchanged chunk seals to the same blob and is not sent again; a blob is
//! named by the SHA-256 of its bytes. The manifest (app, version, size,
//! blob ids) is sealed under the storage key too.
//!
//! Writing back is crash-safe when the store follows [`Head::commit`]: the
//! blobs go first, then the manifest, which replaces the head only if it is
//! a later version and every blob it names is stored. A write torn at any
//! point leaves the previous head whole.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::crypto::{open, seal, CodeKey, Nonce, NONCE_LEN};
use crate::unpack::{extract_into, Limits, Unpacked};
use crate::UnpackError;

/// The largest chunk of a snapshot's tarball, in bytes.
pub const CHUNK: usize = 1024 * 1024;
/// The `format` of every manifest.
pub const FORMAT: &str = "mse-snapshot-v1";
/// Domain separator of the chunk nonces.
const NONCE_DOMAIN: &[u8] = b"mse-snapshot-nonce-v1";
/// Domain separator of the manifest nonces.
const MANIFEST_DOMAIN: &[u8] = b"mse-snapshot-manifest-v1";

/// Why a snapshot could not be taken, stored or restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Reading the folder failed.
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    /// The folder holds more than the app may keep.
    #[error("the persistent folder holds more than its {cap} bytes (storage.size); nothing was written back")]
    OverCap {
        /// The cap, in bytes.
        cap: u64,
    },
    /// The manifest does not open, or is another app's.
    #[error("the snapshot's manifest does not open under this storage key, or is another app's")]
    Manifest,
    /// An older snapshot than the one the store last committed.
    #[error("the snapshot is version {given}, older than version {expected}")]
    Stale {
        /// The version expected at least.
        expected: u64,
        /// The version given.
        given: u64,
    },
    /// A blob is missing, or its bytes are not its name's.
    #[error("blob {0} is missing or altered")]
    Blob(String),
    /// The restored tarball is refused.
    #[error("the snapshot does not restore: {0}")]
    Restore(#[source] UnpackError),
}

/// The key the app's snapshots are sealed under: from the key service,
/// bound to the app name and its policy. Never printed; wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct StorageKey([u8; 32]);

impl StorageKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> StorageKey {
        StorageKey(bytes)
    }

    fn code_key(&self) -> CodeKey {
        CodeKey::from(self.0)
    }

    /// A nonce that depends on the key, a domain and the bytes only.
    fn nonce(&self, domain: &[u8], bytes: &[u8]) -> Nonce {
        let mut hash = Sha256::new();
        hash.update(domain);
        hash.update(self.0);
        hash.update(bytes);
        let digest = hash.finalize();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&digest[..NONCE_LEN]);
        Nonce(nonce)
    }
}

impl std::fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageKey(<redacted>)")
    }
}

/// What a snapshot holds, sealed: the app it is of, its version and its
/// blobs in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The app name it belongs to (`owner/project/name`).
    pub app: String,
    /// One more than the snapshot it replaces; the first is 1.
    pub version: u64,
    /// Bytes of the tarball.
    pub size: u64,
    /// The blobs' names (SHA-256 of their bytes, hex), in order.
    pub blobs: Vec<String>,
}

/// A blob: sealed chunk bytes and their name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// SHA-256 of `bytes`, hex.
    pub id: String,
    /// The sealed chunk.
    pub bytes: Vec<u8>,
}

/// A snapshot ready to write back: what the store is sent.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Its manifest, sealed.
    pub sealed_manifest: Vec<u8>,
    /// The blob names the manifest lists, in the clear, so the store can
    /// check it holds them all before committing (names reveal nothing but
    /// the number of chunks).
    pub blob_ids: Vec<String>,
    /// The blobs themselves (the store needs only those it lacks).
    pub blobs: Vec<Blob>,
    /// Its version.
    pub version: u64,
}

fn blob_id(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Takes a snapshot of `dir` as version `version` of `app`, refusing a
/// folder whose tarball exceeds `cap` bytes. Symbolic links and special
/// files are left out (an app's data is its files).
pub fn take(
    dir: &Path,
    key: &StorageKey,
    app: &str,
    version: u64,
    cap: u64,
) -> Result<Snapshot, SnapshotError> {
    let tar = tarball(dir, cap)?;
    let code_key = key.code_key();
    let mut blobs: Vec<Blob> = Vec::new();
    for chunk in tar.chunks(CHUNK) {
        let bytes = seal(&code_key, &key.nonce(NONCE_DOMAIN, chunk), chunk);
        blobs.push(Blob {
            id: blob_id(&bytes),
            bytes,
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        app: app.into(),
        version,
        size: tar.len() as u64,
        blobs: blobs.iter().map(|b| b.id.clone()).collect(),
    };
    // Serializing a struct of strings and numbers cannot fail.
    let plain = serde_json::to_vec(&manifest).unwrap_or_default();
    let sealed_manifest = seal(&code_key, &key.nonce(MANIFEST_DOMAIN, &plain), &plain);
    Ok(Snapshot {
        sealed_manifest,
        blob_ids: manifest.blobs,
        blobs,
        version,
    })
}

/// Opens a sealed manifest of `app` at `min_version` or later.
pub fn open_manifest(
    sealed: &[u8],
    key: &StorageKey,
    app: &str,
    min_version: u64,
) -> Result<Manifest, SnapshotError> {
    let plain = open(&key.code_key(), sealed).map_err(|_| SnapshotError::Manifest)?;
    let manifest: Manifest = serde_json::from_slice(&plain).map_err(|_| SnapshotError::Manifest)?;
    if manifest.format != FORMAT || manifest.app != app {
        return Err(SnapshotError::Manifest);
    }
    if manifest.version < min_version {
        return Err(SnapshotError::Stale {
            expected: min_version,
            given: manifest.version,
        });
    }
    Ok(manifest)
}

/// Restores the snapshot whose sealed manifest is `sealed` into `dest`
/// (which must not exist), fetching each blob with `fetch`. Every blob is
/// checked against its name and opened; the tarball is extracted with the
/// package's checks (plain relative paths, folders and files only) within
/// `cap` bytes. On any error nothing is left at `dest`.
pub fn restore(
    sealed: &[u8],
    key: &StorageKey,
    app: &str,
    min_version: u64,
    mut fetch: impl FnMut(&str) -> Option<Vec<u8>>,
    dest: &Path,
    cap: u64,
) -> Result<(Manifest, Unpacked), SnapshotError> {
    let manifest = open_manifest(sealed, key, app, min_version)?;
    if manifest.size > cap {
        return Err(SnapshotError::OverCap { cap });
    }
    let code_key = key.code_key();
    let mut tar = Vec::with_capacity(manifest.size as usize);
    for id in &manifest.blobs {
        let bytes = fetch(id).ok_or_else(|| SnapshotError::Blob(id.clone()))?;
        if blob_id(&bytes) != *id {
            return Err(SnapshotError::Blob(id.clone()));
        }
        let chunk = open(&code_key, &bytes).map_err(|_| SnapshotError::Blob(id.clone()))?;
        tar.extend_from_slice(&chunk);
        if tar.len() as u64 > manifest.size {
            return Err(SnapshotError::Blob(id.clone()));
        }
    }
    if tar.len() as u64 != manifest.size {
        return Err(SnapshotError::Manifest);
    }
    let limits = Limits {
        max_entries: 1_000_000,
        max_file_bytes: cap,
        max_total_bytes: cap,
    };
    let done = extract_into(&tar[..], dest, limits, |relative, _, data| {
        Ok((relative.to_path_buf(), data))
    })
    .map_err(SnapshotError::Restore)?;
    tar.zeroize();
    Ok((manifest, done))
}

/// The deterministic tarball of `dir`'s folders and regular files.
fn tarball(dir: &Path, cap: u64) -> Result<Vec<u8>, SnapshotError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut total: u64 = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let folder = dir.join(&relative);
        let mut names: Vec<_> = std::fs::read_dir(&folder)
            .map_err(|e| SnapshotError::Io(folder.clone(), e))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| SnapshotError::Io(folder.clone(), e))?;
        names.sort();
        let mut subfolders = Vec::new();
        for name in names {
            let path = folder.join(&name);
            let child = relative.join(&name);
            let meta =
                std::fs::symlink_metadata(&path).map_err(|e| SnapshotError::Io(path.clone(), e))?;
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            #[cfg(unix)]
            header.set_mode(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777);
            if meta.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder
                    .append_data(&mut header, &child, std::io::empty())
                    .map_err(|e| SnapshotError::Io(path.clone(), e))?;
                subfolders.push(child);
            } else if meta.is_file() {
                total = total.saturating_add(meta.len()).saturating_add(1024);
                if total > cap {
                    return Err(SnapshotError::OverCap { cap });
                }
                let mut data = Vec::with_capacity(meta.len() as usize);
                std::fs::File::open(&path)
                    .and_then(|mut f| f.read_to_end(&mut data))
                    .map_err(|e| SnapshotError::Io(path.clone(), e))?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                builder
                    .append_data(&mut header, &child, &data[..])
                    .map_err(|e| SnapshotError::Io(path.clone(), e))?;
                data.zeroize();
            }
        }
        // Depth first, in name order.
        stack.extend(subfolders.into_iter().rev());
    }
    let tar = builder
        .into_inner()
        .map_err(|e| SnapshotError::Io(dir.to_path_buf(), e))?;
    if tar.len() as u64 > cap {
        return Err(SnapshotError::OverCap { cap });
    }
    Ok(tar)
}

/// What the store holds of an app's snapshots: the committed head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    /// The committed version; 0 when none is.
    pub version: u64,
}

/// Why the store refuses to commit a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// Not later than the head (a replay, or a node that wrote from an
    /// older snapshot than another one did meanwhile).
    #[error("the snapshot is version {given}; the platform holds version {head} already")]
    NotLater {
        /// The head's version.
        head: u64,
        /// The version given.
        given: u64,
    },
    /// A blob the manifest names is not stored yet.
    #[error("blob {0} is not stored: send the blobs before the manifest")]
    MissingBlob(String),
}

impl Head {
    /// Whether the store may make `version`, naming `blob_ids`, the new head,
    /// given which blobs it holds: only a later version than the head (a
    /// node whose write-back of one version failed goes on with the next),
    /// and only once every blob is stored. The store applies it in one
    /// transaction with the head's update (compare and swap on the version).
    pub fn commit(
        &self,
        version: u64,
        blob_ids: &[String],
        stored: impl Fn(&str) -> bool,
    ) -> Result<Head, CommitError> {
        if version <= self.version {
            return Err(CommitError::NotLater {
                head: self.version,
                given: version,
            });
        }
        if let Some(missing) = blob_ids.iter().find(|id| !stored(id)) {
            return Err(CommitError::MissingBlob(missing.clone()));
        }
        Ok(Head { version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const APP: &str = "u-1/default/shop";
    const MB: u64 = 1024 * 1024;

    fn key(byte: u8) -> StorageKey {
        StorageKey::from_bytes([byte; 32])
    }

    fn home() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("db/wal")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "the owner's private notes").unwrap();
        std::fs::write(dir.path().join("db/wal/0001"), vec![7u8; 3 * CHUNK / 2]).unwrap();
        std::fs::write(dir.path().join("db/empty"), b"").unwrap();
        dir
    }

    fn store(snapshot: &Snapshot) -> HashMap<String, Vec<u8>> {
        snapshot
            .blobs
            .iter()
            .map(|b| (b.id.clone(), b.bytes.clone()))
            .collect()
    }

    #[test]
    fn a_snapshot_restores_the_folder_and_holds_no_plaintext() {
        let dir = home();
        let snapshot = take(dir.path(), &key(1), APP, 1, 10 * MB).unwrap();
        assert_eq!(snapshot.blobs.len(), 2);
        for bytes in snapshot
            .blobs
            .iter()
            .map(|b| &b.bytes)
            .chain([&snapshot.sealed_manifest])
        {
            assert!(!bytes.windows(7).any(|w| w == b"private" || w == b"db/wal/"));
        }
        let blobs = store(&snapshot);
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("home");
        let (manifest, done) = restore(
            &snapshot.sealed_manifest,
            &key(1),
            APP,
            1,
            |id| blobs.get(id).cloned(),
            &dest,
            10 * MB,
        )
        .unwrap();
        assert_eq!(manifest.version, 1);
        assert_eq!(done.files, 3);
        assert_eq!(
            std::fs::read_to_string(dest.join("notes.txt")).unwrap(),
            "the owner's private notes"
        );
        assert_eq!(
            std::fs::read(dest.join("db/wal/0001")).unwrap(),
            vec![7u8; 3 * CHUNK / 2]
        );
        assert_eq!(std::fs::read(dest.join("db/empty")).unwrap(), b"");
    }

    #[test]
    fn unchanged_chunks_seal_to_the_same_blobs_so_only_changes_are_sent() {
        let dir = home();
        let first = take(dir.path(), &key(1), APP, 1, 10 * MB).unwrap();
        let again = take(dir.path(), &key(1), APP, 2, 10 * MB).unwrap();
        assert_eq!(first.blob_ids, again.blob_ids);
        // A write near the end of the large file changes the last chunk only.
        let mut data = vec![7u8; 3 * CHUNK / 2];
        *data.last_mut().unwrap() = 8;
        std::fs::write(dir.path().join("db/wal/0001"), data).unwrap();
        let changed = take(dir.path(), &key(1), APP, 3, 10 * MB).unwrap();
        assert_eq!(changed.blob_ids[0], first.blob_ids[0]);
        assert_ne!(changed.blob_ids[1], first.blob_ids[1]);
        // Another key shares nothing.
        let other = take(dir.path(), &key(2), APP, 1, 10 * MB).unwrap();
        assert!(other.blob_ids.iter().all(|id| !first.blob_ids.contains(id)));
    }

    #[test]
    fn a_wrong_key_app_version_or_altered_blob_restores_nothing() {
        let dir = home();
        let snapshot = take(dir.path(), &key(1), APP, 4, 10 * MB).unwrap();
        let blobs = store(&snapshot);
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("home");
        let attempt = |key: &StorageKey, app: &str, min: u64, blobs: &HashMap<String, Vec<u8>>| {
            restore(
                &snapshot.sealed_manifest,
                key,
                app,
                min,
                |id| blobs.get(id).cloned(),
                &dest,
                10 * MB,
            )
        };
        assert!(matches!(
            attempt(&key(2), APP, 1, &blobs),
            Err(SnapshotError::Manifest)
        ));
        assert!(matches!(
            attempt(&key(1), "u-2/default/shop", 1, &blobs),
            Err(SnapshotError::Manifest)
        ));
        assert!(matches!(
            attempt(&key(1), APP, 5, &blobs),
            Err(SnapshotError::Stale {
                expected: 5,
                given: 4
            })
        ));
        let mut altered = blobs.clone();
        let first = &snapshot.blob_ids[0];
        altered.get_mut(first).unwrap()[40] ^= 1;
        assert!(matches!(
            attempt(&key(1), APP, 1, &altered),
            Err(SnapshotError::Blob(id)) if id == *first
        ));
        // A blob swapped for another valid blob under the same name.
        let mut swapped = blobs.clone();
        let second = blobs[&snapshot.blob_ids[1]].clone();
        swapped.insert(first.clone(), second);
        assert!(attempt(&key(1), APP, 1, &swapped).is_err());
        let mut missing = blobs.clone();
        missing.remove(first);
        assert!(attempt(&key(1), APP, 1, &missing).is_err());
        assert!(!dest.exists());
    }

    #[test]
    fn a_folder_over_its_cap_is_refused_when_taken_and_when_restored() {
        let dir = home();
        assert!(matches!(
            take(dir.path(), &key(1), APP, 1, MB),
            Err(SnapshotError::OverCap { cap }) if cap == MB
        ));
        let snapshot = take(dir.path(), &key(1), APP, 1, 10 * MB).unwrap();
        let blobs = store(&snapshot);
        let out = tempfile::tempdir().unwrap();
        let small = restore(
            &snapshot.sealed_manifest,
            &key(1),
            APP,
            1,
            |id| blobs.get(id).cloned(),
            &out.path().join("home"),
            MB,
        );
        assert!(matches!(small, Err(SnapshotError::OverCap { .. })));
    }

    #[test]
    fn the_head_moves_only_to_a_later_version_once_its_blobs_are_stored() {
        let dir = home();
        let snapshot = take(dir.path(), &key(1), APP, 1, 10 * MB).unwrap();
        let head = Head::default();
        // A write torn after the first blob: the manifest is refused, the
        // head stays where it was.
        let partial: HashMap<String, Vec<u8>> = snapshot.blobs[..1]
            .iter()
            .map(|b| (b.id.clone(), b.bytes.clone()))
            .collect();
        assert_eq!(
            head.commit(1, &snapshot.blob_ids, |id| partial.contains_key(id)),
            Err(CommitError::MissingBlob(snapshot.blob_ids[1].clone()))
        );
        let all = store(&snapshot);
        let head = head
            .commit(1, &snapshot.blob_ids, |id| all.contains_key(id))
            .unwrap();
        assert_eq!(head.version, 1);
        // A replay of version 1, or an older one.
        for version in [0, 1] {
            assert_eq!(
                head.commit(version, &snapshot.blob_ids, |_| true),
                Err(CommitError::NotLater {
                    head: 1,
                    given: version
                })
            );
        }
        // A writer whose version 2 never arrived goes on with version 3.
        assert_eq!(
            head.commit(3, &snapshot.blob_ids, |id| all.contains_key(id)),
            Ok(Head { version: 3 })
        );
    }

    #[cfg(unix)]
    #[test]
    fn links_and_special_files_are_left_out_and_unsafe_tarballs_refused() {
        let dir = home();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let snapshot = take(dir.path(), &key(1), APP, 1, 10 * MB).unwrap();
        let blobs = store(&snapshot);
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("home");
        restore(
            &snapshot.sealed_manifest,
            &key(1),
            APP,
            1,
            |id| blobs.get(id).cloned(),
            &dest,
            10 * MB,
        )
        .unwrap();
        assert!(std::fs::symlink_metadata(dest.join("link")).is_err());
    }
}
