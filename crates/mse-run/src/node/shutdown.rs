//! Why and how the app stops: the signals and the expiry that tell the node
//! to stop, and the end of the app's process group.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::Signals;

/// How long the app gets to stop after SIGTERM before it is killed.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(10);

/// Sends the reason to stop on SIGTERM, SIGINT or at expiry.
pub(super) fn stop_signals(
    signals: Signals,
    expires_at: DateTime<Utc>,
) -> watch::Receiver<Option<String>> {
    let Signals { mut term, mut int } = signals;
    let (sender, receiver) = watch::channel(None);
    let until_expiry = (expires_at - Utc::now()).to_std().unwrap_or_default();
    tokio::spawn(async move {
        let reason = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = tokio::time::sleep(until_expiry) => "expired",
        };
        let _ = sender.send(Some(reason.to_string()));
        // Keep the channel open so that receivers never see it closed.
        std::future::pending::<()>().await;
    });
    receiver
}

/// SIGTERM to the app's process group; SIGKILL after the grace period; then
/// SIGKILL to anything left in the group.
pub(super) async fn terminate(pid: u32, child: &mut tokio::process::Child) {
    let group = -(pid as i32);
    // SAFETY: signalling the process group this runtime created for the app.
    unsafe {
        libc::kill(group, libc::SIGTERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    // SAFETY: as above; leftovers of the app's group must not outlive it.
    unsafe {
        libc::kill(group, libc::SIGKILL);
    }
}
