//! The local node runner: the API machine's own node backend. It runs one
//! `mse-run` per app through [`NodeProcesses`], applies their status events
//! to the store and the routing table, and stops apps at their expiry.
//!
//! A local node is known in the store by its node id, which it leases
//! (table `nodes`): the API places apps on it by capacity, and older
//! `spawning` apps no node holds are claimed with a conditional UPDATE, so
//! no two nodes run one app; it acts on the stop requests the API records;
//! after a restart it marks the apps it held `on_error` ("node lost"), and
//! it does the same for the apps of any node whose lease ran out.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mse_api::event::Event;
use mse_api::node::{AcmeCa, AppTls, Capacity};

use super::process::{EventSink, Launch, NodeProcesses, ProcessConfig, QuoteFiles, Snapshot};
use crate::data::dir::app_dir;
use crate::domain::app::{App, NodeHolder};
use crate::domain::assignment::assignment;
use crate::domain::lifecycle::{Status, EXPIRED, NODE_LOST, NO_LONGER_LIVE, STOPPED_BY_OWNER};
use crate::state::backend::{BoxFuture, NodeBackend};
use crate::state::events::{apply_event, reap_lost_nodes};
use crate::state::{now, Routes};
use crate::store::Store;

/// A node id whose lease was not renewed for this long is gone, unless the
/// operator sets another (seconds).
pub const LEASE_SECS: i64 = 30;
/// At most this many unclaimed `spawning` apps claimed per look at the store.
const CLAIM_BATCH: u32 = 16;

/// How often a lease of `lease_secs` is renewed: a third of it, at most 5 s.
pub fn renewal_period(lease_secs: i64) -> Duration {
    let third = Duration::from_millis(u64::try_from(lease_secs.max(1)).unwrap_or(1) * 1000 / 3);
    third.min(Duration::from_secs(5))
}

/// What the runner needs to start nodes.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The `mse-run` binary.
    pub mse_run: PathBuf,
    /// The platform's data folder.
    pub data_dir: PathBuf,
    /// Where runtime environments are cached.
    pub cache_dir: PathBuf,
    /// What installs their packages.
    pub installer: mse_runtime::Installer,
    /// Where nodes keep their private folders (decrypted code, secrets,
    /// keys) while they run, and the apps' logs (`logs/`): the node's side,
    /// never inside the data folder.
    pub nodes_dir: PathBuf,
    /// The TEE of this machine's nodes.
    pub tee: crate::domain::nodes::TeeDevice,
    /// The id this node claims apps under (unique among the node processes
    /// sharing the store).
    pub node_id: String,
    /// How nodes run apps (configuration deadline, sandbox).
    pub options: crate::domain::nodes::NodeOptions,
    /// What apps may take of this machine.
    pub capacity: Capacity,
    /// How long a renewal of this node's lease lasts, seconds.
    pub lease_secs: i64,
    /// The platform's ACME CA, when it has one.
    pub acme: Option<AcmeCa>,
}

impl RunnerConfig {
    /// The folder of this node id's quote key and its chain, in the nodes'
    /// folder (node processes of one machine share that folder).
    fn quote_key_dir(&self) -> PathBuf {
        self.nodes_dir
            .join(crate::roles::process::QUOTE_KEYS)
            .join(&self.node_id)
    }

    /// The files of this node's quote key.
    pub fn quote_files(&self) -> QuoteFiles {
        let dir = self.quote_key_dir();
        QuoteFiles {
            key: dir.join(QUOTE_KEY),
            chain: dir.join(QUOTE_CHAIN),
        }
    }
}

/// A node id's quote key (PKCS#8 PEM, mode 0600).
const QUOTE_KEY: &str = "quote-key.pem";
/// The chain the platform certified that key with (PEM, mode 0600).
const QUOTE_CHAIN: &str = "quote-chain.pem";

/// The node runner. A detached runner (a process without the node role)
/// runs nothing: the apps wait in the store for a node process.
#[derive(Debug, Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    config: RunnerConfig,
    routes: Arc<Routes>,
    processes: NodeProcesses,
    /// Whether this process has the node role.
    runs_nodes: bool,
    /// This host's name and this process's id, as the node lease names them.
    host: String,
    pid: i64,
}

/// The events of one app's local node, applied to the store and the
/// routing table.
struct StoreSink {
    store: Store,
    routes: Arc<Routes>,
    app: App,
}

