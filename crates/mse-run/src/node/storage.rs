//! The app's persistent home (`[storage] persistent = true`, docs/keys.md):
//! restored from the platform's last snapshot before the app server starts,
//! written back into the node's outbox while it runs and once more after a
//! graceful stop, each snapshot announced by one `running` event.
//!
//! Sealing, chunking and every check are `mse_package::snapshot`'s; this
//! file moves files, confines the reads of the app's folder, and says what
//! happened. The outbox holds each new blob as a file named by its id and
//! each manifest as `manifest-<version>`, written under a temporary name
//! (starting with `.`) and renamed, mode 0600; the event comes after both.

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use chrono::Utc;
use mse_api::apps::AppStatus;
use mse_api::event::SnapshotWritten;
use mse_api::launch::{Restore, Storage, RESTORE_MANIFEST_FILE as MANIFEST_FILE};
use mse_package::snapshot::{self, Manifest, Snapshot, SnapshotError, StorageKey};
use mse_run::logs::LogSink;
use mse_run::status::{emit, Event};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use super::create_private_dir;

/// Where the node writes the app's secrets inside its home: the
/// configuration's, never a restored copy.
pub(super) const SECRETS_IN_HOME: &str = ".cache/mse/secrets.json";

/// The largest sealed manifest read (a 4 GiB home names 4096 blobs, about
/// 270 kB).
const MAX_MANIFEST: u64 = 4 << 20;

/// The largest blob read: a sealed chunk (its nonce and tag included).
const MAX_BLOB: u64 = snapshot::CHUNK as u64 + 1024;

/// The longest a snapshot of the home may take to read and seal (4 GiB at
/// the most).
const TAKE_TIMEOUT: Duration = Duration::from_secs(300);

/// The storage key sent with the configuration, from its 64 hex digits.
pub(crate) fn storage_key(hex: &str) -> Option<StorageKey> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex, bytes.as_mut()).ok()?;
    Some(StorageKey::from_bytes(*bytes))
}

/// Makes the app's home from its last snapshot when the launch names one
/// (an empty home otherwise), creates the outbox, and gives the write-back
/// that starts from there. `home` must be empty; on any error it is left
/// empty and the error says what failed.
pub(super) async fn open(
    storage: &Storage,
    key: StorageKey,
    previous: Option<StorageKey>,
    home: &Path,
    confine: bool,
    log: &LogSink,
) -> anyhow::Result<WriteBack> {
    create_private_dir(&storage.outbox)
        .with_context(|| format!("cannot create the outbox {}", storage.outbox.display()))?;
    let mut write_back = WriteBack {
        app: storage.app.clone(),
        key,
        cap: storage.cap_bytes,
        home: home.to_path_buf(),
        outbox: storage.outbox.clone(),
        period: storage.period,
        confine,
        version: 0,
        previous: None,
        skipped: None,
    };
    let Some(restore) = storage.restore.clone() else {
        log.note("persistent home: no snapshot yet, the app starts with an empty home");
        return Ok(write_back);
    };
    let (app, cap, key) = (
        storage.app.clone(),
        storage.cap_bytes,
        write_back.key.clone(),
    );
    let folder = home.to_path_buf();
    let (manifest, under_previous) = tokio::task::spawn_blocking(move || {
        let keys: Vec<&StorageKey> = std::iter::once(&key).chain(previous.as_ref()).collect();
        restore_home(&app, cap, &restore, &keys, &folder)
    })
    .await
    .map_err(|_| anyhow!("the restore of the persistent home stopped unexpectedly"))?
    .map_err(|why| anyhow!("cannot restore the app's persistent home: {why}"))?;
    log.note(&format!(
        "persistent home restored: snapshot version {}, {} bytes{}",
        manifest.version,
        manifest.size,
        if under_previous {
            ", sealed under the previous storage key: the next write-back seals it under the \
             new one"
        } else {
            ""
        }
    ));
    write_back.version = manifest.version;
    write_back.previous = Some(manifest.blobs);
    Ok(write_back)
}

