//! The local node runner: one `mse-run` process per app, its status events
//! applied to the store, its address published in the routing table, and a
//! reaper that stops apps at their expiry.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use mse_run::status::{Event, State};
use tokio::io::AsyncBufReadExt;

use crate::store::{App, Status, Store};

/// How a route is served by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMode {
    /// TLS passes through to the node untouched.
    Passthrough,
    /// The proxy terminates TLS with the operator's certificate and forwards
    /// plain HTTP (`--untrusted-ssl` apps once running).
    Terminate,
}

/// Where a server name leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The node's address.
    pub addr: SocketAddr,
    /// How to serve it.
    pub mode: RouteMode,
    /// The app.
    pub app_id: String,
}

/// Server name → route, shared with the proxy.
#[derive(Debug, Default)]
pub struct Routes(RwLock<HashMap<String, Route>>);

impl Routes {
    /// The route of a server name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<Route> {
        self.0
            .read()
            .ok()
            .and_then(|map| map.get(&name.to_ascii_lowercase()).cloned())
    }

    /// Routes a server name (case-insensitive) to a node.
    pub fn set(&self, name: &str, route: Route) {
        if let Ok(mut map) = self.0.write() {
            map.insert(name.to_ascii_lowercase(), route);
        }
    }

    /// Removes every route of an app.
    pub fn remove_app(&self, app_id: &str) {
        if let Ok(mut map) = self.0.write() {
            map.retain(|_, r| r.app_id != app_id);
        }
    }
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
    /// Where nodes keep their private folders (decrypted code, secrets,
    /// keys, logs): the node's side, never inside the data folder.
    pub nodes_dir: PathBuf,
    /// `simulation` or `gramine`.
    pub quote_provider: String,
}

/// The node runner.
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
    stopping: Mutex<std::collections::HashSet<String>>,
}

/// The folder of an app's files on this host.
pub fn app_dir(data_dir: &std::path::Path, id: &str) -> PathBuf {
    data_dir.join("apps").join(id)
}

impl Runner {
    /// A runner over `store`, publishing routes in `routes`.
    pub fn new(store: Store, config: RunnerConfig, routes: Arc<Routes>) -> Self {
        Runner {
            inner: Arc::new(Inner {
                store,
                config,
                routes,
                pids: Mutex::new(HashMap::new()),
                stopping: Mutex::new(Default::default()),
            }),
        }
    }

    /// The log file of an app's node.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.inner.config.nodes_dir.join(id).join("app.log")
    }

    /// Removes what this host keeps of a finished app's node (its log).
    pub fn forget_node(&self, id: &str) {
        let _ = std::fs::remove_dir_all(self.inner.config.nodes_dir.join(id));
    }

    /// The routing table.
    pub fn routes(&self) -> Arc<Routes> {
        self.inner.routes.clone()
    }

    /// Starts the node of a `spawning` app. Failures turn it `on_error`.
    pub async fn start(&self, app: &App) {
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
        let dir = app_dir(&config.data_dir, &app.id);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("no free port")?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
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
            .arg("--enclave-size")
            .arg(&app.spec.enclave_size)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--work-dir")
            .arg(config.nodes_dir.join(&app.id))
            .arg("--healthcheck")
            .arg(&app.spec.healthcheck_endpoint)
            .arg("--quote-provider")
            .arg(&config.quote_provider)
            .arg("--simulation-ca-cert")
            .arg(data.join("simulation-ca.pem"))
            .arg("--simulation-ca-key")
            .arg(data.join("simulation-ca.key"))
            .arg("--signer-key")
            .arg(data.join("signer.pub"));
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
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run {}", config.mse_run.display()))?;
        let pid = child.id().context("the node has no pid")?;
        self.inner
            .store
            .set_node(&app.id, i64::from(pid), &addr.to_string())
            .await?;
        if let Ok(mut pids) = self.inner.pids.lock() {
            pids.insert(app.id.clone(), pid);
        }
        let stdout = child.stdout.take().context("the node has no output")?;
        let runner = self.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(event) = serde_json::from_str::<Event>(&line) {
                    runner.apply(&app, addr, &event).await;
                }
            }
            let status = child.wait().await;
            runner.forget(&app.id);
            // A node that ends without a final word was stopped when the
            // platform asked (it may not have been listening for the signal
            // yet); otherwise it failed.
            let asked = runner
                .inner
                .stopping
                .lock()
                .map(|mut s| s.remove(&app.id))
                .unwrap_or(false);
            let (to, reason) = match status {
                _ if asked => (Status::Stopped, "stopped".to_string()),
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

    async fn apply(&self, app: &App, addr: SocketAddr, event: &Event) {
        let store = &self.inner.store;
        let routes = &self.inner.routes;
        let reason = event.reason.as_deref();
        match event.status {
            State::Initializing => {
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
                if store
                    .transition(&app.id, Status::Running, None, now())
                    .await
                    .unwrap_or(false)
                    && app.spec.certificate_origin == "operator"
                {
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
            State::OnError => {
                routes.remove_app(&app.id);
                let _ = store
                    .transition(&app.id, Status::OnError, reason, now())
                    .await;
            }
            State::Stopped => {
                routes.remove_app(&app.id);
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

    /// Asks an app's node to stop; true when it had one here.
    pub fn stop(&self, id: &str) -> bool {
        let pid = self.inner.pids.lock().ok().and_then(|p| p.get(id).copied());
        match pid {
            Some(pid) => {
                if let Ok(mut stopping) = self.inner.stopping.lock() {
                    stopping.insert(id.to_string());
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

    /// Asks every node to stop and waits (up to `grace`) until they have.
    pub async fn stop_all(&self, grace: Duration) {
        let ids: Vec<String> = self
            .inner
            .pids
            .lock()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        for id in &ids {
            self.stop(id);
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

    /// After a restart: live apps whose node is not ours are lost. A node
    /// process left from before is stopped.
    pub async fn recover(&self) -> anyhow::Result<()> {
        for app in self.inner.store.live_apps().await? {
            if self.has_node(&app.id) {
                continue;
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
            self.inner
                .store
                .transition(&app.id, Status::OnError, Some("node lost"), now())
                .await?;
        }
        Ok(())
    }

    /// Stops apps past their expiry; runs every `period`.
    pub async fn reap(&self, period: Duration) {
        let mut ticker = tokio::time::interval(period);
        loop {
            ticker.tick().await;
            let Ok(apps) = self.inner.store.live_apps().await else {
                continue;
            };
            let at = now();
            for app in apps.iter().filter(|a| a.expires_at <= at) {
                if !self.stop(&app.id) {
                    let _ = self
                        .inner
                        .store
                        .transition(&app.id, Status::Stopped, Some("expired"), at)
                        .await;
                }
            }
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