impl EventSink for StoreSink {
    fn report(&self, event: Event) -> BoxFuture<'_, Option<String>> {
        Box::pin(
            async move { apply_event(&self.store, &self.routes, &self.app, &event, false).await },
        )
    }

    fn snapshot<'a>(&'a self, snapshot: &'a Snapshot) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let storage = self
                .store
                .assigned_storage(&self.app)
                .await?
                .context("the app keeps no persistent storage")?;
            for (id, bytes) in &snapshot.new_blobs {
                let text =
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
                self.store
                    .put_storage_blob(&storage.scope, id, &text, storage.cap_bytes)
                    .await?;
            }
            self.store
                .commit_storage(
                    &storage.scope,
                    &snapshot.commit,
                    storage.cap_bytes,
                    now(),
                    &self.app.id,
                )
                .await?;
            Ok(())
        })
    }
}

/// Fetches the snapshot `storage` names from the store into `dir` (its
/// sealed manifest as `manifest`, its blobs by id), for the node to
/// restore; `None` when there is none.
async fn fetch_snapshot(
    store: &Store,
    storage: &mse_api::node::AssignedStorage,
    dir: &std::path::Path,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    let Some(head) = store.storage_head(&storage.scope).await? else {
        return Ok(None);
    };
    let b64 = |text: &str| {
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text)
            .context("the store holds a snapshot that is not base64")
    };
    let _ = std::fs::remove_dir_all(dir);
    crate::data::dir::create_private_dir(dir)?;
    mse_package::context::write_private(
        &dir.join(mse_api::launch::RESTORE_MANIFEST_FILE),
        &b64(&head.manifest)?,
    )?;
    for id in &head.blobs {
        let text = store
            .storage_blob(&storage.scope, id)
            .await?
            .with_context(|| format!("blob {id} of the app's storage is missing"))?;
        mse_package::context::write_private(&dir.join(id), &b64(&text)?)?;
    }
    Ok(Some(dir.to_path_buf()))
}

impl Runner {
    /// A runner over `store`, publishing routes in `routes`.
    pub fn new(store: Store, config: RunnerConfig, routes: Arc<Routes>) -> Self {
        Self::build(store, config, routes, true)
    }

    /// A runner that runs no node (a process without the node role).
    pub fn detached(store: Store, config: RunnerConfig, routes: Arc<Routes>) -> Self {
        Self::build(store, config, routes, false)
    }

    fn build(store: Store, config: RunnerConfig, routes: Arc<Routes>, runs_nodes: bool) -> Self {
        let processes = NodeProcesses::new(ProcessConfig {
            mse_run: config.mse_run.clone(),
            cache_dir: config.cache_dir.clone(),
            installer: config.installer.clone(),
            nodes_dir: config.nodes_dir.clone(),
            tee: crate::domain::nodes::TeeDevice {
                signing_key: config
                    .tee
                    .signing_key
                    .clone()
                    .or_else(|| Some(config.data_dir.join("signer.key"))),
                ..config.tee.clone()
            },
            options: config.options,
            catalog: config.data_dir.join("catalog.toml"),
            signer_pub: config.data_dir.join("signer.pub"),
            quote: config.quote_files(),
            listen_ip: std::net::Ipv4Addr::LOCALHOST.into(),
        });
        Runner {
            inner: Arc::new(Inner {
                store,
                config,
                routes,
                processes,
                runs_nodes,
                host: host_name(),
                pid: i64::from(std::process::id()),
            }),
        }
    }

    /// Whether this runner runs nodes (the process has the node role).
    pub fn runs_nodes(&self) -> bool {
        self.inner.runs_nodes
    }

    /// The id this node claims apps under.
    pub fn node_id(&self) -> &str {
        &self.inner.config.node_id
    }

    /// How this runner was set up.
    pub fn config(&self) -> &RunnerConfig {
        &self.inner.config
    }

