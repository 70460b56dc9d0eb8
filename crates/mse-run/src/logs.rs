//! The app's log: stdout, stderr and access log in one file, kept to its last
//! [`KEEP`] bytes. Writes append; when the file reaches twice that size its
//! last [`KEEP`] bytes replace it, so trimming costs little per write.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How much of the log is kept: 64 kB.
pub const KEEP: u64 = 64 * 1024;

/// An append-only log bounded to about [`KEEP`] bytes.
#[derive(Debug)]
pub struct LogSink {
    path: PathBuf,
    file: Mutex<(File, u64)>,
}

fn open_private(path: &Path, truncate: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    options.create(true).mode(0o600);
    if truncate {
        options.write(true).truncate(true);
    } else {
        options.append(true);
    }
    options.open(path)
}

impl LogSink {
    /// A new, empty log at `path` (mode 0600).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = open_private(path, true)?;
        Ok(LogSink {
            path: path.to_path_buf(),
            file: Mutex::new((file, 0)),
        })
    }

    /// Appends `bytes`.
    pub fn write(&self, bytes: &[u8]) {
        let Ok(mut guard) = self.file.lock() else {
            return;
        };
        let (file, len) = &mut *guard;
        if file.write_all(bytes).is_err() {
            return;
        }
        *len += bytes.len() as u64;
        if *len >= 2 * KEEP {
            if let Ok(kept) = tail(&self.path) {
                let partial = self.path.with_extension("trim");
                if std::fs::write(&partial, &kept).is_ok()
                    && std::fs::rename(&partial, &self.path).is_ok()
                {
                    if let Ok(reopened) = open_private(&self.path, false) {
                        *file = reopened;
                        *len = kept.len() as u64;
                    }
                }
            }
        }
    }

    /// Appends one line from the runtime itself, marked as such.
    pub fn note(&self, line: &str) {
        self.write(format!("[mse-run] {line}\n").as_bytes());
    }
}

/// The last [`KEEP`] bytes of the log at `path`.
pub fn tail(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(KEEP)))?;
    let mut out = Vec::with_capacity(KEEP as usize);
    file.take(KEEP).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_its_last_64_kb_and_never_grows_past_twice_that() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let sink = LogSink::create(&path).unwrap();
        for i in 0..20_000 {
            sink.write(format!("line {i:06}\n").as_bytes());
            assert!(std::fs::metadata(&path).unwrap().len() < 2 * KEEP);
        }
        let kept = tail(&path).unwrap();
        assert_eq!(kept.len() as u64, KEEP);
        assert!(String::from_utf8(kept).unwrap().ends_with("line 019999\n"));
    }
}
