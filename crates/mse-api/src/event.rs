//! Status events: what a node reports of its app, one JSON object a line on
//! `mse-run`'s standard output, and forwarded by node hosts to the API.

use chrono::{DateTime, Timelike as _, Utc};
use serde::{Deserialize, Serialize};

use crate::apps::AppStatus;

/// One status line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The new state: `initializing` (the configuration server waits for
    /// the owner), `running` (the app answers its health check), `on_error`
    /// (something failed; `reason` says what) or `stopped` (on request or at
    /// expiry). A node never reports `spawning`, the platform's own state of
    /// an app it has not started yet.
    pub status: AppStatus,
    /// When, RFC 3339 on the wire (whole seconds, UTC).
    #[serde(with = "crate::launch::rfc3339")]
    pub time: DateTime<Utc>,
    /// Why (`on_error`, `stopped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The fingerprint (MRENCLAVE) the node's quote carries, hex (`initializing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// SHA-256 of the RA-TLS certificate, hex (`initializing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_sha256: Option<String>,
    /// The app server's process id (`running`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// How the app is confined, or `UNSANDBOXED: why` (`initializing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// The address the node listens on, `IP:port` (`initializing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// The memory and CPU limits the app runs under, e.g. `memory 512 MB,
    /// 1 core (cgroup v1)`, or `UNLIMITED: why` (`initializing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<String>,
    /// The certificate the node serves the app with, when the node holds it
    /// apart from the app (an ACME or the owner's certificate): on
    /// `running`, and on every `running` line after a renewal or a failed
    /// attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<ServedCertificate>,
    /// A snapshot of the app's persistent home the node just wrote into its
    /// outbox (`running`, also once after the app server stopped on a
    /// graceful stop, before `stopped`): for the platform to store and
    /// commit (blobs first, manifest last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotWritten>,
}

/// A snapshot of the persistent home, written into the node's outbox
/// (`mse_api::launch::Storage::outbox`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotWritten {
    /// Its version: one more than the last one this node wrote, or than
    /// the one it restored.
    pub version: u64,
    /// The file name of its sealed manifest in the outbox
    /// (`manifest-<version>`).
    pub manifest: String,
    /// Every blob id the manifest names, in order (SHA-256 of the blob,
    /// hex): what the store must hold before it commits the manifest.
    pub blobs: Vec<String>,
    /// Those this snapshot wrote into the outbox (each a file named by its
    /// id); the others the store holds from earlier snapshots.
    pub new_blobs: Vec<String>,
    /// Bytes of the snapshot's tarball.
    pub size: u64,
}

/// The certificate a node serves, as `mse status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedCertificate {
    /// The issuer's distinguished name (the node itself for its RA-TLS
    /// certificate).
    pub issuer: String,
    /// The end of its validity, RFC 3339.
    pub not_after: String,
    /// Why the last attempt to obtain or renew a certificate failed, in
    /// words for the owner; `None` once one succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    /// An event with no details.
    pub fn new(status: AppStatus, now: DateTime<Utc>) -> Self {
        Event {
            status,
            // Whole seconds, as the wire carries it.
            time: now.with_nanosecond(0).unwrap_or(now),
            reason: None,
            fingerprint: None,
            certificate_sha256: None,
            pid: None,
            sandbox: None,
            listen: None,
            limits: None,
            certificate: None,
            snapshot: None,
        }
    }

    /// The event with a reason.
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// Prints `event` as one line on standard output.
pub fn emit(event: &Event) {
    use std::io::Write;
    let line = serde_json::to_string(event).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_line_round_trips_with_its_time_in_whole_seconds() {
        let now = DateTime::parse_from_rfc3339("2026-05-01T12:00:00.75Z")
            .unwrap()
            .with_timezone(&Utc);
        let event = Event::new(AppStatus::Running, now);
        let line = serde_json::to_string(&event).unwrap();
        assert!(line.contains(r#""time":"2026-05-01T12:00:00Z""#), "{line}");
        assert!(line.contains(r#""status":"running""#), "{line}");
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), event);
    }

    #[test]
    fn a_snapshot_line_round_trips_and_is_absent_from_other_lines() {
        let now = DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut event = Event::new(AppStatus::Running, now);
        assert!(!serde_json::to_string(&event).unwrap().contains("snapshot"));
        event.snapshot = Some(SnapshotWritten {
            version: 3,
            manifest: "manifest-3".into(),
            blobs: vec!["aa".into(), "bb".into()],
            new_blobs: vec!["bb".into()],
            size: 2048,
        });
        let line = serde_json::to_string(&event).unwrap();
        assert!(line.contains(r#""manifest":"manifest-3""#), "{line}");
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), event);
    }

    #[test]
    fn a_status_line_with_a_bad_time_is_refused_naming_it() {
        let error = serde_json::from_str::<Event>(r#"{"status":"running","time":"yesterday"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`yesterday` is not an RFC 3339 time"),
            "{error}"
        );
    }
}
