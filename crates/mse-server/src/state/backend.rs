//! The seam between the API and where apps run: [`NodeBackend`]. The API
//! places each app on a node in the store, then starts, stops and reads it
//! through the backend of that node: the local runner (one `mse-run` per app
//! on this machine) or the remote node hosts (which learn their apps from
//! their lease and report back over the node protocol, `crate::api::nodes`).

use std::path::PathBuf;
use std::sync::Arc;

use std::future::Future;
use std::pin::Pin;

use crate::domain::app::App;

/// A boxed future, for the object-safe traits of this crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where apps' nodes run, as the API drives them.
pub trait NodeBackend: Send + Sync + std::fmt::Debug {
    /// Starts the node of a `spawning` app placed on this backend; failures
    /// turn the app `on_error`.
    fn start<'a>(&'a self, app: &'a App) -> BoxFuture<'a, ()>;
    /// Asks an app's node to stop (the stop is recorded in the store
    /// first); `reason` is what its state will say. True when the node
    /// stopping it runs in this process.
    fn stop(&self, app: &str, reason: &str) -> bool;
    /// Where this backend keeps the app's log.
    fn log_path(&self, app: &str) -> PathBuf;
    /// Removes what this backend keeps of a removed app.
    fn forget(&self, app: &str);
    /// Whether this backend runs the node of an app placed on node
    /// `node_owner` (`None`: not placed yet).
    fn holds(&self, node_owner: Option<&str>) -> bool {
        let _ = node_owner;
        false
    }
}

/// The remote node hosts: an app placed on one waits in the store until the
/// host's next lease call takes it; the wake-up below answers the hosts'
/// waiting lease calls at once.
#[derive(Debug)]
pub struct RemoteHosts {
    logs_dir: PathBuf,
    work: tokio::sync::Notify,
}

impl RemoteHosts {
    /// Remote hosts whose logs the API keeps in `logs_dir`.
    pub fn new(logs_dir: PathBuf) -> Self {
        RemoteHosts {
            logs_dir,
            work: tokio::sync::Notify::new(),
        }
    }

    /// Wakes the lease calls waiting in this process: there is work.
    pub fn wake(&self) {
        self.work.notify_waiters();
    }

    /// Resolves at the next [`RemoteHosts::wake`].
    pub fn woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.work.notified()
    }

    /// Where the API keeps the logs remote hosts send.
    pub fn logs_dir(&self) -> &std::path::Path {
        &self.logs_dir
    }
}

impl NodeBackend for RemoteHosts {
    fn start<'a>(&'a self, _app: &'a App) -> BoxFuture<'a, ()> {
        self.wake();
        Box::pin(async {})
    }

    fn stop(&self, _app: &str, _reason: &str) -> bool {
        self.wake();
        false
    }

    fn log_path(&self, app: &str) -> PathBuf {
        self.logs_dir.join(format!("{app}.log"))
    }

    fn forget(&self, app: &str) {
        let _ = std::fs::remove_file(self.log_path(app));
    }
}

/// Every backend of this process, and which one an app's node is on.
#[derive(Debug, Clone)]
pub struct Nodes {
    /// This machine's runner (`crate::roles::runner`).
    pub local: Arc<dyn NodeBackend>,
    /// The remote hosts (and the node processes of other machines' stores).
    pub remote: Arc<RemoteHosts>,
}

impl Nodes {
    /// The backend of the node an app was placed on.
    pub fn backend(&self, node_owner: Option<&str>) -> &dyn NodeBackend {
        if self.local.holds(node_owner) {
            self.local.as_ref()
        } else {
            self.remote.as_ref()
        }
    }

    /// Starts the node of a newly placed app.
    pub async fn start(&self, app: &App) {
        self.backend(app.node_owner.as_deref()).start(app).await;
    }

    /// Asks an app's node to stop, wherever it runs.
    pub fn stop(&self, app: &str, reason: &str) {
        if !self.local.stop(app, reason) {
            NodeBackend::stop(self.remote.as_ref(), app, reason);
        }
    }

    /// The app's log: the one a remote host sent, else this machine's.
    pub fn log_path(&self, app: &str) -> PathBuf {
        let remote = self.remote.log_path(app);
        if remote.exists() {
            remote
        } else {
            self.local.log_path(app)
        }
    }

    /// Removes what any backend keeps of a removed app.
    pub fn forget(&self, app: &str) {
        self.local.forget(app);
        self.remote.forget(app);
    }
}
