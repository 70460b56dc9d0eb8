//! Building the encrypted, deterministic code tarball.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::crypto::{seal_in_place, CodeKey, Nonce, OVERHEAD};
use crate::walk::{walk, Entry, EntryKind};
use crate::PackError;

/// The file name left unencrypted wherever it appears.
pub const REQUIREMENTS: &str = "requirements.txt";
/// Suffix of encrypted files.
pub const ENC_SUFFIX: &str = ".enc";
/// Modification time of every entry: no timestamps in the package.
const MTIME: u64 = 0;
/// Bytes of plaintext encrypted together before being written.
const BATCH_BYTES: u64 = 4 * 1024 * 1024;
/// Encrypted batches waiting to be written, at most.
const QUEUE: usize = 4;

/// Map from a file's path in the code folder to its nonce.
pub type NonceMap = BTreeMap<String, Nonce>;

/// What packaging produced.
#[derive(Debug, Clone)]
pub struct Packed {
    /// The nonce of every encrypted file.
    pub nonces: NonceMap,
    /// SHA-256 of the tarball.
    pub sha256: [u8; 32],
    /// Files in the package.
    pub files: usize,
    /// Plaintext bytes read.
    pub plaintext_bytes: u64,
}

/// Where nonces come from.
#[derive(Debug, Clone, Copy)]
pub enum Nonces<'a> {
    /// Fresh random nonces (a new package).
    Random,
    /// Exactly these (reproducing a package); every file must have one and
    /// every one must name a file.
    Given(&'a NonceMap),
}

fn is_plain(relative: &str) -> bool {
    relative.rsplit('/').next() == Some(REQUIREMENTS)
}

/// Encrypts the code folder `root` into a tarball written to `out`.
pub fn pack(
    root: &std::path::Path,
    key: &CodeKey,
    nonces: Nonces<'_>,
    out: impl Write,
) -> Result<Packed, PackError> {
    let entries = walk(root)?;
    let files: Vec<&Entry> = entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::File(_)))
        .collect();

    let mut map = NonceMap::new();
    for entry in files.iter().filter(|e| !is_plain(&e.relative)) {
        let nonce = match nonces {
            Nonces::Random => Nonce::generate(),
            Nonces::Given(given) => *given
                .get(&entry.relative)
                .ok_or_else(|| PackError::MissingNonce(entry.relative.clone()))?,
        };
        map.insert(entry.relative.clone(), nonce);
    }
    if let Nonces::Given(given) = nonces {
        if let Some(extra) = given.keys().find(|k| !map.contains_key(*k)) {
            return Err(PackError::UnknownNonce(extra.clone()));
        }
    }

    let mut hashing = HashingWriter {
        inner: out,
        hasher: Sha256::new(),
    };
    let mut builder = tar::Builder::new(&mut hashing);
    let mut plaintext_bytes = 0u64;

    // Encryption (on the rayon pool) runs ahead of writing and hashing (on
    // this thread) by at most QUEUE batches, so memory stays bounded.
    let batches = batches(&entries);
    let (sender, receiver) =
        std::sync::mpsc::sync_channel::<Result<Vec<Option<Vec<u8>>>, PackError>>(QUEUE);
    let map_ref = &map;
    let entries_ref = &entries;
    std::thread::scope(|scope| -> Result<(), PackError> {
        scope.spawn(move || {
            for range in batches {
                let sealed: Result<Vec<Option<Vec<u8>>>, PackError> = entries_ref[range]
                    .par_iter()
                    .map(|entry| seal_entry(entry, key, map_ref))
                    .collect();
                let failed = sealed.is_err();
                if sender.send(sealed).is_err() || failed {
                    return;
                }
            }
        });
        let mut index = 0;
        for batch in receiver {
            for content in batch? {
                let entry = &entries[index];
                index += 1;
                match content {
                    None => append(
                        &mut builder,
                        tar::EntryType::Directory,
                        &format!("{}/", entry.relative),
                        0o755,
                        &[],
                    )?,
                    Some(data) => {
                        if let EntryKind::File(size) = entry.kind {
                            plaintext_bytes += size;
                        }
                        let name = if map_ref.contains_key(&entry.relative) {
                            format!("{}{ENC_SUFFIX}", entry.relative)
                        } else {
                            entry.relative.clone()
                        };
                        append(&mut builder, tar::EntryType::Regular, &name, 0o644, &data)?;
                    }
                }
            }
        }
        if index != entries.len() {
            return Err(PackError::Write {
                entry: None,
                source: std::io::Error::other("the encryption stopped early"),
            });
        }
        Ok(())
    })?;
    let write = |source| PackError::Write {
        entry: None,
        source,
    };
    builder.into_inner().map_err(write)?;
    hashing.inner.flush().map_err(write)?;
    Ok(Packed {
        nonces: map,
        sha256: hashing.hasher.finalize().into(),
        files: files.len(),
        plaintext_bytes,
    })
}

/// Splits the entries into consecutive ranges of at most BATCH_BYTES of file
/// content (or one larger file).
fn batches(entries: &[Entry]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut budget = 0u64;
    for (i, entry) in entries.iter().enumerate() {
        if let EntryKind::File(size) = entry.kind {
            if budget > 0 && budget + size > BATCH_BYTES {
                out.push(start..i);
                start = i;
                budget = 0;
            }
            budget += size;
        }
    }
    if start < entries.len() {
        out.push(start..entries.len());
    }
    out
}

/// Reads one entry and encrypts it unless it stays plain; `None` for folders.
fn seal_entry(entry: &Entry, key: &CodeKey, map: &NonceMap) -> Result<Option<Vec<u8>>, PackError> {
    match entry.kind {
        EntryKind::Dir => Ok(None),
        EntryKind::File(size) => {
            let io = |e: std::io::Error| PackError::Io(entry.source.clone(), e);
            let nonce = map.get(&entry.relative);
            let room = if nonce.is_some() { OVERHEAD } else { 0 };
            let mut buffer = Vec::with_capacity(room + size as usize);
            buffer.resize(room, 0);
            std::fs::File::open(&entry.source)
                .and_then(|mut file| file.read_to_end(&mut buffer))
                .map_err(io)?;
            if let Some(nonce) = nonce {
                seal_in_place(key, nonce, &mut buffer);
            }
            Ok(Some(buffer))
        }
    }
}

fn append(
    builder: &mut tar::Builder<impl Write>,
    kind: tar::EntryType,
    name: &str,
    mode: u32,
    data: &[u8],
) -> Result<(), PackError> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
    builder
        .append_data(&mut header, name, data)
        .map_err(|source| PackError::Write {
            entry: Some(name.to_string()),
            source,
        })
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