/// Restores the snapshot in `restore.dir` into the empty folder `home`
/// (pure file work, blocking), under the first of `keys` its manifest
/// opens under (the current storage key, then the one it replaced); with
/// whether it was not the first. Its secrets file, from an earlier
/// configuration, is left out.
fn restore_home(
    app: &str,
    cap: u64,
    restore: &Restore,
    keys: &[&StorageKey],
    home: &Path,
) -> Result<(Manifest, bool), String> {
    let manifest_path = restore.dir.join(MANIFEST_FILE);
    let sealed = read_bounded(&manifest_path, MAX_MANIFEST).map_err(|e| {
        format!(
            "cannot read the snapshot's manifest {}: {e}",
            manifest_path.display()
        )
    })?;
    // Extracted beside its final place, in the home itself (which may be
    // a file system of its own), then moved in.
    let staged = home.join(format!(".mse-restore-{}", std::process::id()));
    let fetch = |id: &str| fetch_blob(&restore.dir, id);
    let mut restored = Err(SnapshotError::Manifest);
    let mut under_previous = false;
    for (i, key) in keys.iter().enumerate() {
        restored = snapshot::restore(&sealed, key, app, restore.version, fetch, &staged, cap);
        if !matches!(restored, Err(SnapshotError::Manifest)) {
            under_previous = i > 0;
            break;
        }
    }
    let (manifest, _) = restored.map_err(|e| restore_failure(e, restore))?;
    let moved = (|| -> std::io::Result<()> {
        match std::fs::remove_file(staged.join(SECRETS_IN_HOME)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for entry in std::fs::read_dir(&staged)? {
            let entry = entry?;
            std::fs::rename(entry.path(), home.join(entry.file_name()))?;
        }
        std::fs::remove_dir(&staged)
    })();
    if let Err(e) = moved {
        empty_folder(home);
        return Err(format!(
            "cannot move the restored files into {}: {e}",
            home.display()
        ));
    }
    Ok((manifest, under_previous))
}

/// What a refused restore says, for the owner and the operator.
fn restore_failure(error: SnapshotError, restore: &Restore) -> String {
    match error {
        SnapshotError::Manifest => "the snapshot's manifest does not open under the storage key \
                                    the configuration brought (a wrong key, or another app's \
                                    snapshot)"
            .into(),
        SnapshotError::Stale { expected, given } => format!(
            "the snapshot is version {given}, older than version {expected} the platform \
             committed: refusing to start on stale data"
        ),
        SnapshotError::Blob(id) => format!(
            "blob {id} of the snapshot is missing from {} or altered",
            restore.dir.display()
        ),
        SnapshotError::OverCap { cap } => {
            format!("the snapshot holds more than storage.size ({cap} bytes)")
        }
        other => other.to_string(),
    }
}

/// A blob of the restore folder, by its id (64 hex digits; anything else
/// names no file).
fn fetch_blob(dir: &Path, id: &str) -> Option<Vec<u8>> {
    let plain = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !plain {
        return None;
    }
    read_bounded(&dir.join(id), MAX_BLOB).ok()
}

/// The bytes of the file at `path`, refused past `max` bytes.
fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

/// Removes everything inside `folder`, keeping the folder.
fn empty_folder(folder: &Path) {
    if let Ok(entries) = std::fs::read_dir(folder) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = match entry.file_type() {
                Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path),
                _ => std::fs::remove_file(&path),
            };
        }
    }
}

/// The write-back of the home: what the last snapshot written holds, so
/// that an unchanged home writes nothing and a changed one only its new
/// blobs. Holds the storage key, wiped when it is dropped.
pub(super) struct WriteBack {
    app: String,
    key: StorageKey,
    cap: u64,
    home: PathBuf,
    outbox: PathBuf,
    /// How often the home is written back while the app runs.
    period: Duration,
    /// Whether the home is read by a thread confined to it (the app owns
    /// what is in it, and could swap a file for a link to the node's own
    /// files between two reads).
    confine: bool,
    /// The version last written, or restored (0: none).
    version: u64,
    /// The blob ids of that snapshot; `None` before the first.
    previous: Option<Vec<String>>,
    /// Why the last write-back was skipped, said once in the log for as
    /// long as it lasts.
    skipped: Option<String>,
}