    /// The log file of an app's node: in the logs folder, so that it
    /// outlives the node's own folder.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.inner.processes.log_path(id)
    }

    /// Removes what this host keeps of a finished app's node (its log).
    pub fn forget_node(&self, id: &str) {
        self.inner.processes.forget_node(id);
    }

    /// How this node runs the key service at `domain` (docs/keys.md).
    pub fn key_service_config(
        &self,
        domain: &str,
        api_url: Option<String>,
    ) -> super::key_service::KeyServiceConfig {
        let processes = self.inner.processes.config();
        super::key_service::KeyServiceConfig {
            mse_run: processes.mse_run.clone(),
            dir: processes.nodes_dir.join(super::process::KEY_SERVICE),
            quotes: super::process::quotes(processes, &processes.tee),
            domain: domain.to_string(),
            node_id: self.node_id().to_string(),
            listen_ip: processes.listen_ip,
            api_urls: api_url.into_iter().collect(),
            api_ca_sha256: None,
        }
    }

    /// The store this runner works on.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The routing table.
    pub fn routes(&self) -> Arc<Routes> {
        self.inner.routes.clone()
    }

    /// Starts the node of a `spawning` app placed on this node (or, from a
    /// store of an earlier version, claimed by none: claimed first); nothing
    /// when another node holds it, or when this runner is detached.
    /// Failures to start turn the app `on_error`.
    pub async fn start(&self, app: &App) {
        if !self.inner.runs_nodes {
            return;
        }
        match app.node_owner.as_deref() {
            Some(owner) if owner == self.node_id() => {}
            Some(_) => return,
            None => match self.inner.store.claim_app(&app.id, self.node_id()).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    eprintln!("app {}: cannot claim it: {e}", app.id);
                    return;
                }
            },
        }
        match self
            .inner
            .store
            .take_app(&app.id, self.node_id(), now())
            .await
        {
            Ok(true) => {}
            // Started already, or stopped first.
            Ok(false) => return,
            Err(e) => {
                eprintln!("app {}: cannot take it: {e}", app.id);
                return;
            }
        }
        if let Err(e) = self.spawn(app).await {
            let reason = format!("cannot start the node: {e:#}");
            eprintln!("app {}: {reason}", app.id);
            let _ = self
                .inner
                .store
                .transition(&app.id, Status::OnError, Some(&reason), now())
                .await;
        }
    }

    async fn spawn(&self, app: &App) -> anyhow::Result<()> {
        let store = &self.inner.store;
        let resource = store
            .any_resource(&app.spec.resource)
            .await?
            .with_context(|| format!("resource `{}` is gone", app.spec.resource))?;
        let dir = app_dir(&self.inner.config.data_dir, &app.id);
        let assignment = assignment(
            app,
            u64::try_from(resource.memory_mb).unwrap_or(0),
            u64::try_from(resource.cores).unwrap_or(0),
            self.inner.config.acme.as_ref(),
        )
        .map_err(|why| anyhow::anyhow!(why))?;
        let owner_chain =
            matches!(assignment.tls, AppTls::Owner { .. }).then(|| dir.join("owner.pem"));
        let mut assignment = assignment;
        assignment.storage = store.assigned_storage(app).await?;
        let restore = match &assignment.storage {
            Some(storage) if storage.version > 0 => {
                let processes = &self.inner.processes;
                crate::data::dir::create_private_dir(&processes.storage_dir(&app.id))?;
                fetch_snapshot(store, storage, &processes.restore_dir(&app.id)).await?
            }
            _ => None,
        };
        let launch = Launch {
            assignment,
            package: dir.join("code.tar"),
            owner_chain,
            restore,
        };
        let sink = Arc::new(StoreSink {
            store: store.clone(),
            routes: self.inner.routes.clone(),
            app: app.clone(),
        });
        if let Some(pid) = self.inner.processes.spawn(launch, sink).await? {
            store.set_node(&app.id, i64::from(pid), None).await?;
        }
        Ok(())
    }

    /// Asks an app's node to stop at its owner's request; true when it had
    /// one here.
    pub fn stop(&self, id: &str) -> bool {
        self.stop_because(id, STOPPED_BY_OWNER)
    }

    /// Asks an app's node to stop; `reason` is what its state will say.
    pub fn stop_because(&self, id: &str, reason: &str) -> bool {
        self.inner.processes.stop(id, reason)
    }

    fn stop_once(&self, id: &str, reason: &str) {
        self.inner.processes.stop_once(id, reason);
    }

    /// Asks every node to stop and waits (up to `grace`) until they have.
    pub async fn stop_all(&self, grace: Duration) {
        self.inner
            .processes
            .stop_all("the platform stopped", grace)
            .await;
    }

    /// Whether this runner holds a node for the app.
    pub fn has_node(&self, id: &str) -> bool {
        self.inner.processes.has_node(id)
    }

    /// At start, with simulated quotes: makes this host's quote key and has
    /// it certified under this node's id ([`crate::data::quote_keys::certify`]),
    /// both kept in the nodes' folder (mode 0600) for its nodes to sign
    /// quotes with. The nodes never get the simulation CA's key.
    pub async fn make_quote_key(&self) -> anyhow::Result<()> {
        let config = &self.inner.config;
        if !self.inner.runs_nodes || config.tee.tee != mse_api::tee::Tee::Simulation {
            return Ok(());
        }
        let key = mse_attest::simulation::QuoteKey::generate();
        let chain = {
            let ca = crate::data::quote_keys::load_ca(&config.data_dir)?;
            crate::data::quote_keys::certify(
                &self.inner.store,
                &ca,
                self.node_id(),
                &key.public_key_pem()?,
                now(),
            )
            .await
            .context("cannot certify this host's quote key")?
        };
        let dir = config.quote_key_dir();
        for folder in [dir.parent().unwrap_or(&dir), &dir] {
            crate::data::dir::create_private_dir(folder)?;
        }
        let files = config.quote_files();
        for (path, text) in [(&files.key, key.key_pem()?), (&files.chain, chain)] {
            mse_package::context::write_private(path, text.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    /// Takes this node's id in the store, refusing when another live
    /// process holds it (a process on this host running this same binary,
    /// or any process whose lease is fresh), and records what it offers.
    /// The previous holder's apps are then this process's to recover
    /// ([`Runner::recover`]).
    pub async fn register(&self) -> anyhow::Result<()> {
        let inner = &self.inner;
        let id = self.node_id();
        let at = now();
        let previous = inner.store.node_holder(id).await?;
        if let Some(held) = &previous {
            let same_process = held.host == inner.host && held.pid == inner.pid;
            let fresh = held.seen_at >= at - inner.config.lease_secs;
            let alive = if held.host == inner.host {
                runs_this_binary(held.pid).unwrap_or(fresh)
            } else {
                fresh
            };
            if !same_process && alive {
                anyhow::bail!(
                    "node id `{id}` is held by process {} on {}: give each node process its own \
                     --node-id (a lease ends {} s after its process stops)",
                    held.pid,
                    held.host,
                    inner.config.lease_secs
                );
            }
        }
        let me = NodeHolder {
            id: id.to_string(),
            host: inner.host.clone(),
            pid: inner.pid,
            started_at: at,
            seen_at: at,
        };
        if !inner.store.take_node(&me, previous.as_ref()).await? {
            anyhow::bail!(
                "node id `{id}` was taken by another process at the same time: give each node \
                 process its own --node-id"
            );
        }
        let capacity = inner.config.capacity;
        inner
            .store
            .set_node_capacity(
                id,
                i64::try_from(capacity.memory_mb).unwrap_or(i64::MAX),
                i64::try_from(capacity.cores).unwrap_or(i64::MAX),
                inner.config.tee.tee,
                inner.config.lease_secs,
            )
            .await?;
        Ok(())
    }

    /// Gives this node's id up (at a clean stop, once its nodes stopped).
    pub async fn release(&self) {
        let inner = &self.inner;
        if let Err(e) = inner
            .store
            .release_node(self.node_id(), &inner.host, inner.pid)
            .await
        {
            eprintln!("node {}: cannot release the node id: {e}", self.node_id());
        }
    }

    /// The node role's loop, every `poll` until `shutdown` resolves: starts
    /// the `spawning` apps placed on this node (and claims unclaimed ones),
    /// stops the apps whose stop was asked for (or that the store no longer
    /// lists as this node's and live), and renews the node's lease. Returns
    /// between two looks at the store.
    pub async fn run(&self, poll: Duration, shutdown: impl std::future::Future<Output = ()>) {
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed = tokio::time::Instant::now();
        let renewal = renewal_period(self.inner.config.lease_secs);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                _ = ticker.tick() => {}
            }
            if let Err(e) = self.look().await {
                eprintln!("node {}: the store failed: {e}", self.node_id());
            }
            if renewed.elapsed() >= renewal {
                renewed = tokio::time::Instant::now();
                let inner = &self.inner;
                match inner
                    .store
                    .renew_node(self.node_id(), &inner.host, inner.pid, now())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => eprintln!(
                        "node {}: another process took this node id; give each node process \
                         its own --node-id",
                        self.node_id()
                    ),
                    Err(e) => eprintln!("node {}: cannot renew the lease: {e}", self.node_id()),
                }
            }
        }
    }

    /// One look at the store: see [`Runner::run`].
    pub async fn look(&self) -> Result<(), crate::store::StoreError> {
        if !self.inner.runs_nodes {
            return Ok(());
        }
        let store = &self.inner.store;
        // What this process holds, read before the store: an app held by
        // then was placed here by then, so the store lists it while it is
        // live.
        let held = self.inner.processes.held();
        let owned = store.node_apps(self.node_id()).await?;
        for app in &owned {
            if app.stop_requested_at.is_some() && held.contains(&app.id) {
                self.stop_once(&app.id, STOPPED_BY_OWNER);
            }
        }
        let listed: HashSet<&str> = owned.iter().map(|a| a.id.as_str()).collect();
        for id in held.iter().filter(|id| !listed.contains(id.as_str())) {
            // Stopped, failed or removed in the store: its node goes too.
            self.stop_once(id, NO_LONGER_LIVE);
        }
        for app in &owned {
            let placed = app.status == Status::Spawning
                && app.node_pid.is_none()
                && app.stop_requested_at.is_none()
                && !held.contains(&app.id);
            if placed {
                self.start(app).await;
            }
        }
        for app in store.unclaimed_apps(CLAIM_BATCH).await? {
            self.start(&app).await;
        }
        Ok(())
    }

    /// After a restart: the live apps this node id holds in the store but
    /// this process has no node for are lost. A node process left from
    /// before is stopped.
    #[allow(unsafe_code)]
    pub async fn recover(&self) -> anyhow::Result<()> {
        let processes = &self.inner.processes;
        processes.create_dirs()?;
        // The folder of a node that ended with a crash of the platform (the
        // node was killed with it), and what it decrypted, go now; its log
        // stays. Apps another node process runs (sharing this folder on this
        // host) keep theirs.
        let others: HashSet<String> = self
            .inner
            .store
            .live_apps()
            .await?
            .into_iter()
            .filter(|a| a.node_owner.as_deref().is_some_and(|o| o != self.node_id()))
            .map(|a| a.id)
            .collect();
        processes.remove_leftovers(&others);
        for app in self.inner.store.node_apps(self.node_id()).await? {
            if self.has_node(&app.id) {
                continue;
            }
            // Lost first (or, kept by the key service, placed again), then
            // stopped: what the leftover node reports as it stops cannot
            // turn the app into anything else.
            let store = &self.inner.store;
            if !store
                .reschedule_kept(&app.id, self.node_id(), NODE_LOST, None, now())
                .await?
            {
                store
                    .transition(&app.id, Status::OnError, Some(NODE_LOST), now())
                    .await?;
            }
            if let Some(pid) = app.node_pid.and_then(|p| i32::try_from(p).ok()) {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let ours = String::from_utf8_lossy(&cmdline).contains(&app.id);
                if ours {
                    // SAFETY: the process runs this app's node (its command line names it).
                    unsafe {
                        libc::kill(pid, libc::SIGTERM);
                    }
                }
            }
        }
        Ok(())
    }

    /// Every `period`: stops the apps past their expiry that this node holds
    /// or that no node claimed (another node stops its own), and marks the
    /// live apps of nodes whose lease ran out `on_error` ("node lost").
    pub async fn reap(&self, period: Duration) {
        let mut ticker = tokio::time::interval(period);
        loop {
            ticker.tick().await;
            let store = &self.inner.store;
            let at = now();
            reap_lost_nodes(store, Some(self.node_id()), at).await;
            let Ok(apps) = store.live_apps().await else {
                continue;
            };
            for app in apps.iter().filter(|a| a.expires_at.timestamp() <= at) {
                if self.has_node(&app.id) {
                    self.stop_once(&app.id, EXPIRED);
                } else if app.node_owner.is_none() {
                    let _ = store.stop_unclaimed(&app.id, EXPIRED, at).await;
                }
            }
        }
    }
}

