//! The node role: one `mse-run` process per app, its status events applied
//! to the store, its address published in the store and the routing table,
//! and a reaper that stops apps at their expiry.
//!
//! A node process is known in the store by its node id, which it leases
//! (table `nodes`): it claims `spawning` apps under that id with a
//! conditional UPDATE, so no two nodes run one app; it acts on the stop
//! requests the API records; after a restart it marks the apps it held
//! `on_error` ("node lost"), and it does the same for the apps of any node
//! whose lease ran out.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use mse_run::status::{Event, State};
use tokio::io::AsyncBufReadExt;

use crate::store::{App, NodeHolder, Status, Store};

pub use crate::routes::{Route, RouteMode, Routes};

/// Why an app stopped when its owner asked.
pub const STOPPED_BY_OWNER: &str = "stopped by its owner";
/// Why an app stopped at its expiry.
pub const EXPIRED: &str = "expired";

/// How often a node renews the lease of its node id.
pub const LEASE_RENEWAL: Duration = Duration::from_secs(5);
/// A node id whose lease was not renewed for this long is gone (seconds).
pub const LEASE_SECS: i64 = 30;
/// At most this many `spawning` apps claimed per look at the store.
const CLAIM_BATCH: u32 = 16;

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
    /// `simulation` or `gramine`.
    pub quote_provider: String,
    /// The id this node claims apps under (unique among the node processes
    /// sharing the store).
    pub node_id: String,
    /// How nodes run apps (configuration deadline, sandbox).
    pub options: crate::NodeOptions,
}

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
    pids: Mutex<HashMap<String, u32>>,
    /// Apps whose stop was asked for.
    /// Nodes asked to stop, with why (what the app's state will say).
    stopping: Mutex<HashMap<String, String>>,
    /// Whether this process has the node role.
    runs_nodes: bool,
    /// This host's name and this process's id, as the node lease names them.
    host: String,
    pid: i64,
}

