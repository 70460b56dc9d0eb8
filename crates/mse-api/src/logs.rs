//! What is shown of an app's log: the node keeps the app's stdout, stderr
//! and access log in one file, with the runtime's own lines (marked
//! [`NODE_PREFIX`]) among them, and shows at most [`KEEP`] bytes of it, its
//! [`window`]. The node trims its file to that window, and the client
//! follows a log through successive windows, so both read it the same way:
//! whole lines only and, when earlier lines were dropped, the runtime's own
//! lines among them first (up to [`NODE_KEEP`]), then [`DROPPED`], then the
//! last lines. However much the app writes, the lines that tell how its
//! node started (the sandbox, the fingerprint, the address) stay readable.

/// How much of the log is shown and kept: 64 kB.
pub const KEEP: u64 = 64 * 1024;
/// How much of the runtime's own lines is kept from the dropped part of the
/// log: 8 kB (part of [`KEEP`]).
pub const NODE_KEEP: usize = 8 * 1024;
/// The start of every line the runtime itself writes.
pub const NODE_PREFIX: &str = "[mse-run] ";
/// The line that stands for the lines dropped from a window.
pub const DROPPED: &str = "[… earlier lines dropped]\n";

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
