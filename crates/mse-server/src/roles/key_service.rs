//! A replica of the key service on this node (docs/keys.md): started by
//! the platform by itself on every node — the platform's own and each
//! node host — no flag needed: `mse-run --key-service` in the nodes'
//! folder, attested like a node, recorded (where it listens, its
//! measurement) once it runs — in the store on the platform's machine,
//! through the node protocol on a node host — routed by the proxy at
//! `keys.<base domain>` while it leads, and started again when it ends.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mse_api::apps::AppStatus;
use mse_api::event::Event;
use mse_api::keys::{KeyServiceLaunch, LAUNCH_FILE};
use mse_api::launch::Quotes;
use mse_api::tee::Tee;
use tokio::io::AsyncBufReadExt as _;

use crate::domain::routing::{Route, RouteMode, KEY_SERVICE_ROUTE};
use crate::state::backend::BoxFuture;
use crate::state::{now, Routes};
use crate::store::Store;

/// How long the service's RA-TLS certificate is valid; it gets a new one
/// each time it starts.
const CERTIFICATE_LIFETIME: chrono::Duration = chrono::Duration::days(365);
/// The longest pause before starting the service again after it ended.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How this node runs the key service.
#[derive(Debug, Clone)]
pub struct KeyServiceConfig {
    /// The `mse-run` binary.
    pub mse_run: PathBuf,
    /// Its folder (mode 0700): its launch file and its root key.
    pub dir: PathBuf,
    /// Where its quotes come from.
    pub quotes: Quotes,
    /// Its domain.
    pub domain: String,
    /// The node that runs it.
    pub node_id: String,
    /// The address it listens on (a port of its own choosing).
    pub listen_ip: std::net::IpAddr,
    /// The API it keeps its records with (`http://…` beside the platform,
    /// `https://…` from a node host, one per API replica the host joined
    /// with, tried in turn), if any.
    pub api_urls: Vec<String>,
    /// With an `https` API: SHA-256 (hex) of the only CA it trusts.
    pub api_ca_sha256: Option<String>,
}

/// Where a node records the replica it runs.
pub trait Registry: Send + Sync {
    /// The replica listens on `addr` with `measurement`, and calls the API
    /// with the credential hashing to `credential_hash`.
    fn started<'a>(
        &'a self,
        addr: std::net::SocketAddr,
        measurement: &'a str,
        credential_hash: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
    /// The replica ended.
    fn ended(&self) -> BoxFuture<'_, ()>;
}

/// The platform's own node: the store and the proxy's routes of this
/// process.
pub struct LocalRegistry {
    /// The store.
    pub store: Store,
    /// The proxy's routes.
    pub routes: Arc<Routes>,
    /// The service's domain.
    pub domain: String,
    /// The node that runs it.
    pub node_id: String,
    /// Its node's TEE.
    pub tee: Tee,
}

impl Registry for LocalRegistry {
    fn started<'a>(
        &'a self,
        addr: std::net::SocketAddr,
        measurement: &'a str,
        credential_hash: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let listen = addr.to_string();
            let started = crate::store::keys::StartedService {
                domain: &self.domain,
                node_id: &self.node_id,
                addr: &listen,
                measurement,
                tee: self.tee,
                credential_hash: Some(credential_hash),
            };
            self.store
                .set_key_service(&started, now())
                .await
                .context("cannot record the key service")?;
            self.routes.set(
                &self.domain,
                Route {
                    addr,
                    mode: RouteMode::Passthrough,
                    app_id: KEY_SERVICE_ROUTE.into(),
                    remote: false,
                },
            );
            Ok(())
        })
    }

    fn ended(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.routes.remove_app(KEY_SERVICE_ROUTE);
            let _ = self.store.clear_key_service(&self.node_id).await;
        })
    }
}

/// Runs the key service until `shutdown` resolves, starting it again (after
/// a pause that grows to 30 s) whenever it ends.
pub async fn supervise(
    config: KeyServiceConfig,
    registry: Arc<dyn Registry>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    if config.quotes.tee() == Tee::Sgx {
        eprintln!("key service: not started: it does not run in an SGX enclave yet (docs/keys.md)");
        return;
    }
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = tokio::time::Instant::now();
        tokio::select! {
            () = &mut shutdown => break,
            outcome = run_once(&config, registry.as_ref()) => {
                if let Err(e) = outcome {
                    eprintln!("key service: {e:#}");
                }
            }
        }
        registry.ended().await;
        if started.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    registry.ended().await;
}

/// Starts the service once and follows it until it ends.
async fn run_once(config: &KeyServiceConfig, registry: &dyn Registry) -> anyhow::Result<()> {
    crate::data::dir::create_private_dir(&config.dir)?;
    // A new credential at each start: the one of a service that ended
    // opens nothing once this one is recorded.
    let credential = format!(
        "{}{}",
        crate::api::keys::CREDENTIAL_PREFIX,
        hex::encode(rand::random::<[u8; 32]>())
    );
    let credential_file = config.dir.join("credential");
    let _ = std::fs::remove_file(&credential_file);
    mse_package::context::write_private(&credential_file, credential.as_bytes())
        .with_context(|| format!("cannot write {}", credential_file.display()))?;
    let credential_hash = crate::state::auth::token_hash(&credential);
    let launch = KeyServiceLaunch {
        domain: config.domain.clone(),
        listen: std::net::SocketAddr::new(config.listen_ip, 0),
        work_dir: config.dir.join("service"),
        quotes: config.quotes.clone(),
        expires_at: chrono::Utc::now() + CERTIFICATE_LIFETIME,
        api: config
            .api_urls
            .split_first()
            .map(|(url, others)| mse_api::keys::ApiAccess {
                url: url.clone(),
                other_urls: others.to_vec(),
                credential: credential_file.clone(),
                ca_sha256: config.api_ca_sha256.clone(),
            }),
    };
    let launch_file = config.dir.join(LAUNCH_FILE);
    mse_package::context::write_private(&launch_file, launch.to_json().as_bytes())
        .with_context(|| format!("cannot write {}", launch_file.display()))?;
    let mut command = tokio::process::Command::new(&config.mse_run);
    command
        .arg("--key-service")
        .arg(&launch_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    // The service outlives no platform process.
    super::process::sigterm_with_parent(&mut command);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {}", config.mse_run.display()))?;
    let stdout = child
        .stdout
        .take()
        .context("the key service has no output")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(event) = serde_json::from_str::<Event>(&line) else {
            continue;
        };
        match event.status {
            AppStatus::Running => {
                let (Some(listen), Some(measurement)) = (&event.listen, &event.fingerprint) else {
                    continue;
                };
                let Ok(addr) = listen.parse() else {
                    continue;
                };
                registry
                    .started(addr, measurement, &credential_hash)
                    .await?;
                eprintln!(
                    "key service: {} at {listen} (measurement {measurement})",
                    config.domain
                );
            }
            AppStatus::OnError | AppStatus::Stopped => {
                eprintln!(
                    "key service: {}: {}",
                    event.status,
                    event.reason.as_deref().unwrap_or("no reason given")
                );
            }
            _ => {}
        }
    }
    let status = child.wait().await.context("the key service")?;
    anyhow::bail!("ended ({status})")
}
