//! The app's log: stdout, stderr and access log in one file, with the
//! runtime's own lines (marked [`NODE_PREFIX`]) among them, kept to about
//! [`KEEP`] bytes.
//!
//! Writes append; when the file reaches twice [`KEEP`] it is replaced by its
//! [`window`], so trimming costs little per write. The window is what a
//! reader is shown: whole lines only, and when earlier lines were dropped,
//! the runtime's own lines among them first (up to [`NODE_KEEP`]), then
//! [`DROPPED`], then the last lines. However much the app writes, the lines
//! that tell how its node started (the sandbox, the fingerprint, the address)
//! stay readable.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How much of the log is shown and kept: 64 kB.
pub const KEEP: u64 = 64 * 1024;
/// How much of the runtime's own lines is kept from the dropped part of the
/// log: 8 kB (part of [`KEEP`]).
pub const NODE_KEEP: usize = 8 * 1024;
/// The start of every line the runtime itself writes.
pub const NODE_PREFIX: &str = "[mse-run] ";
/// The line that stands for the lines dropped from a window.
pub const DROPPED: &str = "[… earlier lines dropped]\n";
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

/// What is shown of a log, at most [`KEEP`] bytes: all of it when it fits;
/// otherwise the runtime's lines kept from before (those of a window made
/// earlier, then those among the lines dropped now, up to [`NODE_KEEP`],
/// oldest first), [`DROPPED`], and the last lines, starting at a whole line.
///
/// A window's window is itself, and the window of a log that grew from a
/// window keeps what that window kept.
pub fn window(log: &[u8]) -> Vec<u8> {
    let keep = KEEP as usize;
    if log.len() <= keep {
        return log.to_vec();
    }
    let body_start = after_kept(log);
    let mut head = match body_start {
        0 => Vec::new(),
        n => log[..n - DROPPED.len()].to_vec(),
    };
    let body = &log[body_start..];
    // Lines of `body` before `dropped` are dropped; the runtime's among them
    // join the head, which leaves less room for the rest: repeat until the
    // cut stays put (the head only grows, and is bounded).
    let mut dropped = 0;
    loop {
        let room = keep.saturating_sub(DROPPED.len() + head.len());
        let cut = body.len().saturating_sub(room);
        let cut = match line_start_from(body, cut) {
            // One line longer than the room: its end is better than nothing.
            None => cut,
            Some(start) => start,
        };
        if cut <= dropped {
            break;
        }
        for line in body[dropped..cut].split_inclusive(|&b| b == b'\n') {
            if line.starts_with(NODE_PREFIX.as_bytes())
                && line.ends_with(b"\n")
                && head.len() + line.len() <= NODE_KEEP
            {
                head.extend_from_slice(line);
            }
        }
        dropped = cut;
    }
    let mut out = head;
    out.extend_from_slice(DROPPED.as_bytes());
    out.extend_from_slice(&body[dropped..]);
    out
}

/// Where the lines after the runtime's kept lines and [`DROPPED`] start, in
/// a window that has them; 0 in a log that does not start that way.
pub fn after_kept(log: &[u8]) -> usize {
    let mut at = 0;
    while at < log.len() {
        let rest = &log[at..];
        if rest.starts_with(DROPPED.as_bytes()) {
            return at + DROPPED.len();
        }
        if !rest.starts_with(NODE_PREFIX.as_bytes()) {
            return 0;
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(end) => at += end + 1,
            None => return 0,
        }
    }
    0
}

/// The first index at or after `from` where a line starts (`from` itself
/// when a line ends just before it); `None` when no line starts there.
fn line_start_from(bytes: &[u8], from: usize) -> Option<usize> {
    if from == 0 || bytes.get(from - 1) == Some(&b'\n') {
        return Some(from);
    }
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| from + i + 1)
        .filter(|&start| start < bytes.len())
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
    fn a_long_log_is_shown_from_a_whole_line_after_a_marker() {
        let mut log = Vec::new();
        for i in 0..10_000 {
            log.extend_from_slice(format!("line {i} {}\n", "x".repeat(i % 13)).as_bytes());
        }
        let shown = String::from_utf8(window(&log)).unwrap();
        assert!(shown.len() as u64 <= KEEP);
        let mut lines = shown.lines();
        assert_eq!(lines.next(), Some(DROPPED.trim_end()));
        let first = lines.next().unwrap();
        let n: usize = first.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(first, format!("line {n} {}", "x".repeat(n % 13)), "whole");
        assert!(shown.ends_with("line 9999 xx\n"));
        assert_eq!(window(shown.as_bytes()), shown.as_bytes(), "stable");
        // A short log is shown as it is, unfinished last line included.
        assert_eq!(window(b"a\nb"), b"a\nb");
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

    #[test]
    fn the_kept_lines_are_bounded_and_the_oldest_stay() {
        let mut log = Vec::new();
        for i in 0..5_000 {
            log.extend_from_slice(format!("{NODE_PREFIX}note {i:04}\n").as_bytes());
            log.extend_from_slice(format!("app line {i}\n").as_bytes());
        }
        let shown = window(&log);
        let text = String::from_utf8(shown).unwrap();
        assert!(text.len() as u64 <= KEEP);
        assert!(text.starts_with("[mse-run] note 0000\n[mse-run] note 0001\n"));
        let head = &text[..after_kept(text.as_bytes())];
        assert!(head.len() <= NODE_KEEP + DROPPED.len());
        assert!(head.len() > NODE_KEEP - 40);
        assert!(text.ends_with("app line 4999\n"));
    }

    #[test]
    fn a_line_longer_than_the_window_shows_its_end() {
        let mut log = b"[mse-run] started\n".to_vec();
        log.extend(std::iter::repeat_n(b'y', 3 * KEEP as usize));
        let text = String::from_utf8(window(&log)).unwrap();
        assert!(text.starts_with("[mse-run] started\n[… earlier lines dropped]\nyyy"));
        assert_eq!(text.len() as u64, KEEP);
    }
}
