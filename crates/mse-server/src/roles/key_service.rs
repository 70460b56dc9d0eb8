//! The key service on this node (docs/keys.md): started by the platform by
//! itself, no flag needed — `mse-run --key-service` in the nodes' folder,
//! attested like a node — recorded in the store (where it listens, its
//! measurement) once it runs, routed by the proxy at `keys.<base domain>`,
//! and started again when it ends.

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
    /// The API it keeps its records with (`http://…`), when one runs
    /// beside this node.
    pub api_url: Option<String>,
}

/// Runs the key service until `shutdown` resolves, starting it again (after
/// a pause that grows to 30 s) whenever it ends.
pub async fn supervise(
    config: KeyServiceConfig,
    store: Store,
    routes: Arc<Routes>,
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
            outcome = run_once(&config, &store, &routes) => {
                if let Err(e) = outcome {
                    eprintln!("key service: {e:#}");
                }
            }
        }
        routes.remove_app(KEY_SERVICE_ROUTE);
        let _ = store.clear_key_service(&config.node_id).await;
        if started.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    routes.remove_app(KEY_SERVICE_ROUTE);
    let _ = store.clear_key_service(&config.node_id).await;
}

/// Starts the service once and follows it until it ends.
async fn run_once(config: &KeyServiceConfig, store: &Store, routes: &Routes) -> anyhow::Result<()> {
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
        api: config.api_url.as_ref().map(|url| mse_api::keys::ApiAccess {
            url: url.clone(),
            credential: credential_file.clone(),
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
                let started = crate::store::keys::StartedService {
                    domain: &config.domain,
                    node_id: &config.node_id,
                    addr: listen,
                    measurement,
                    tee: config.quotes.tee(),
                    credential_hash: Some(&credential_hash),
                };
                store
                    .set_key_service(&started, now())
                    .await
                    .context("cannot record the key service")?;
                routes.set(
                    &config.domain,
                    Route {
                        addr,
                        mode: RouteMode::Passthrough,
                        app_id: KEY_SERVICE_ROUTE.into(),
                        remote: false,
                    },
                );
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