impl WriteBack {
    /// Takes a snapshot of the home and, when it changed, writes it into
    /// the outbox: its new blobs, then its manifest. `Ok(None)`: unchanged,
    /// nothing written; `Err`: why nothing was written (over the cap, an
    /// unreadable file, a full disk), to try again next time.
    pub(super) fn write_back(&mut self) -> Result<Option<SnapshotWritten>, String> {
        let version = self.version + 1;
        let snapshot = self.take(version)?;
        if self.previous.as_ref() == Some(&snapshot.blob_ids) {
            return Ok(None);
        }
        let size =
            snapshot::open_manifest(&snapshot.sealed_manifest, &self.key, &self.app, version)
                .map_err(|e| e.to_string())?
                .size;
        let stored: HashSet<&String> = self.previous.iter().flatten().collect();
        let mut new_blobs: Vec<String> = Vec::new();
        for blob in &snapshot.blobs {
            if stored.contains(&blob.id) || new_blobs.contains(&blob.id) {
                continue;
            }
            write_private(&self.outbox, &blob.id, &blob.bytes)?;
            new_blobs.push(blob.id.clone());
        }
        let manifest = format!("manifest-{version}");
        write_private(&self.outbox, &manifest, &snapshot.sealed_manifest)?;
        self.version = version;
        self.previous = Some(snapshot.blob_ids.clone());
        Ok(Some(SnapshotWritten {
            version,
            manifest,
            blobs: snapshot.blob_ids,
            new_blobs,
            size,
        }))
    }

    /// One write-back, told: the snapshot's `running` event on standard
    /// output, or why it was skipped in the app's log (once for as long as
    /// the reason lasts).
    pub(super) fn step(&mut self, log: &LogSink) {
        match self.write_back() {
            Ok(written) => {
                if self.skipped.take().is_some() {
                    log.note("persistent home: write-back resumed");
                }
                if let Some(written) = written {
                    let mut event = Event::new(AppStatus::Running, Utc::now());
                    event.snapshot = Some(written);
                    emit(&event);
                }
            }
            Err(why) => {
                if self.skipped.as_ref() != Some(&why) {
                    log.note(&format!("persistent home not written back: {why}"));
                    self.skipped = Some(why);
                }
            }
        }
    }

    /// The snapshot of the home as `version`, read on a thread of its own
    /// (confined to the home when the app is confined: a confinement
    /// cannot be lifted) and waited for [`TAKE_TIMEOUT`] at most: a file
    /// the app swaps for a FIFO between two reads blocks that thread, never
    /// the node's stop.
    fn take(&self, version: u64) -> Result<Snapshot, String> {
        let (home, key, app) = (self.home.clone(), self.key.clone(), self.app.clone());
        let (cap, confine) = (self.cap, self.confine);
        let (sender, taken) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("home-reader".into())
            .spawn(move || {
                let snapshot = if confine {
                    confine_reads_to(&home)
                } else {
                    Ok(())
                }
                .and_then(|()| {
                    snapshot::take(&home, &key, &app, version, cap)
                        .map_err(|e| take_failure(&home, e))
                });
                let _ = sender.send(snapshot);
            })
            .map_err(|e| format!("cannot start the reader of the home: {e}"))?;
        match taken.recv_timeout(TAKE_TIMEOUT) {
            Ok(snapshot) => snapshot,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "reading the home took more than {} s (is a file in it blocking its reader?)",
                TAKE_TIMEOUT.as_secs()
            )),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err("the reader of the home stopped unexpectedly".into())
            }
        }
    }
}

/// What a refused snapshot of `home` says in the app's log: paths within
/// the home.
fn take_failure(home: &Path, error: SnapshotError) -> String {
    match error {
        SnapshotError::OverCap { cap } => format!(
            "the home holds more than storage.size ({cap} bytes); it is written back again once \
             it fits"
        ),
        SnapshotError::Io(path, e) => {
            let within = path.strip_prefix(home).unwrap_or(&path);
            format!("cannot read $HOME/{}: {e}", within.display())
        }
        other => other.to_string(),
    }
}

/// Confines the calling thread, for good, to reading under `dir`
/// (Landlock): a link the app makes to a file elsewhere then reads nothing.
fn confine_reads_to(dir: &Path) -> Result<(), String> {
    use landlock::{
        Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
        RulesetCreatedAttr, ABI,
    };
    let refused = |e: &dyn std::fmt::Display| format!("cannot confine the reader of the home: {e}");
    let abi = ABI::V1;
    let folder = PathFd::new(dir).map_err(|e| refused(&e))?;
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .and_then(|ruleset| ruleset.create())
        .and_then(|ruleset| ruleset.add_rule(PathBeneath::new(folder, AccessFs::from_read(abi))))
        .and_then(|ruleset| ruleset.restrict_self())
        .map_err(|e| refused(&e))?;
    Ok(())
}

/// Writes `bytes` as `dir/name`, mode 0600: under a temporary name first,
/// then renamed, so the platform never reads a partial file.
fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(name);
    let partial = dir.join(format!(".{name}.partial"));
    let written = (|| {
        let _ = std::fs::remove_file(&partial);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)?
            .write_all(bytes)?;
        std::fs::rename(&partial, &path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        format!("cannot write {}: {e}", path.display())
    })
}