/// The folder of an app's files on this host.
pub fn app_dir(data_dir: &std::path::Path, id: &str) -> PathBuf {
    data_dir.join("apps").join(id)
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
        Runner {
            inner: Arc::new(Inner {
                store,
                config,
                routes,
                pids: Mutex::new(HashMap::new()),
                stopping: Mutex::new(HashMap::new()),
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

    /// The log file of an app's node: in the logs folder, so that it
    /// outlives the node's own folder.
    pub fn log_path(&self, id: &str) -> PathBuf {
        logs_dir(&self.inner.config.nodes_dir).join(format!("{id}.log"))
    }

    /// The folder of an app's node while it runs.
    fn node_dir(&self, id: &str) -> PathBuf {
        self.inner.config.nodes_dir.join(id)
    }

    /// Removes what this host keeps of a finished app's node (its log).
    pub fn forget_node(&self, id: &str) {
        remove_node_dir(&self.node_dir(id));
        let _ = std::fs::remove_file(self.log_path(id));
    }

    /// The routing table.
    pub fn routes(&self) -> Arc<Routes> {
        self.inner.routes.clone()
    }

    /// The node id to store a new app under when this process runs nodes:
    /// the app is then claimed as it is inserted, and [`Runner::start`]
    /// starts it at once.
    pub fn claims_new_apps(&self) -> Option<&str> {
        self.inner.runs_nodes.then(|| self.node_id())
    }

    /// Starts the node of a `spawning` app, claiming it first unless this
    /// node holds it already; nothing when another node claimed it, or when
    /// this runner is detached. Failures to start turn the app `on_error`.
    pub async fn start(&self, app: &App) {
        if !self.inner.runs_nodes {
            return;
        }
        if app.node_owner.as_deref() != Some(self.node_id()) {
            match self.inner.store.claim_app(&app.id, self.node_id()).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    eprintln!("app {}: cannot claim it: {e}", app.id);
                    return;
                }
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
        let config = &self.inner.config;
        create_logs_dir(&config.nodes_dir)?;
        let dir = app_dir(&config.data_dir, &app.id);
        let data = &config.data_dir;
        let mut command = tokio::process::Command::new(&config.mse_run);
        command
            .arg("--uuid")
            .arg(&app.id)
            .arg("--application")
            .arg(&app.spec.python_application)
            .arg("--domain")
            .arg(&app.domain_name)
            .arg("--code")
            .arg(dir.join("code.tar"))
            .arg("--image")
            .arg(&app.spec.docker)
            .arg("--catalog")
            .arg(data.join("catalog.toml"))
            .arg("--cache-dir")
            .arg(&config.cache_dir)
            .arg("--installer")
            .arg(config.installer.as_arg())
            .arg("--enclave-size")
            .arg(&app.spec.enclave_size)
            // A port of its own choosing, told in its first event: no other
            // process can take it between a choice here and its bind there.
            .args(["--listen", "127.0.0.1:0"])
            .arg("--work-dir")
            .arg(self.node_dir(&app.id))
            .arg("--log-file")
            .arg(self.log_path(&app.id))
            .arg("--healthcheck")
            .arg(&app.spec.healthcheck_endpoint)
            .arg("--quote-provider")
            .arg(&config.quote_provider)
            .arg("--simulation-quote-key")
            .arg(self.quote_key_dir().join(QUOTE_KEY))
            .arg("--simulation-quote-chain")
            .arg(self.quote_key_dir().join(QUOTE_CHAIN))
            .arg("--signer-key")
            .arg(data.join("signer.pub"))
            .arg("--config-timeout")
            .arg(config.options.config_timeout_secs.to_string())
            .arg("--sandbox")
            .arg(config.options.sandbox.as_arg());
        // The resource's memory and cores bound the app (where the kernel
        // lets the node apply them; its status says).
        if let Some(resource) = self.inner.store.any_resource(&app.spec.resource).await? {
            command
                .args(["--memory-mb", &resource.memory_mb.to_string()])
                .args(["--cores", &resource.cores.to_string()]);
        }
        let expiry = app.expires_at.to_string();
        match app.spec.certificate_origin.as_str() {
            "owner" => command
                .arg("--certificate")
                .arg(dir.join("owner.pem"))
                .args(["--expires-at", &expiry]),
            "operator" => command.args(["--no-ssl", "--expires-at", &expiry]),
            _ => command.args(["--ratls", &expiry]),
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe. A node outlives no platform:
        // SIGTERM when this process dies, however it dies, so the node stops
        // its app and wipes what it decrypted.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run {}", config.mse_run.display()))?;
        let pid = child.id().context("the node has no pid")?;
        self.inner
            .store
            .set_node(&app.id, i64::from(pid), None)
            .await?;
        if let Ok(mut pids) = self.inner.pids.lock() {
            pids.insert(app.id.clone(), pid);
        }
        let stdout = child.stdout.take().context("the node has no output")?;
        let runner = self.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let mut addr: Option<SocketAddr> = None;
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(event) = serde_json::from_str::<Event>(&line) {
                    if let Some(listen) = event.listen.as_deref().and_then(|l| l.parse().ok()) {
                        addr = Some(listen);
                        let _ = runner
                            .inner
                            .store
                            .set_node(&app.id, i64::from(pid), Some(&listen.to_string()))
                            .await;
                    }
                    runner.apply(&app, addr, &event).await;
                }
            }
            let status = child.wait().await;
            // However the node ended (a SIGKILL included), nothing it
            // decrypted stays on this host, nor its folder; its log stays in
            // the logs folder until the app is removed.
            remove_node_dir(&runner.node_dir(&app.id));
            mse_run::limits::remove_leftover(&app.id);
            runner.forget(&app.id);
            // A node that ends without a final word was stopped when the
            // platform asked (it may not have been listening for the signal
            // yet); otherwise it failed.
            let asked = runner
                .inner
                .stopping
                .lock()
                .ok()
                .and_then(|mut s| s.remove(&app.id));
            let (to, reason) = match status {
                _ if asked.is_some() => (Status::Stopped, asked.unwrap_or_default()),
                Ok(s) => (
                    Status::OnError,
                    format!("the node ended ({s}) without reporting why"),
                ),
                Err(e) => (Status::OnError, format!("the node was lost: {e}")),
            };
            let _ = runner
                .inner
                .store
                .transition(&app.id, to, Some(&reason), now())
                .await;
        });
        Ok(())
    }

    async fn apply(&self, app: &App, addr: Option<SocketAddr>, event: &Event) {
        let store = &self.inner.store;
        let routes = &self.inner.routes;
        let reason = event.reason.as_deref();
        match event.status {
            State::Initializing => {
                let Some(addr) = addr else {
                    let why = "the node did not say where it listens";
                    let _ = store
                        .transition(&app.id, Status::OnError, Some(why), now())
                        .await;
                    self.stop_once(&app.id, why);
                    return;
                };
                if let Some(sandbox) = &event.sandbox {
                    let _ = store.set_sandbox(&app.id, sandbox).await;
                }
                if let Some(limits) = &event.limits {
                    let _ = store.set_limits(&app.id, limits).await;
                }
                if store
                    .transition(&app.id, Status::Initializing, None, now())
                    .await
                    .unwrap_or(false)
                {
                    let route = Route {
                        addr,
                        mode: RouteMode::Passthrough,
                        app_id: app.id.clone(),
                    };
                    routes.set(&app.config_domain_name, route.clone());
                    routes.set(&app.domain_name, route);
                }
            }
            State::Running => {
                let running = store
                    .transition(&app.id, Status::Running, None, now())
                    .await
                    .unwrap_or(false);
                if running && app.config_domain_name != app.domain_name {
                    // Configured: only the app's domain leads to it now
                    // (see `routes::table`).
                    routes.unset(&app.config_domain_name, &app.id);
                }
                if running && app.spec.certificate_origin == "operator" {
                    if let Some(addr) = addr {
                        routes.set(
                            &app.domain_name,
                            Route {
                                addr,
                                mode: RouteMode::Terminate,
                                app_id: app.id.clone(),
                            },
                        );
                    }
                }
            }
            State::OnError => {
                routes.remove_app(&app.id);
                let _ = store
                    .transition(&app.id, Status::OnError, reason, now())
                    .await;
            }
            State::Stopped => {
                routes.remove_app(&app.id);
                // The platform's reason when it asked (the node only saw a
                // signal), else the node's own (its expiry).
                let asked = self
                    .inner
                    .stopping
                    .lock()
                    .ok()
                    .and_then(|s| s.get(&app.id).cloned());
                let reason = asked.as_deref().or(reason);
                let _ = store
                    .transition(&app.id, Status::Stopped, reason, now())
                    .await;
            }
        }
    }

    fn forget(&self, id: &str) {
        self.inner.routes.remove_app(id);
        if let Ok(mut pids) = self.inner.pids.lock() {
            pids.remove(id);
        }
    }

    /// Asks an app's node to stop at its owner's request; true when it had
    /// one here.
    pub fn stop(&self, id: &str) -> bool {
        self.stop_because(id, STOPPED_BY_OWNER)
    }

    /// Asks an app's node to stop; `reason` is what its state will say.
    pub fn stop_because(&self, id: &str, reason: &str) -> bool {
        let pid = self.inner.pids.lock().ok().and_then(|p| p.get(id).copied());
        match pid {
            Some(pid) => {
                if let Ok(mut stopping) = self.inner.stopping.lock() {
                    stopping
                        .entry(id.to_string())
                        .or_insert_with(|| reason.to_string());
                }
                // SAFETY: signalling a node process this runner started.
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
                true
            }
            None => false,
        }
    }

    /// Asks an app's node to stop unless it was asked already.
    fn stop_once(&self, id: &str, reason: &str) {
        let asked = self
            .inner
            .stopping
            .lock()
            .map(|s| s.contains_key(id))
            .unwrap_or(false);
        if !asked {
            self.stop_because(id, reason);
        }
    }

    /// The apps this runner holds a node for.
    fn held(&self) -> HashSet<String> {
        self.inner
            .pids
            .lock()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Asks every node to stop and waits (up to `grace`) until they have.
    pub async fn stop_all(&self, grace: Duration) {
        let ids: Vec<String> = self
            .inner
            .pids
            .lock()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        for id in &ids {
            self.stop_because(id, "the platform stopped");
        }
        let deadline = tokio::time::Instant::now() + grace;
        while ids.iter().any(|id| self.has_node(id)) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether this runner holds a node for the app.
    pub fn has_node(&self, id: &str) -> bool {
        self.inner
            .pids
            .lock()
            .map(|p| p.contains_key(id))
            .unwrap_or(false)
    }

    /// The folder of this node's quote key and its chain.
    fn quote_key_dir(&self) -> PathBuf {
        let config = &self.inner.config;
        config.nodes_dir.join(QUOTE_KEYS).join(&config.node_id)
    }

    /// At start, with simulated quotes: makes this host's quote key and has
    /// it certified under this node's id ([`crate::quote_keys::certify`]),
    /// both kept in the nodes' folder (mode 0600) for its nodes to sign
    /// quotes with. The nodes never get the simulation CA's key.
    pub async fn make_quote_key(&self) -> anyhow::Result<()> {
        let config = &self.inner.config;
        if !self.inner.runs_nodes || config.quote_provider != "simulation" {
            return Ok(());
        }
        let key = mse_attest::simulation::QuoteKey::generate();
        let chain = {
            let ca = crate::quote_keys::load_ca(&config.data_dir)?;
            crate::quote_keys::certify(
                &self.inner.store,
                &ca,
                self.node_id(),
                &key.public_key_pem()?,
                now(),
            )
            .await
            .context("cannot certify this host's quote key")?
        };
        let dir = self.quote_key_dir();
        {
            use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
            for folder in [dir.parent().unwrap_or(&dir), &dir] {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(folder)
                    .and_then(|()| {
                        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))
                    })
                    .with_context(|| format!("cannot create {}", folder.display()))?;
            }
        }
        for (name, text) in [(QUOTE_KEY, key.key_pem()?), (QUOTE_CHAIN, chain)] {
            let path = dir.join(name);
            mse_package::context::write_private(&path, text.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    /// Takes this node's id in the store, refusing when another live
    /// process holds it (a process on this host running this same binary,
    /// or any process whose lease is fresh). The previous holder's apps are
    /// then this process's to recover ([`Runner::recover`]).
    pub async fn register(&self) -> anyhow::Result<()> {
        let inner = &self.inner;
        let id = self.node_id();
        let at = now();
        let previous = inner.store.node_holder(id).await?;
        if let Some(held) = &previous {
            let same_process = held.host == inner.host && held.pid == inner.pid;
            let fresh = held.seen_at >= at - LEASE_SECS;
            let alive = if held.host == inner.host {
                runs_this_binary(held.pid).unwrap_or(fresh)
            } else {
                fresh
            };
            if !same_process && alive {
                anyhow::bail!(
                    "node id `{id}` is held by process {} on {}: give each node process its own \
                     --node-id (a lease ends {LEASE_SECS} s after its process stops)",
                    held.pid,
                    held.host
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

    /// The node role's loop, every `poll` until `shutdown` resolves: claims
    /// and starts `spawning` apps, stops the apps whose stop was asked for
    /// (or that the store no longer lists as this node's and live), and
    /// renews the node's lease. Returns between two looks at the store.
    pub async fn run(&self, poll: Duration, shutdown: impl std::future::Future<Output = ()>) {
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed = tokio::time::Instant::now();
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
            if renewed.elapsed() >= LEASE_RENEWAL {
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
        // then was claimed by then, so the store lists it while it is live.
        let held = self.held();
        let owned = store.node_apps(self.node_id()).await?;
        for app in &owned {
            if app.stop_requested_at.is_some() && held.contains(&app.id) {
                self.stop_once(&app.id, STOPPED_BY_OWNER);
            }
        }
        let listed: HashSet<&str> = owned.iter().map(|a| a.id.as_str()).collect();
        for id in held.iter().filter(|id| !listed.contains(id.as_str())) {
            // Stopped, failed or removed in the store: its node goes too.
            self.stop_once(id, "stopped (no longer live in the store)");
        }
        for app in store.unclaimed_apps(CLAIM_BATCH).await? {
            self.start(&app).await;
        }
        Ok(())
    }

    /// After a restart: the live apps this node id holds in the store but
    /// this process has no node for are lost. A node process left from
    /// before is stopped.
    pub async fn recover(&self) -> anyhow::Result<()> {
        // The nodes' folder lets each app's own user through to its work
        // folder, and lists nothing.
        let nodes_dir = &self.inner.config.nodes_dir;
        std::fs::create_dir_all(nodes_dir)
            .with_context(|| format!("cannot create {}", nodes_dir.display()))?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(nodes_dir, std::fs::Permissions::from_mode(0o711))
                .with_context(|| format!("cannot set the mode of {}", nodes_dir.display()))?;
        }
        create_logs_dir(nodes_dir)?;
        // The folder of a node that ended with a crash of the platform (the
        // node was killed with it), and what it decrypted, go now; its log
        // stays (moved to the logs folder when an earlier version left it
        // inside). Apps another node process runs (sharing this folder on
        // this host) keep theirs.
        let others: HashSet<String> = self
            .inner
            .store
            .live_apps()
            .await?
            .into_iter()
            .filter(|a| a.node_owner.as_deref().is_some_and(|o| o != self.node_id()))
            .map(|a| a.id)
            .collect();
        if let Ok(entries) = std::fs::read_dir(nodes_dir) {
            for entry in entries.flatten() {
                let id = entry.file_name().to_string_lossy().to_string();
                if id == LOGS || id == QUOTE_KEYS || others.contains(&id) || self.has_node(&id) {
                    continue;
                }
                let left = entry.path().join("app.log");
                let log = self.log_path(&id);
                if left.is_file() && !log.exists() {
                    let _ = std::fs::rename(&left, &log);
                }
                remove_node_dir(&entry.path());
                mse_run::limits::remove_leftover(&id);
            }
        }
        for app in self.inner.store.node_apps(self.node_id()).await? {
            if self.has_node(&app.id) {
                continue;
            }
            // Lost first, then stopped: what the leftover node reports as it
            // stops cannot turn the app into anything else.
            self.inner
                .store
                .transition(&app.id, Status::OnError, Some("node lost"), now())
                .await?;
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
            match store
                .fail_lost_nodes(self.node_id(), at - LEASE_SECS, at)
                .await
            {
                Ok(0) => {}
                Ok(n) => eprintln!("{n} app(s) lost their node (its lease ran out)"),
                Err(e) => eprintln!("node {}: the store failed: {e}", self.node_id()),
            }
            let Ok(apps) = store.live_apps().await else {
                continue;
            };
            for app in apps.iter().filter(|a| a.expires_at <= at) {
                if self.has_node(&app.id) {
                    self.stop_once(&app.id, EXPIRED);
                } else if app.node_owner.is_none() {
                    let _ = store.stop_unclaimed(&app.id, EXPIRED, at).await;
                }
            }
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The folder of the apps' logs in the nodes' folder (no app uuid reads
/// so).
const LOGS: &str = "logs";

/// The folder of the node ids' quote keys in the nodes' folder (one folder
/// per node id, mode 0700).
const QUOTE_KEYS: &str = "quote-keys";
/// A node id's quote key (PKCS#8 PEM, mode 0600).
const QUOTE_KEY: &str = "quote-key.pem";
/// The chain the platform certified that key with (PEM, mode 0600).
const QUOTE_CHAIN: &str = "quote-chain.pem";

fn logs_dir(nodes_dir: &std::path::Path) -> PathBuf {
    nodes_dir.join(LOGS)
}

/// Creates the logs folder (mode 0700: only the platform reads logs).
fn create_logs_dir(nodes_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let dir = logs_dir(nodes_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)))
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Removes a node's folder: what it decrypted first, then the rest.
fn remove_node_dir(dir: &std::path::Path) {
    mse_run::workdir::wipe(dir);
    let _ = std::fs::remove_dir_all(dir);
}

/// This host's name, as node leases name it.
fn host_name() -> String {
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
