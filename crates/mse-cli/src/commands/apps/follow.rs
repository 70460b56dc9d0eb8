//! `mse logs --follow`: the part of each new window of a log not printed
//! yet.

/// What `logs --follow` prints of a new log window.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Fresh {
    /// The text not printed yet.
    pub(super) text: String,
    /// True when the window moved past text never seen: some was lost.
    pub(super) gap: bool,
}

/// Turns successive windows of a log (what the platform shows of it each
/// time: whole lines, and once it is long, the runtime's kept lines and a
/// marker first) into the text not printed yet. Only whole lines are printed
/// until the end, so a half-written line is never printed twice.
#[derive(Debug, Default)]
pub(super) struct LogFollower {
    /// The start of the last window, up to the end of what was printed.
    printed: String,
}

impl LogFollower {
    /// The new part of `window`; with `last`, also a trailing unfinished line.
    pub(super) fn update(&mut self, window: &str, last: bool) -> Fresh {
        let (start, gap) = if window.starts_with(self.printed.as_str()) {
            (self.printed.len(), false)
        } else {
            // The window slid: what it kept of the runtime's lines was
            // printed when they came; the lines after the marker are whole.
            let body_start = mse_api::logs::after_kept(window.as_bytes());
            match overlap(&self.printed, &window[body_start..]) {
                Some(length) => (body_start + length, false),
                None => (body_start, true),
            }
        };
        let new = &window[start..];
        let take = if last {
            new.len()
        } else {
            new.rfind('\n').map_or(0, |i| i + 1)
        };
        let mut text = new[..take].to_string();
        if last && !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        self.printed = window[..start + take].to_string();
        Fresh { text, gap }
    }
}

/// How much of `body` (the whole lines of a slid window) was printed
/// already: the longest run of its first lines that ends `printed`, whole
/// lines there too. `None` when the window moved past everything printed.
fn overlap(printed: &str, body: &str) -> Option<usize> {
    // Longest first: with repeated lines, printing too little beats
    // printing twice.
    body.match_indices('\n')
        .map(|(i, _)| i + 1)
        .filter(|&end| end <= printed.len())
        .rev()
        .find(|&length| {
            printed.ends_with(&body[..length]) && {
                let before = &printed[..printed.len() - length];
                before.is_empty() || before.ends_with('\n')
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mse_api::logs::DROPPED;

    fn follow(windows: &[(&str, bool)]) -> (String, bool) {
        let mut follower = LogFollower::default();
        let mut out = String::new();
        let mut gap = false;
        for (window, last) in windows {
            let fresh = follower.update(window, *last);
            out.push_str(&fresh.text);
            gap |= fresh.gap;
        }
        (out, gap)
    }

    #[test]
    fn a_growing_log_is_printed_once_line_by_line() {
        let (out, gap) = follow(&[
            ("a\nb", false),
            ("a\nb\nc\n", false),
            ("a\nb\nc\n", false),
            ("a\nb\nc\nd", true),
        ]);
        assert_eq!(out, "a\nb\nc\nd\n");
        assert!(!gap);
    }

    #[test]
    fn a_sliding_window_prints_only_the_new_lines() {
        let slid = |kept: &str, lines: &str| format!("{kept}{DROPPED}{lines}");
        let windows = [
            ("[mse-run] started\none\ntwo\nthr".to_string(), false),
            (slid("[mse-run] started\n", "two\nthree\nfour\n"), false),
            (slid("[mse-run] started\n", "four\nfive\n"), false),
            (slid("[mse-run] started\n", "five\nsix"), true),
        ];
        let windows: Vec<(&str, bool)> = windows.iter().map(|(w, l)| (w.as_str(), *l)).collect();
        let (out, gap) = follow(&windows);
        assert_eq!(out, "[mse-run] started\none\ntwo\nthree\nfour\nfive\nsix\n");
        assert!(!gap);
    }

    #[test]
    fn repeated_lines_in_a_sliding_window_are_not_printed_twice() {
        let slid = format!("{DROPPED}x\nx\ny\n");
        let (out, _) = follow(&[("x\nx\nx\n", false), (&slid, true)]);
        assert_eq!(out, "x\nx\nx\ny\n");
    }

    #[test]
    fn a_long_log_read_through_the_platforms_window_comes_out_whole() {
        // Lines of varied lengths with multi-byte characters and the
        // runtime's own lines, growing by chunks that cut lines and
        // characters anywhere, trimmed as the node trims its log.
        let mut stream = Vec::new();
        for i in 0..20_000u32 {
            let line = if i % 1000 == 0 {
                format!("[mse-run] note {i}\n")
            } else {
                format!(
                    "{i} r\u{e9}ponse {}\n",
                    "\u{2713}".repeat((i % 17) as usize)
                )
            };
            stream.extend_from_slice(line.as_bytes());
        }
        let mut follower = LogFollower::default();
        let mut out = String::new();
        let mut file = Vec::new();
        let mut written = 0;
        let mut step = 1usize;
        while written < stream.len() {
            step = (step * 7919 + 13) % 20_000 + 1;
            let end = (written + step).min(stream.len());
            file.extend_from_slice(&stream[written..end]);
            written = end;
            if file.len() as u64 >= 2 * mse_api::logs::KEEP {
                file = mse_api::logs::window(&file);
            }
            let window = mse_api::logs::window(&file);
            let fresh = follower.update(&String::from_utf8_lossy(&window), written == stream.len());
            assert!(
                !fresh.gap,
                "nothing is lost when the log grows slower than the window"
            );
            out.push_str(&fresh.text);
        }
        assert_eq!(out, String::from_utf8(stream).unwrap());
    }

    #[test]
    fn a_window_past_everything_printed_says_lines_were_lost() {
        let slid = format!("{DROPPED}c\nd\n");
        let (out, gap) = follow(&[("a\nb\n", false), (&slid, true)]);
        assert_eq!(out, "a\nb\nc\nd\n");
        assert!(gap);
    }
}