/// The periodic write-back while the app runs, on a task of its own.
pub(super) struct Keeper {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Option<WriteBack>>,
}

/// Writes the home back every period until told to stop (or dropped).
pub(super) fn keep(write_back: WriteBack, log: Arc<LogSink>) -> Keeper {
    let (stop, mut stopped) = oneshot::channel();
    let period = write_back.period;
    let task = tokio::spawn(async move {
        let mut write_back = write_back;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = &mut stopped => return Some(write_back),
            }
            // A write-back in progress ends with its event before the
            // next stop is seen: no snapshot is written and left untold.
            let log = log.clone();
            let step = tokio::task::spawn_blocking(move || {
                write_back.step(&log);
                write_back
            });
            write_back = step.await.ok()?;
        }
    });
    Keeper { stop, task }
}

impl Keeper {
    /// Ends the periodic write-back once its current one is told; with
    /// `last` (the app server stopped gracefully), writes the home back
    /// once more. The storage key is wiped at the end.
    pub(super) async fn finish(self, last: bool, log: Arc<LogSink>) {
        let _ = self.stop.send(());
        let Ok(Some(mut write_back)) = self.task.await else {
            return;
        };
        if last {
            let _ = tokio::task::spawn_blocking(move || write_back.step(&log)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    const APP: &str = "u-1/default/shop";
    const MB: u64 = 1 << 20;

    fn key(byte: u8) -> StorageKey {
        StorageKey::from_bytes([byte; 32])
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// A node's folders: a home with the app's files, an outbox.
    struct Node {
        dir: tempfile::TempDir,
    }

    impl Node {
        fn new() -> Node {
            let node = Node {
                dir: tempfile::tempdir().unwrap(),
            };
            std::fs::create_dir_all(node.home().join("db/wal")).unwrap();
            std::fs::create_dir_all(node.outbox()).unwrap();
            std::fs::write(node.home().join("notes.txt"), "the owner's notes").unwrap();
            std::fs::write(
                node.home().join("db/wal/0001"),
                vec![7u8; 3 * MB as usize / 2],
            )
            .unwrap();
            std::fs::set_permissions(
                node.home().join("notes.txt"),
                std::fs::Permissions::from_mode(0o644),
            )
            .unwrap();
            node
        }

        fn home(&self) -> PathBuf {
            self.dir.path().join("home")
        }

        fn outbox(&self) -> PathBuf {
            self.dir.path().join("outbox")
        }

        fn write_back(&self, cap: u64) -> WriteBack {
            WriteBack {
                app: APP.into(),
                key: key(1),
                cap,
                home: self.home(),
                outbox: self.outbox(),
                period: Duration::from_secs(1),
                confine: false,
                version: 0,
                previous: None,
                skipped: None,
            }
        }

        /// The outbox's files by name.
        fn outbox_files(&self) -> HashMap<String, Vec<u8>> {
            std::fs::read_dir(self.outbox())
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        }

        /// A restore folder as the platform makes it from the outbox: the
        /// manifest of `version` and every blob written so far.
        fn restore_folder(&self, version: u64) -> Restore {
            let dir = self.dir.path().join(format!("restore-{version}"));
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in self.outbox_files() {
                if name == format!("manifest-{version}") {
                    std::fs::write(dir.join(MANIFEST_FILE), bytes).unwrap();
                } else if !name.starts_with("manifest-") {
                    std::fs::write(dir.join(name), bytes).unwrap();
                }
            }
            Restore { dir, version }
        }
    }

    fn restore_into(restore: &Restore, key: &StorageKey, home: &Path) -> Result<Manifest, String> {
        std::fs::create_dir_all(home).unwrap();
        restore_home(APP, 10 * MB, restore, &[key], home).map(|(manifest, _)| manifest)
    }

    fn entries(folder: &Path) -> usize {
        std::fs::read_dir(folder).unwrap().count()
    }

    #[test]
    fn a_home_written_back_restores_with_its_subfolders_private() {
        let node = Node::new();
        std::fs::create_dir_all(node.home().join(".cache/mse")).unwrap();
        std::fs::write(node.home().join(SECRETS_IN_HOME), "{\"old\": 1}").unwrap();
        let mut write_back = node.write_back(10 * MB);
        let written = write_back.write_back().unwrap().unwrap();
        assert_eq!(written.version, 1);
        assert_eq!(written.manifest, "manifest-1");
        assert_eq!(written.blobs, written.new_blobs);
        assert_eq!(written.blobs.len(), 2);
        let files = node.outbox_files();
        assert_eq!(files.len(), 3, "{:?}", files.keys());
        for name in files.keys() {
            assert_eq!(mode(&node.outbox().join(name)), 0o600, "{name}");
            assert!(!name.starts_with('.'), "{name}");
        }
        for bytes in files.values() {
            assert!(!bytes.windows(5).any(|w| w == b"notes"));
        }

        let restore = node.restore_folder(1);
        let home = node.dir.path().join("next-home");
        let manifest = restore_into(&restore, &key(1), &home).unwrap();
        assert_eq!(manifest.version, 1);
        assert_eq!(manifest.blobs, written.blobs);
        assert_eq!(manifest.size, written.size);
        assert_eq!(
            std::fs::read_to_string(home.join("notes.txt")).unwrap(),
            "the owner's notes"
        );
        assert_eq!(
            std::fs::read(home.join("db/wal/0001")).unwrap(),
            vec![7u8; 3 * MB as usize / 2]
        );
        // Private, whatever they were: the app owns them once started.
        assert_eq!(mode(&home.join("notes.txt")), 0o600);
        assert_eq!(mode(&home.join("db/wal")), 0o700);
        // The secrets come with the configuration, never from a snapshot;
        // no staging folder is left.
        assert!(!home.join(SECRETS_IN_HOME).exists());
        assert!(home.join(".cache/mse").is_dir());
        assert_eq!(entries(&home), 3, "notes.txt, db, .cache");
    }

    #[test]
    fn an_unchanged_home_writes_nothing_and_a_change_writes_only_its_new_chunks() {
        let node = Node::new();
        let mut write_back = node.write_back(10 * MB);
        let first = write_back.write_back().unwrap().unwrap();
        let before = node.outbox_files();
        assert_eq!(write_back.write_back().unwrap(), None);
        assert_eq!(node.outbox_files(), before);
        assert_eq!(write_back.version, 1);

        // A write near the end of the large file changes its last chunk.
        let mut data = vec![7u8; 3 * MB as usize / 2];
        *data.last_mut().unwrap() = 8;
        std::fs::write(node.home().join("db/wal/0001"), data).unwrap();
        let second = write_back.write_back().unwrap().unwrap();
        assert_eq!(second.version, 2);
        assert_eq!(second.blobs[0], first.blobs[0]);
        assert_eq!(second.new_blobs, vec![second.blobs[1].clone()]);
        assert_eq!(node.outbox_files().len(), before.len() + 2);
        assert!(node.outbox().join("manifest-2").is_file());

        // The next node starts from the restored version: an unchanged
        // home writes nothing there either.
        let restore = node.restore_folder(2);
        let home = node.dir.path().join("next-home");
        let manifest = restore_into(&restore, &key(1), &home).unwrap();
        let mut next = node.write_back(10 * MB);
        next.home = home;
        next.version = manifest.version;
        next.previous = Some(manifest.blobs);
        // Restored files are private: the tarball differs in their modes
        // only, so the chunks change but the version follows the head's.
        let third = next.write_back().unwrap().unwrap();
        assert_eq!(third.version, 3);
        assert_eq!(next.write_back().unwrap(), None);
    }

    #[test]
    fn a_home_sealed_under_the_previous_key_restores_and_is_resealed_under_the_new_one() {
        let node = Node::new();
        let mut write_back = node.write_back(10 * MB);
        let first = write_back.write_back().unwrap().unwrap();
        let restore = node.restore_folder(1);
        let home = node.dir.path().join("rotated-home");
        std::fs::create_dir_all(&home).unwrap();

        // Under a key that is neither: nothing.
        let why = restore_home(APP, 10 * MB, &restore, &[&key(3), &key(2)], &home).unwrap_err();
        assert!(why.contains("does not open under the storage key"), "{why}");
        assert_eq!(entries(&home), 0);

        let (manifest, under_previous) =
            restore_home(APP, 10 * MB, &restore, &[&key(2), &key(1)], &home).unwrap();
        assert!(under_previous);
        assert_eq!(manifest.version, 1);
        // The node writes back under the new key: every blob is new, and
        // the new manifest opens under the new key only.
        let mut next = node.write_back(10 * MB);
        next.key = key(2);
        next.home = home;
        next.version = manifest.version;
        next.previous = Some(manifest.blobs);
        let resealed = next.write_back().unwrap().unwrap();
        assert_eq!(resealed.version, 2);
        assert!(resealed.blobs.iter().all(|id| !first.blobs.contains(id)));
        let sealed = std::fs::read(node.outbox().join("manifest-2")).unwrap();
        assert!(snapshot::open_manifest(&sealed, &key(2), APP, 2).is_ok());
        assert!(snapshot::open_manifest(&sealed, &key(1), APP, 2).is_err());
    }

    #[test]
    fn a_wrong_key_a_missing_blob_or_a_stale_version_restores_nothing() {
        let node = Node::new();
        let mut write_back = node.write_back(10 * MB);
        write_back.write_back().unwrap().unwrap();
        let restore = node.restore_folder(1);
        let home = node.dir.path().join("next-home");

        let why = restore_into(&restore, &key(2), &home).unwrap_err();
        assert!(why.contains("does not open under the storage key"), "{why}");
        assert_eq!(entries(&home), 0);

        let stale = Restore {
            dir: restore.dir.clone(),
            version: 2,
        };
        let why = restore_into(&stale, &key(1), &home).unwrap_err();
        assert!(why.contains("version 1, older than version 2"), "{why}");
        assert_eq!(entries(&home), 0);

        let manifest = snapshot::open_manifest(
            &std::fs::read(restore.dir.join(MANIFEST_FILE)).unwrap(),
            &key(1),
            APP,
            1,
        )
        .unwrap();
        std::fs::remove_file(restore.dir.join(&manifest.blobs[1])).unwrap();
        let why = restore_into(&restore, &key(1), &home).unwrap_err();
        assert!(
            why.contains(&format!(
                "blob {} of the snapshot is missing",
                manifest.blobs[1]
            )),
            "{why}"
        );
        assert_eq!(entries(&home), 0);

        std::fs::remove_file(restore.dir.join(MANIFEST_FILE)).unwrap();
        let why = restore_into(&restore, &key(1), &home).unwrap_err();
        assert!(why.contains("cannot read the snapshot's manifest"), "{why}");
        assert_eq!(entries(&home), 0);
    }

    #[test]
    fn a_home_over_its_cap_is_skipped_and_said_once_until_it_fits() {
        let node = Node::new();
        let log_path = node.dir.path().join("app.log");
        let log = LogSink::create(&log_path).unwrap();
        let mut write_back = node.write_back(MB);
        let why = write_back.write_back().unwrap_err();
        assert!(
            why.contains("more than storage.size (1048576 bytes)"),
            "{why}"
        );
        write_back.step(&log);
        write_back.step(&log);
        assert_eq!(write_back.version, 0);
        assert!(node.outbox_files().is_empty());
        let said = std::fs::read_to_string(&log_path).unwrap();
        assert_eq!(said.matches("not written back").count(), 1, "{said}");

        std::fs::remove_file(node.home().join("db/wal/0001")).unwrap();
        write_back.step(&log);
        assert_eq!(write_back.version, 1);
        assert!(node.outbox().join("manifest-1").is_file());
        let said = std::fs::read_to_string(&log_path).unwrap();
        assert!(said.contains("write-back resumed"), "{said}");
    }

    #[test]
    fn a_storage_key_is_64_hex_digits() {
        assert_eq!(storage_key(&"ab".repeat(32)), Some(key(0xab)));
        assert_eq!(storage_key(&"AB".repeat(32)), Some(key(0xab)));
        for bad in ["", "ab", &"ab".repeat(33), &"zz".repeat(32)] {
            assert!(storage_key(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_confined_reader_reads_the_home_and_nothing_through_its_links() {
        if mse_run::sandbox::landlock_abi() < 1 {
            eprintln!("skipped: this kernel offers no Landlock");
            return;
        }
        let node = Node::new();
        let mut write_back = node.write_back(10 * MB);
        write_back.confine = true;
        assert!(write_back.write_back().unwrap().is_some());
        // A folder the app swapped for a link to the node's own files (as
        // it could between two reads of the snapshot).
        let secret = node.dir.path().join("node-secret");
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(secret.join("key.pem"), "node key").unwrap();
        std::os::unix::fs::symlink(&secret, node.home().join("swapped")).unwrap();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    confine_reads_to(&node.home()).unwrap();
                    assert!(std::fs::read(node.home().join("swapped/key.pem")).is_err());
                    assert!(std::fs::read(node.home().join("notes.txt")).is_ok());
                })
                .join()
                .unwrap();
        });
        // Only that thread was confined.
        assert!(std::fs::read(node.home().join("swapped/key.pem")).is_ok());
    }
}
