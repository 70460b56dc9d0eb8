//! Unpacking and decrypting a code package into a private folder, refusing
//! anything that is not exactly what [`crate::pack`] produces.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::crypto::{open, CodeKey};
use crate::pack::{ENC_SUFFIX, REQUIREMENTS};
use crate::UnpackError;

/// Bounds on what a package may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most entries (files and folders).
    pub max_entries: usize,
    /// Most bytes of any one file.
    pub max_file_bytes: u64,
    /// Most bytes of all files together.
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 100_000,
            max_file_bytes: 1024 * 1024 * 1024,
            max_total_bytes: 4 * 1024 * 1024 * 1024,
        }
    }
}

/// What was unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// Files written (decrypted or plain).
    pub files: usize,
    /// Folders created.
    pub dirs: usize,
}

/// Unpacks the tarball read from `tar` into `dest`, which must not exist.
/// A package without any encrypted file is refused
/// ([`UnpackError::NothingEncrypted`]): any key would open it. On any error
/// nothing is left at `dest`.
pub fn unpack(
    tar: impl Read,
    key: &CodeKey,
    dest: &Path,
    limits: Limits,
) -> Result<Unpacked, UnpackError> {
    let mut encrypted = 0usize;
    let done = extract_into(tar, dest, limits, |relative, raw, data| {
        let file_name = relative
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(stem) = file_name.strip_suffix(ENC_SUFFIX) {
            if stem.is_empty() {
                return Err(UnpackError::UnsafePath(raw.display().to_string()));
            }
            let plaintext = open(key, &data)
                .map_err(|e| UnpackError::Decrypt(relative.display().to_string(), e))?;
            encrypted += 1;
            Ok((relative.with_file_name(stem), plaintext))
        } else if file_name == REQUIREMENTS {
            Ok((relative.to_path_buf(), data))
        } else {
            Err(UnpackError::Unencrypted(relative.display().to_string()))
        }
    })?;
    if encrypted == 0 {
        // extract_into checks nothing of what files hold: undo here.
        let _ = std::fs::remove_dir_all(dest);
        return Err(UnpackError::NothingEncrypted);
    }
    Ok(done)
}

/// What a file of the tarball becomes: its path inside the folder and its
/// bytes, given its checked relative path, its raw name and its content.
pub(crate) type Decode<'a> =
    dyn FnMut(&Path, &Path, Vec<u8>) -> Result<(PathBuf, Vec<u8>), UnpackError> + 'a;

