//! An app's lifecycle: its states, the moves between them, and the reasons
//! the platform gives when it ends an app.

/// An app's state: the API's, stored by its name.
pub use mse_api::apps::AppStatus as Status;

/// Who provides an app's certificate: the API's, stored by its name.
pub use mse_api::apps::CertificateOrigin;

/// Why an app stopped when its owner asked.
pub const STOPPED_BY_OWNER: &str = "stopped by its owner";
/// Why the node of an app moving off a drained node is stopped.
pub const MOVING: &str = "moving to another node";
/// Why an app stopped when an administrator disabled its owner.
pub const STOPPED_USER_DISABLED: &str = "stopped: an administrator disabled its owner";
/// Why an app stopped at its expiry.
pub const EXPIRED: &str = "expired";
/// Why a node stopped whose app the store no longer lists as live there.
pub const NO_LONGER_LIVE: &str = "stopped (no longer live in the store)";
/// Why an app failed whose node host an administrator revoked.
pub const HOST_REVOKED: &str = "node host revoked";
/// Why an app failed whose node host an administrator removed.
pub const HOST_REMOVED: &str = "node host removed";
/// Why an app failed whose node is gone (its process, or its lease).
pub const NODE_LOST: &str = "node lost";

/// A time for people: `2026-05-01 12:00:00 UTC`.
pub fn utc(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0).map_or_else(
        || format!("{at} (Unix seconds)"),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// What an app kept by the key service says once the platform placed it
/// again because node `from` is gone (`why`), at `at`.
pub fn rescheduled_note(at: i64, from: &str, why: &str) -> String {
    format!("{}: rescheduled from {from}: {why}", utc(at))
}

/// The states an app may move to `to` from.
pub fn sources(to: Status) -> &'static [Status] {
    match to {
        Status::Spawning => &[],
        Status::Initializing => &[Status::Spawning],
        Status::Running => &[Status::Initializing],
        Status::OnError | Status::Stopped => &Status::LIVE,
    }
}

/// Whether an app may move from state `from` to state `to` (spawning →
/// initializing → running → stopped or on_error; nothing leaves a terminal
/// state).
pub fn may_move(from: Status, to: Status) -> bool {
    sources(to).contains(&from)
}

/// Whether a node's report of `reported` moves an app that is `from` along
/// its state machine, or repeats a live state (a certificate renewal's
/// `running`, a resent `initializing`).
pub fn report_moves(from: Status, reported: Status) -> bool {
    may_move(from, reported) || (from == reported && !from.is_terminal())
}

/// True for 64 hex digits (a SHA-256), as a node reports its fingerprint.
pub fn is_hex_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_moves_forward_only_and_never_leaves_a_terminal_state() {
        use Status::*;
        let moves: Vec<(Status, Status)> = Status::ALL
            .into_iter()
            .flat_map(|from| Status::ALL.into_iter().map(move |to| (from, to)))
            .filter(|(from, to)| may_move(*from, *to))
            .collect();
        assert_eq!(
            moves,
            [
                (Spawning, Initializing),
                (Spawning, OnError),
                (Spawning, Stopped),
                (Initializing, Running),
                (Initializing, OnError),
                (Initializing, Stopped),
                (Running, OnError),
                (Running, Stopped),
            ]
        );
    }

    #[test]
    fn a_repeated_live_report_counts_and_a_repeated_end_does_not() {
        assert!(report_moves(Status::Running, Status::Running));
        assert!(report_moves(Status::Initializing, Status::Initializing));
        assert!(!report_moves(Status::Stopped, Status::Stopped));
        assert!(!report_moves(Status::Running, Status::Initializing));
    }

    #[test]
    fn a_fingerprint_is_64_hex_digits() {
        assert!(is_hex_digest(&"aB".repeat(32)));
        assert!(!is_hex_digest(&"a".repeat(63)));
        assert!(!is_hex_digest(&"g".repeat(64)));
    }
}