/// This host's name, as node leases name it.
#[allow(unsafe_code)]
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length, which is passed.
    let done = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if done == 0 && !name.is_empty() => name.to_string(),
        _ => "localhost".to_string(),
    }
}

/// Whether process `pid` of this host runs the same binary as this process
/// (a live `mse-server`, not a stranger that reused the id); `None` when it
/// exists but cannot be inspected.
fn runs_this_binary(pid: i64) -> Option<bool> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    // A zombie (killed, not yet reaped by its parent) holds nothing.
    if let Ok(stat) = std::fs::read_to_string(proc.join("stat")) {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if matches!(state, Some("Z" | "X")) {
            return Some(false);
        }
    }
    match std::fs::read_link(proc.join("exe")) {
        Ok(exe) => Some(std::env::current_exe().is_ok_and(|me| me == exe)),
        Err(_) if proc.exists() => None,
        Err(_) => Some(false),
    }
}

impl NodeBackend for Runner {
    fn start<'a>(&'a self, app: &'a App) -> BoxFuture<'a, ()> {
        Box::pin(Runner::start(self, app))
    }

    fn stop(&self, app: &str, reason: &str) -> bool {
        self.stop_because(app, reason)
    }

    fn log_path(&self, app: &str) -> PathBuf {
        Runner::log_path(self, app)
    }

    fn forget(&self, app: &str) {
        self.forget_node(app);
    }

    fn holds(&self, node_owner: Option<&str>) -> bool {
        self.runs_nodes() && node_owner.is_none_or(|o| o == self.node_id())
    }
}
