//! Waiting on an app's status: one loop that asks the platform again and
//! again until the app reaches the status wanted, reaches a status it can
//! never leave, or the time is up. `mse deploy` and `mse stop` both wait
//! with it.

use std::time::{Duration, Instant};

use mse_api::apps::{App, AppStatus};

use crate::api::ApiError;

/// How long to pause between two questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// `first`, then each pause half again as long, up to `max`: for what
    /// usually ends within milliseconds (a node stopping).
    Backoff {
        /// The first pause.
        first: Duration,
        /// The longest pause.
        max: Duration,
    },
    /// `fast` during the first `window`, then `slow`: for what may end
    /// within a second (a warm start) or take minutes (a first build).
    FastThenSlow {
        /// The pause during the window.
        fast: Duration,
        /// How long to ask fast.
        window: Duration,
        /// The pause after it.
        slow: Duration,
    },
}

impl Pace {
    /// The pause after `previous` (`None` before the first one), `elapsed`
    /// into the wait.
    fn next(self, previous: Option<Duration>, elapsed: Duration) -> Duration {
        match self {
            Pace::Backoff { first, max } => {
                previous.map_or(first, |p| (p * 3 / 2).min(max)).min(max)
            }
            Pace::FastThenSlow { fast, window, slow } => {
                if elapsed < window {
                    fast
                } else {
                    slow
                }
            }
        }
    }
}

/// Why a wait ended without the status wanted or a terminal one.
#[derive(Debug)]
pub enum WaitError {
    /// Asking the platform failed.
    Api(ApiError),
    /// The time was up; the app as last seen.
    TimedOut(Box<App>),
}

/// Asks `fetch` for the app until `done` holds for it or its status is
/// terminal (no other can follow), and returns it then; `changed` sees
/// the app each time its status is new (the first time too). Fails when
/// `fetch` does, or once `timeout` has passed.
pub fn wait_for_status(
    mut fetch: impl FnMut() -> Result<App, ApiError>,
    done: impl Fn(&App) -> bool,
    timeout: Duration,
    pace: Pace,
    mut changed: impl FnMut(&App),
) -> Result<App, WaitError> {
    let started = Instant::now();
    let mut shown: Option<AppStatus> = None;
    let mut pause = None;
    loop {
        let app = fetch().map_err(WaitError::Api)?;
        if done(&app) || app.status.is_terminal() {
            return Ok(app);
        }
        if shown != Some(app.status) {
            shown = Some(app.status);
            changed(&app);
        }
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            return Err(WaitError::TimedOut(Box::new(app)));
        }
        let next = pace.next(pause, elapsed);
        pause = Some(next);
        std::thread::sleep(next.min(timeout - elapsed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(status: &str) -> App {
        serde_json::from_value(serde_json::json!({
            "id": "x", "name": "n", "project": "default", "domain_name": "d",
            "config_domain_name": "c", "resource": "free", "docker": "i",
            "python_application": "app:app", "healthcheck_endpoint": "/health",
            "certificate_origin": "self", "code_sha256": "00", "enclave_size": "1G",
            "status": status, "created_at": 1, "expires_at": 9
        }))
        .unwrap()
    }

    const QUICK: Pace = Pace::Backoff {
        first: Duration::from_millis(1),
        max: Duration::from_millis(2),
    };

    /// A platform answering these statuses, one per question, the last one
    /// ever after.
    fn platform(statuses: &'static [&'static str]) -> impl FnMut() -> Result<App, ApiError> {
        let mut answers = statuses.iter().copied();
        let mut last = "spawning";
        move || {
            last = answers.next().unwrap_or(last);
            Ok(app(last))
        }
    }

    #[test]
    fn a_wait_ends_at_the_status_wanted_and_sees_each_new_status_once() {
        let mut seen = Vec::new();
        let app = wait_for_status(
            platform(&["spawning", "spawning", "initializing", "running"]),
            |app| app.status == AppStatus::Running,
            Duration::from_secs(10),
            QUICK,
            |app| seen.push(app.status),
        )
        .unwrap();
        assert_eq!(app.status, AppStatus::Running);
        assert_eq!(seen, [AppStatus::Spawning, AppStatus::Initializing]);
    }

    #[test]
    fn a_wait_ends_at_a_terminal_status_even_when_another_is_wanted() {
        let app = wait_for_status(
            platform(&["initializing", "on_error"]),
            |app| app.status == AppStatus::Running,
            Duration::from_secs(10),
            QUICK,
            |_| {},
        )
        .unwrap();
        assert_eq!(app.status, AppStatus::OnError);
    }

    #[test]
    fn a_wait_gives_up_after_its_timeout_with_the_app_as_last_seen() {
        let error = wait_for_status(
            platform(&["initializing"]),
            |app| app.status == AppStatus::Running,
            Duration::from_millis(20),
            QUICK,
            |_| {},
        )
        .unwrap_err();
        assert!(
            matches!(&error, WaitError::TimedOut(app) if app.status == AppStatus::Initializing),
            "{error:?}"
        );
    }

    #[test]
    fn a_failed_question_ends_the_wait() {
        let error = wait_for_status(
            || Err(ApiError::Protocol("garbled".into())),
            |_| true,
            Duration::from_secs(10),
            QUICK,
            |_| {},
        )
        .unwrap_err();
        assert!(matches!(error, WaitError::Api(ApiError::Protocol(_))));
    }

    #[test]
    fn pauses_grow_to_their_bound_or_slow_down_after_the_window() {
        let backoff = Pace::Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(20),
        };
        let first = backoff.next(None, Duration::ZERO);
        assert_eq!(first, Duration::from_millis(10));
        let second = backoff.next(Some(first), Duration::ZERO);
        assert_eq!(second, Duration::from_millis(15));
        assert_eq!(
            backoff.next(Some(second), Duration::ZERO),
            Duration::from_millis(20)
        );
        let steps = Pace::FastThenSlow {
            fast: Duration::from_millis(25),
            window: Duration::from_secs(5),
            slow: Duration::from_millis(250),
        };
        assert_eq!(
            steps.next(None, Duration::from_secs(1)),
            Duration::from_millis(25)
        );
        assert_eq!(
            steps.next(None, Duration::from_secs(5)),
            Duration::from_millis(250)
        );
    }
}
