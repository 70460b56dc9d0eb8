//! Text that others wrote, made safe to store and to print: a node host's
//! log lines and status texts, shown to an app's owner by the API and the
//! `mse` client. Control characters (C0 but newline and tab, DEL, C1) are
//! removed, so no escape sequence (screen clearing, window titles, OSC-8
//! links, cursor moves) reaches a terminal; what was around them stays.

/// The longest status text a host may report (a reason, a sandbox or
/// limits line, a certificate's issuer or error), in bytes.
pub const MAX_STATUS_TEXT: usize = 1024;

/// Whether `c` is removed from text shown to a terminal: C0 controls, DEL
/// and C1 controls (U+0080 to U+009F).
fn is_removed(c: char) -> bool {
    c.is_control()
}

/// `text` without control characters, keeping newlines and tabs (log
/// lines).
pub fn strip_controls(text: &str) -> String {
    text.chars()
        .filter(|&c| c == '\n' || c == '\t' || !is_removed(c))
        .collect()
}

/// Log bytes as text without control characters (newlines and tabs kept);
/// bytes that are not UTF-8 become U+FFFD.
pub fn log_text(bytes: &[u8]) -> String {
    strip_controls(&String::from_utf8_lossy(bytes))
}

/// Log bytes as they stream in (an app's output, cut anywhere): without C0
/// controls but newline and tab, DEL, nor the C1 controls that UTF-8 writes
/// as `0xC2 0x80..=0x9F` within the chunk. Everything else, invalid UTF-8
/// included, is kept as it is (a C1 cut between two chunks stays, for
/// [`log_text`] to remove where the log is read).
pub fn strip_control_bytes(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let control = |(i, &b): (usize, &u8)| {
        (b < 0x20 && b != b'\n' && b != b'\t')
            || b == 0x7F
            || (b == 0xC2 && bytes.get(i + 1).is_some_and(|n| (0x80..=0x9F).contains(n)))
    };
    // Most output has none: it is written as it came.
    if !bytes.iter().enumerate().any(control) {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == 0xC2 && bytes.get(i + 1).is_some_and(|n| (0x80..=0x9F).contains(n)) {
            i += 2;
            continue;
        }
        let c0 = b < 0x20 && b != b'\n' && b != b'\t';
        if !(c0 || b == 0x7F) {
            out.push(b);
        }
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// `text` on one line: newlines and tabs become spaces, other control
/// characters are removed (status texts, names).
pub fn one_line(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\n' | '\t' | '\r' => Some(' '),
            c if is_removed(c) => None,
            c => Some(c),
        })
        .collect()
}

/// `text` cut to at most `max` bytes (on a character boundary), with `…`
/// where it was cut.
pub fn capped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    const MORE: &str = "…";
    let mut end = max.saturating_sub(MORE.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MORE}", &text[..end])
}

/// A status text a host reported, as the API keeps it: on one line, with no
/// control character, at most [`MAX_STATUS_TEXT`] bytes.
pub fn status_text(text: &str) -> String {
    capped(&one_line(text), MAX_STATUS_TEXT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_bytes_lose_their_controls_and_keep_the_rest() {
        let raw = "a\x1b[2Jb\x1b]0;title\x07c\u{9b}31md\r\n\té\u{7f}".as_bytes();
        let clean = strip_control_bytes(raw);
        assert_eq!(
            std::str::from_utf8(&clean).unwrap(),
            "a[2Jb]0;titlec31md\n\té"
        );
        // A character cut between chunks is not harmed.
        let mut cut = strip_control_bytes(b"x\xC2").into_owned();
        cut.extend_from_slice(&strip_control_bytes(b"\xA3y"));
        assert_eq!(String::from_utf8(cut).unwrap(), "x£y");
        assert_eq!(&*strip_control_bytes(b"\xff\xfe ok"), b"\xff\xfe ok");
    }

    #[test]
    fn escape_sequences_lose_their_escape_and_text_stays() {
        let hostile = "a\x1b[2Jb\x1b]0;owned\x07c\x1b]8;;https://evil.test\x1b\\link\x1b]8;;\x1b\\d\u{9b}31me\r\n\tf\x7f\0";
        let clean = strip_controls(hostile);
        assert!(!clean
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'));
        assert_eq!(
            clean,
            "a[2Jb]0;ownedc]8;;https://evil.test\\link]8;;\\d31me\n\tf"
        );
        assert_eq!(one_line("x\ny\tz\x1b[1m"), "x y z[1m");
    }

    #[test]
    fn log_bytes_that_are_not_utf8_are_replaced_and_c1_is_removed() {
        // U+009B (CSI) in UTF-8, and a lone 0x9b byte.
        let bytes = b"a\xc2\x9b2Jb\x9bc\xff\n";
        assert_eq!(log_text(bytes), "a2Jb\u{fffd}c\u{fffd}\n");
    }

    #[test]
    fn long_texts_are_capped_on_a_character_boundary() {
        assert_eq!(capped("short", 10), "short");
        let long = "é".repeat(100);
        let cut = capped(&long, 11);
        assert!(cut.len() <= 11, "{cut}");
        assert!(cut.ends_with('…'));
        assert_eq!(status_text(&"x".repeat(5000)).len(), MAX_STATUS_TEXT);
    }
}
