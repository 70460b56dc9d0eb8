//! Waits on a condition, always bounded.
//!
//! A test that waits for something another process does (a line printed, a
//! folder removed, a status reached) polls it here: every [`POLL`], for at
//! most the timeout it names. When the time is up, [`until`] panics with
//! what it waited for and the last thing it saw, so a failure says why
//! instead of only that it took too long.
//!
//! What a look returns decides when the wait ends ([`Look`]):
//! - `bool`: done when `true`;
//! - `Option<T>`: done with `T` when `Some`;
//! - `Result<T, S>`: done with `T` when `Ok`; `Err` holds what was seen
//!   instead (shown when the time is up).
//!
//! ```
//! use std::time::Duration;
//! use mse_testkit::wait;
//!
//! let start = std::time::Instant::now();
//! let waited = wait::until("a few milliseconds passed", Duration::from_secs(5), || {
//!     let elapsed = start.elapsed();
//!     if elapsed >= Duration::from_millis(20) {
//!         Ok(elapsed)
//!     } else {
//!         Err(format!("{elapsed:?}"))
//!     }
//! });
//! assert!(waited >= Duration::from_millis(20));
//! ```

use std::fmt::Display;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How long a wait sleeps between two looks.
pub const POLL: Duration = Duration::from_millis(50);

/// What one look at a condition gives: the value the wait returns, or what
/// was seen instead.
pub trait Look {
    /// What the wait returns once the condition holds.
    type Value;
    /// `Ok` once the condition holds; else what was seen, if anything.
    fn look(self) -> Result<Self::Value, Option<String>>;
}

impl Look for bool {
    type Value = ();
    fn look(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

impl<T> Look for Option<T> {
    type Value = T;
    fn look(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, S: Display> Look for Result<T, S> {
    type Value = T;
    fn look(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(seen.to_string()))
    }
}

/// Polls `look` until the condition holds or `timeout` passes: the value,
/// or `None` when the time was up (for the caller to decide what then).
pub fn within<L: Look>(timeout: Duration, mut look: impl FnMut() -> L) -> Option<L::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(value) = look().look() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `look` until the condition holds; panics, naming `what` and the
/// last thing seen, when it does not within `timeout`.
pub fn until<L: Look>(what: &str, timeout: Duration, mut look: impl FnMut() -> L) -> L::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match look().look() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            timed_out(what, timeout, seen);
        }
        std::thread::sleep(POLL);
    }
}

/// [`until`] for a look that awaits (an HTTP request from an async test):
/// the pauses between looks let the runtime's other tasks run.
pub async fn until_async<L: Look>(
    what: &str,
    timeout: Duration,
    mut look: impl AsyncFnMut() -> L,
) -> L::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match look().await.look() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            timed_out(what, timeout, seen);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `child` exits, at most `timeout`; returns how it ended.
/// Kills it (so no process outlives the test) and panics naming `what`
/// when it is still running.
pub fn exit(what: &str, child: &mut Child, timeout: Duration) -> ExitStatus {
    let status = within(timeout, || {
        child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot look at process {}: {e}", child.id()))
    });
    status.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("timed out after {timeout:?} waiting until {what} (it was killed)")
    })
}

fn timed_out(what: &str, timeout: Duration, seen: Option<String>) -> ! {
    match seen {
        Some(seen) => panic!("timed out after {timeout:?} waiting until {what}; last seen: {seen}"),
        None => panic!("timed out after {timeout:?} waiting until {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_returns_the_value_once_the_condition_holds() {
        let mut looks = 0;
        let value = until("the third look", Duration::from_secs(5), || {
            looks += 1;
            (looks == 3).then_some(looks * 10)
        });
        assert_eq!(value, 30);
    }

    #[test]
    #[should_panic(expected = "waiting until the answer is 42; last seen: 41")]
    fn until_names_what_it_waited_for_and_the_last_thing_seen() {
        until("the answer is 42", Duration::from_millis(120), || {
            Err::<(), _>(41)
        });
    }

    #[test]
    fn within_gives_nothing_once_the_time_is_up() {
        assert_eq!(within(Duration::from_millis(60), || false), None);
        assert_eq!(within(Duration::ZERO, || true), Some(()));
    }

    #[test]
    fn exit_returns_how_the_process_ended() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        let status = exit("sh exits", &mut child, Duration::from_secs(10));
        assert_eq!(status.code(), Some(3));
    }
}
