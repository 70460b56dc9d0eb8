//! The app's log file: stdout, stderr and access log in one file, with the
//! runtime's own lines among them, kept to about [`KEEP`] bytes.
//!
//! Writes append; when the file reaches twice [`KEEP`] it is replaced by its
//! [`window`] (what a reader is shown, [`mse_api::logs`]), so trimming costs
//! little per write.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mse_api::logs::{window, KEEP, NODE_PREFIX};

/// The most of a file [`tail`] reads (its end).
const READ_MAX: u64 = 4 * KEEP;

/// An append-only log bounded to about [`KEEP`] bytes.
#[derive(Debug)]
pub struct LogSink {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    file: File,
    len: u64,
    /// Whether the next byte starts a line.
    line_start: bool,
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
            state: Mutex::new(State {
                file,
                len: 0,
                line_start: true,
            }),
        })
    }

    /// Appends `bytes`.
    pub fn write(&self, bytes: &[u8]) {
        // No escape sequence of the app's reaches its owner's terminal.
        let bytes = mse_api::text::strip_control_bytes(bytes);
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        self.append(&mut state, &bytes);
    }

    /// Appends one line from the runtime itself, marked as such, on a line
    /// of its own even when the app left its last line unfinished.
    pub fn note(&self, line: &str) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let start = if state.line_start { "" } else { "\n" };
        let line = mse_api::text::one_line(line);
        self.append(
            &mut state,
            format!("{start}{NODE_PREFIX}{line}\n").as_bytes(),
        );
    }

    fn append(&self, state: &mut State, bytes: &[u8]) {
        if bytes.is_empty() || state.file.write_all(bytes).is_err() {
            return;
        }
        state.len += bytes.len() as u64;
        state.line_start = bytes.ends_with(b"\n");
        if state.len >= 2 * KEEP {
            if let Ok(kept) = tail(&self.path) {
                let partial = self.path.with_extension("trim");
                if write_private(&partial, &kept).is_ok()
                    && std::fs::rename(&partial, &self.path).is_ok()
                {
                    if let Ok(reopened) = open_private(&self.path, false) {
                        state.file = reopened;
                        state.len = kept.len() as u64;
                    }
                }
            }
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    open_private(path, true)?.write_all(bytes)
}

/// The [`window`] of the log at `path`.
pub fn tail(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(READ_MAX)))?;
    let mut log = Vec::new();
    file.take(READ_MAX).read_to_end(&mut log)?;
    Ok(window(&log))
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
        let kept = String::from_utf8(tail(&path).unwrap()).unwrap();
        assert!(kept.len() as u64 <= KEEP);
        assert!(kept.len() as u64 > KEEP - 20, "{}", kept.len());
        assert!(kept.ends_with("line 019999\n"));
    }

    #[test]
    fn no_control_character_enters_the_log_and_a_note_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let sink = LogSink::create(&path).unwrap();
        sink.write(
            "\x1b[2J\x1b]0;owned\x07\x1b]8;;https://x\x1b\\link\u{9b}1m done\r\n".as_bytes(),
        );
        sink.note("refused\n[mse-run] sandbox: UNSANDBOXED");
        let shown = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        assert!(
            !shown.chars().any(|c| c.is_control() && c != '\n'),
            "{shown:?}"
        );
        let runtime_lines = shown
            .lines()
            .filter(|l| l.starts_with("[mse-run] "))
            .count();
        assert_eq!(runtime_lines, 1, "{shown:?}");
    }

    #[test]
    fn the_runtimes_own_lines_outlive_a_flood_of_app_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let sink = LogSink::create(&path).unwrap();
        sink.note("sandbox: landlock");
        sink.note("waiting for the configuration");
        sink.write(b"an unfinished line");
        sink.note("app server started");
        for i in 0..50_000 {
            sink.write(format!("GET /health {i} 503\n").as_bytes());
        }
        sink.note("error: the app did not answer /health");
        let shown = String::from_utf8(tail(&path).unwrap()).unwrap();
        assert!(shown.len() as u64 <= KEEP);
        assert!(
            shown.starts_with(
                "[mse-run] sandbox: landlock\n[mse-run] waiting for the configuration\n\
                 [mse-run] app server started\n[… earlier lines dropped]\nGET /health "
            ),
            "{}",
            &shown[..300]
        );
        assert!(shown
            .ends_with("GET /health 49999 503\n[mse-run] error: the app did not answer /health\n"));
        assert_eq!(shown.matches("[mse-run] ").count(), 4);
    }
}