/// Extracts the tarball read from `tar` into `dest`, which must not exist:
/// folders and regular files only, every path relative and plain, each file
/// passed through `decode`, within `limits`; private modes (0700, 0600).
/// On any error nothing is left at `dest`.
pub(crate) fn extract_into(
    tar: impl Read,
    dest: &Path,
    limits: Limits,
    mut decode: impl FnMut(&Path, &Path, Vec<u8>) -> Result<(PathBuf, Vec<u8>), UnpackError>,
) -> Result<Unpacked, UnpackError> {
    if dest.exists() {
        return Err(UnpackError::DestinationExists(dest.to_path_buf()));
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .ok_or_else(|| UnpackError::DestinationExists(dest.to_path_buf()))?;
    let staging = parent.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    create_private_dir(&staging).map_err(|e| UnpackError::Io(staging.clone(), e))?;
    match extract(tar, &staging, limits, &mut decode) {
        Ok(done) => {
            std::fs::rename(&staging, dest).map_err(|e| {
                let _ = std::fs::remove_dir_all(&staging);
                UnpackError::Io(dest.to_path_buf(), e)
            })?;
            Ok(done)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

fn write_private_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(data)
}

/// Checks a package path: relative, made of plain components only.
fn safe_relative(raw: &Path) -> Result<PathBuf, UnpackError> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return Err(UnpackError::UnsafePath(raw.display().to_string())),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(UnpackError::UnsafePath(raw.display().to_string()));
    }
    Ok(out)
}

fn extract(
    tar: impl Read,
    staging: &Path,
    limits: Limits,
    decode: &mut Decode<'_>,
) -> Result<Unpacked, UnpackError> {
    let mut archive = tar::Archive::new(tar);
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut done = Unpacked { files: 0, dirs: 0 };
    let mut total: u64 = 0;
    let entries = archive
        .entries()
        .map_err(|e| UnpackError::Malformed(e.to_string()))?;
    for (count, entry) in entries.enumerate() {
        if count >= limits.max_entries {
            return Err(UnpackError::TooLarge(format!(
                "more than {} entries",
                limits.max_entries
            )));
        }
        let mut entry = entry.map_err(|e| UnpackError::Malformed(e.to_string()))?;
        let raw = entry
            .path()
            .map_err(|e| UnpackError::Malformed(format!("entry name: {e}")))?
            .into_owned();
        let relative = safe_relative(&raw)?;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                if !seen.insert(relative.clone()) {
                    return Err(UnpackError::Duplicate(relative.display().to_string()));
                }
                let path = staging.join(&relative);
                ensure_parents(staging, &relative)?;
                create_private_dir(&path).map_err(|e| UnpackError::Io(path.clone(), e))?;
                done.dirs += 1;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry
                    .header()
                    .size()
                    .map_err(|e| UnpackError::Malformed(e.to_string()))?;
                if size > limits.max_file_bytes {
                    return Err(UnpackError::TooLarge(format!(
                        "{} is {size} bytes",
                        relative.display()
                    )));
                }
                total = total.saturating_add(size);
                if total > limits.max_total_bytes {
                    return Err(UnpackError::TooLarge(format!(
                        "more than {} bytes in all",
                        limits.max_total_bytes
                    )));
                }
                let mut data = Vec::with_capacity(size as usize);
                entry
                    .by_ref()
                    .take(size)
                    .read_to_end(&mut data)
                    .map_err(|e| UnpackError::Malformed(format!("{}: {e}", relative.display())))?;
                if (data.len() as u64) != size {
                    return Err(UnpackError::Malformed(format!(
                        "{} is truncated",
                        relative.display()
                    )));
                }
                let (target, plaintext) = decode(&relative, &raw, data)?;
                if !seen.insert(target.clone()) {
                    return Err(UnpackError::Duplicate(target.display().to_string()));
                }
                ensure_parents(staging, &target)?;
                let path = staging.join(&target);
                write_private_file(&path, &plaintext)
                    .map_err(|e| UnpackError::Io(path.clone(), e))?;
                done.files += 1;
            }
            other => {
                return Err(UnpackError::UnsupportedEntry(
                    relative.display().to_string(),
                    format!("{other:?}"),
                ));
            }
        }
    }
    Ok(done)
}

/// The number of encrypted files (`*.enc` regular entries) of the tarball
/// read from `tar`, without a key: a package with none holds no code, and
/// any key would open it. Reads at most `limits.max_entries` entries.
pub fn encrypted_files(tar: impl Read, limits: Limits) -> Result<usize, UnpackError> {
    let mut archive = tar::Archive::new(tar);
    let entries = archive
        .entries()
        .map_err(|e| UnpackError::Malformed(e.to_string()))?;
    let mut encrypted = 0;
    for (count, entry) in entries.enumerate() {
        if count >= limits.max_entries {
            return Err(UnpackError::TooLarge(format!(
                "more than {} entries",
                limits.max_entries
            )));
        }
        let entry = entry.map_err(|e| UnpackError::Malformed(e.to_string()))?;
        let regular = matches!(
            entry.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        );
        let path = entry
            .path()
            .map_err(|e| UnpackError::Malformed(format!("entry name: {e}")))?;
        let named_enc = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(ENC_SUFFIX))
            .is_some_and(|stem| !stem.is_empty());
        if regular && named_enc {
            encrypted += 1;
        }
    }
    Ok(encrypted)
}

/// Creates the missing parent folders of `relative` inside `staging`,
/// refusing to go through anything that is not a folder we created.
fn ensure_parents(staging: &Path, relative: &Path) -> Result<(), UnpackError> {
    let mut current = staging.to_path_buf();
    if let Some(parent) = relative.parent() {
        for part in parent.components() {
            current.push(part);
            match std::fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(UnpackError::UnsafePath(relative.display().to_string())),
                Err(_) => {
                    create_private_dir(&current)
                        .map_err(|e| UnpackError::Io(current.clone(), e))?;
                }
            }
        }
    }
    Ok(())
}
