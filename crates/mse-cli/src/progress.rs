//! Steps of a long command, shown on stderr: a spinner per step on a
//! terminal, plain lines otherwise, each with its elapsed time.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// The steps of one command.
pub struct Steps {
    spinner: bool,
    current: Option<Current>,
    done: Vec<(String, Duration)>,
}

struct Current {
    key: String,
    label: String,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Steps {
    /// Steps shown on stderr; a spinner only when stderr is a terminal.
    pub fn new() -> Self {
        Steps {
            spinner: std::io::stderr().is_terminal(),
            current: None,
            done: Vec::new(),
        }
    }

    /// Starts a step; `key` names it in timings.
    pub fn start(&mut self, key: &str, label: &str) {
        self.finish_silently();
        let bar = if self.spinner {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(100));
            Some(bar)
        } else {
            eprintln!("… {label}");
            None
        };
        self.current = Some(Current {
            key: key.to_string(),
            label: label.to_string(),
            started: Instant::now(),
            bar,
        });
    }

    /// Says what the current step is doing now (e.g. what it waits for):
    /// the spinner's text on a terminal, an indented line otherwise.
    pub fn update(&mut self, doing: &str) {
        if let Some(current) = &self.current {
            match &current.bar {
                Some(bar) => bar.set_message(format!("{}: {doing}", current.label)),
                None => eprintln!("  {doing}"),
            }
        }
    }

    /// Ends the current step with a result line.
    pub fn done(&mut self, detail: &str) {
        self.end("✓", detail);
    }

    /// Ends the current step as skipped or weakened, with why.
    pub fn warn(&mut self, detail: &str) {
        self.end("!", detail);
    }

    /// Ends the current step as failed (the error is printed by the caller).
    pub fn fail(&mut self) {
        self.end("✗", "failed");
    }

    /// Runs `f` with the spinner hidden (for a prompt).
    pub fn suspend<T>(&self, f: impl FnOnce() -> T) -> T {
        match self.current.as_ref().and_then(|c| c.bar.as_ref()) {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// How long each finished step took, in order.
    pub fn timings(&self) -> &[(String, Duration)] {
        &self.done
    }

    fn end(&mut self, mark: &str, detail: &str) {
        let Some(current) = self.current.take() else {
            return;
        };
        let elapsed = current.started.elapsed();
        let line = if detail.is_empty() {
            format!("{mark} {} ({})", current.label, seconds(elapsed))
        } else {
            format!("{mark} {}: {detail} ({})", current.label, seconds(elapsed))
        };
        if let Some(bar) = current.bar {
            bar.finish_and_clear();
        }
        eprintln!("{line}");
        self.done.push((current.key, elapsed));
    }

    fn finish_silently(&mut self) {
        if let Some(current) = self.current.take() {
            if let Some(bar) = current.bar {
                bar.finish_and_clear();
            }
            self.done.push((current.key, current.started.elapsed()));
        }
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        if let Some(bar) = self.current.as_ref().and_then(|c| c.bar.as_ref()) {
            bar.finish_and_clear();
        }
    }
}

/// `0.42 s`, `12.3 s`, `2 min 5 s`.
pub fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 0.1 {
        format!("{} ms", duration.as_millis())
    } else if secs < 10.0 {
        format!("{secs:.2} s")
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        format!(
            "{} min {} s",
            duration.as_secs() / 60,
            duration.as_secs() % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(seconds(Duration::from_millis(420)), "0.42 s");
        assert_eq!(seconds(Duration::from_micros(3_400)), "3 ms");
        assert_eq!(seconds(Duration::from_millis(12_340)), "12.3 s");
        assert_eq!(seconds(Duration::from_secs(125)), "2 min 5 s");
    }

    #[test]
    fn finished_steps_are_timed_in_order() {
        let mut steps = Steps {
            spinner: false,
            current: None,
            done: Vec::new(),
        };
        steps.start("a", "first");
        steps.done("");
        steps.start("b", "second");
        steps.warn("skipped");
        let keys: Vec<&str> = steps.timings().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
    }
}
