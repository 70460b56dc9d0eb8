//! A remote node host: a machine that runs apps for a platform it reaches
//! only through the API's node protocol (`mse_api::node`). It holds no
//! database URL, no data folder and no operator key: it joins with a token
//! that pins the platform's CA, fetches each app's encrypted package by
//! SHA-256, runs it with [`NodeProcesses`], reports events and logs, renews
//! its lease, and stops every app by itself when it cannot renew (fencing),
//! so that no app runs on two hosts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use mse_api::apps::AppStatus;
use mse_api::event::Event;
use mse_api::node::{
    AppTls, Assignment, Capacity, EventReport, JoinRequest, JoinToken, Joined, LeaseGranted,
    LeaseRequest, MAX_LOG_CHUNK,
};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::roles::process::{
    EventSink, Launch, NodeProcesses, ProcessConfig, QuoteFiles, Snapshot,
};
use crate::state::backend::BoxFuture;

/// How long a lease call may wait for work, at most, milliseconds (and at
/// most a sixth of the lease: a host fences itself when no call sent in the
/// last two thirds of the lease came back).
const LEASE_WAIT_MS: u64 = 2_000;
/// Every call's deadline beyond its own wait.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often logs are sent.
const LOG_PERIOD: Duration = Duration::from_millis(500);
/// How long a stop of every app may take when the host fences itself.
const FENCE_GRACE: Duration = Duration::from_secs(2);

/// How a host is set up.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// The API's URLs (`https://…`), tried in turn.
    pub api: Vec<String>,
    /// The join token.
    pub token: JoinToken,
    /// The node id this host asks for.
    pub name: String,
    /// Where the proxy reaches this host's apps.
    pub advertise: IpAddr,
    /// The nodes' private folders and logs.
    pub nodes_dir: PathBuf,
    /// Where runtime environments are cached.
    pub cache_dir: PathBuf,
    /// What installs their packages.
    pub installer: mse_runtime::Installer,
    /// The `mse-run` binary.
    pub mse_run: PathBuf,
    /// What apps may take of this host.
    pub capacity: Capacity,
    /// The TEE this host's nodes run in, which it states when it joins.
    pub tee: crate::domain::nodes::TeeDevice,
}

/// The HTTPS client of a host: the join token's CA only.
pub fn pinned_client(token: &JoinToken) -> anyhow::Result<reqwest::Client> {
    let tls = mse_attest::tls::pinned_ca_client_config(token.ca_sha256, mse_attest::tls::HTTP1);
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(3))
        .timeout(CALL_TIMEOUT + Duration::from_millis(LEASE_WAIT_MS))
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent("mse node host")
        .build()
        .context("cannot build the HTTPS client")
}

/// Why a call to the API failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The API answered with an error.
    #[error("the API answered {status}: {message}")]
    Answered {
        /// Its status.
        status: reqwest::StatusCode,
        /// Its message.
        message: String,
    },
    /// The API did not answer.
    #[error("the API cannot be reached: {0}")]
    Unreachable(#[source] reqwest::Error),
}

impl CallError {
    fn status(&self) -> Option<reqwest::StatusCode> {
        match self {
            CallError::Answered { status, .. } => Some(*status),
            CallError::Unreachable(_) => None,
        }
    }
}

/// The host's link to the API: the client, the URLs, and the credential
/// of its current join.
struct Link {
    client: reqwest::Client,
    api: Vec<String>,
    /// The URL that answered last.
    current: Mutex<usize>,
    credential: RwLock<Option<String>>,
}

impl Link {
    fn url(&self, path: &str) -> String {
        let index = self.current.lock().map(|i| *i).unwrap_or(0);
        format!(
            "{}{path}",
            self.api[index % self.api.len()].trim_end_matches('/')
        )
    }

    /// After an unreachable API: the next URL.
    fn rotate(&self) {
        if let Ok(mut i) = self.current.lock() {
            *i = (*i + 1) % self.api.len().max(1);
        }
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.credential.read().ok().and_then(|c| c.clone()) {
            Some(credential) => request.bearer_auth(credential),
            None => request,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, CallError> {
        let response = match self.authorized(request).send().await {
            Ok(response) => response,
            Err(e) => {
                self.rotate();
                return Err(CallError::Unreachable(e));
            }
        };
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let message = response
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or_else(|| status.to_string());
        Err(CallError::Answered { status, message })
    }

    async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, CallError> {
        let response = self
            .send(self.client.post(self.url(path)).json(body))
            .await?;
        response.json().await.map_err(CallError::Unreachable)
    }
}

/// The state of a host's apps.
struct Host {
    link: Arc<Link>,
    processes: NodeProcesses,
    settings: HostSettings,
    packages_dir: PathBuf,
    /// The catalog digest the host has.
    catalog: Mutex<String>,
    /// Apps taken whose node is not started yet.
    pending: Mutex<std::collections::HashSet<String>>,
    /// Bytes of each app's log sent so far.
    logs_sent: Mutex<HashMap<String, u64>>,
    /// Serializes log sending.
    sending_logs: tokio::sync::Mutex<()>,
    /// The replica of the key service this host runs, once it joined.
    key_service: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Runs a node host until `shutdown` resolves: joins, then renews its lease
/// and runs what it is given; fenced (every app stopped) whenever it cannot
/// renew, then joins again.
pub async fn run(
    settings: HostSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let link = Arc::new(Link {
        client: pinned_client(&settings.token)?,
        api: settings.api.clone(),
        current: Mutex::new(0),
        credential: RwLock::new(None),
    });
    let nodes_dir = &settings.nodes_dir;
    let processes = NodeProcesses::new(ProcessConfig {
        mse_run: settings.mse_run.clone(),
        cache_dir: settings.cache_dir.clone(),
        installer: settings.installer.clone(),
        nodes_dir: nodes_dir.clone(),
        tee: settings.tee.clone(),
        options: crate::domain::nodes::NodeOptions::default(),
        catalog: nodes_dir.join("catalog.toml"),
        signer_pub: nodes_dir.join("signer.pub"),
        quote: QuoteFiles {
            key: nodes_dir
                .join(crate::roles::process::QUOTE_KEYS)
                .join("quote-key.pem"),
            chain: nodes_dir
                .join(crate::roles::process::QUOTE_KEYS)
                .join("quote-chain.pem"),
        },
        listen_ip: settings.advertise,
    });
    processes.create_dirs()?;
    processes.remove_leftovers(&Default::default());
    crate::data::dir::create_private_dir(&nodes_dir.join(crate::roles::process::QUOTE_KEYS))?;
    let packages_dir = nodes_dir.join(crate::roles::process::PACKAGES);
    let _ = std::fs::remove_dir_all(&packages_dir);
    crate::data::dir::create_private_dir(&packages_dir)?;
    let host = Arc::new(Host {
        link,
        processes,
        settings,
        packages_dir,
        catalog: Mutex::new(String::new()),
        pending: Mutex::new(Default::default()),
        logs_sent: Mutex::new(HashMap::new()),
        sending_logs: tokio::sync::Mutex::new(()),
        key_service: Mutex::new(None),
    });
    let logs = {
        let host = host.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(LOG_PERIOD);
            loop {
                ticker.tick().await;
                host.send_logs(None).await;
            }
        })
    };
    tokio::pin!(shutdown);
    let outcome = tokio::select! {
        () = &mut shutdown => Ok(()),
        result = host.clone().serve() => result,
    };
    if let Some(replica) = host.key_service.lock().ok().and_then(|mut k| k.take()) {
        // Its process is killed with its task.
        replica.abort();
    }
    println!("stopping the apps…");
    host.processes
        .stop_all("the node host stopped", Duration::from_secs(20))
        .await;
    host.send_logs(None).await;
    logs.abort();
    outcome
}

impl Host {
    /// Joins, then leases until the lease is lost; then fences and joins
    /// again. Returns only on an error no retry can mend.
    async fn serve(self: Arc<Self>) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(200);
        loop {
            let joined = match self.join().await {
                Ok(joined) => joined,
                Err(e) if e.status() == Some(reqwest::StatusCode::UNAUTHORIZED) => {
                    anyhow::bail!("cannot join: {e}");
                }
                Err(e)
                    if matches!(
                        e.status(),
                        Some(
                            reqwest::StatusCode::UNPROCESSABLE_ENTITY
                                | reqwest::StatusCode::BAD_REQUEST
                                | reqwest::StatusCode::FORBIDDEN
                        )
                    ) =>
                {
                    anyhow::bail!("cannot join: {e}");
                }
                Err(e) => {
                    eprintln!(
                        "cannot join yet ({e}); retrying in {} ms",
                        backoff.as_millis()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            println!(
                "joined as node `{}` (lease {} s), apps listen on {}",
                joined.node, joined.lease_secs, self.settings.advertise
            );
            if let Some(granted) = joined.capacity.filter(|c| *c != self.settings.capacity) {
                println!(
                    "the platform grants this host {} MB and {} cores (it offered {} MB and {} \
                     cores): an admin sets the grant on the join token",
                    granted.memory_mb,
                    granted.cores,
                    self.settings.capacity.memory_mb,
                    self.settings.capacity.cores
                );
            }
            if let Some(domain) = &joined.key_service {
                self.run_key_service(domain);
            }
            self.clone().lease(&joined).await;
            // Fenced: nothing runs here that the API may place elsewhere.
            self.processes
                .stop_all("the node host lost its lease (node lost)", FENCE_GRACE)
                .await;
            if let Ok(mut credential) = self.link.credential.write() {
                *credential = None;
            }
        }
    }

    /// Starts this host's replica of the key service at `domain`, once.
    fn run_key_service(self: &Arc<Self>, domain: &str) {
        let Ok(mut running) = self.key_service.lock() else {
            return;
        };
        if running.is_some() {
            return;
        }
        let config = self.processes.config();
        let settings = &self.settings;
        let service = super::key_service::KeyServiceConfig {
            mse_run: settings.mse_run.clone(),
            dir: settings.nodes_dir.join(super::process::KEY_SERVICE),
            quotes: super::process::quotes(config, &settings.tee),
            domain: domain.to_string(),
            node_id: settings.name.clone(),
            listen_ip: settings.advertise,
            api_urls: settings.api.clone(),
            api_ca_sha256: Some(hex::encode(settings.token.ca_sha256)),
        };
        let registry = Arc::new(HostRegistry {
            link: self.link.clone(),
        });
        *running = Some(tokio::spawn(super::key_service::supervise(
            service,
            registry,
            std::future::pending(),
        )));
    }

    async fn join(&self) -> Result<Joined, CallError> {
        let key = mse_attest::simulation::QuoteKey::generate();
        let public = key.public_key_pem().map_err(|e| CallError::Answered {
            status: reqwest::StatusCode::INTERNAL_SERVER_ERROR,
            message: e.to_string(),
        })?;
        let request = JoinRequest {
            token: self.settings.token.to_string(),
            name: self.settings.name.clone(),
            advertise: self.settings.advertise,
            capacity: self.settings.capacity,
            quote_key: public,
            tee: self.settings.tee.tee,
        };
        let joined: Joined = self.link.post_json("/nodes/join", &request).await?;
        let local = |e: anyhow::Error| CallError::Answered {
            status: reqwest::StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("{e:#}"),
        };
        let config = self.processes.config();
        let key_pem = key
            .key_pem()
            .map_err(|e| local(anyhow::anyhow!("the quote key: {e}")))?;
        write_file(&config.quote.key, key_pem.as_bytes(), true).map_err(local)?;
        write_file(&config.quote.chain, joined.quote_chain.as_bytes(), false).map_err(local)?;
        write_file(&config.signer_pub, joined.signer_pem.as_bytes(), false).map_err(local)?;
        let sandbox = match joined.sandbox.as_str() {
            "best-effort" => mse_run::sandbox::Mode::BestEffort,
            _ => mse_run::sandbox::Mode::Required,
        };
        self.processes.configure(crate::domain::nodes::NodeOptions {
            config_timeout_secs: joined.config_timeout_secs.clamp(10, 86_400),
            sandbox,
        });
        if let Ok(mut credential) = self.link.credential.write() {
            *credential = Some(joined.credential.clone());
        }
        Ok(joined)
    }

    /// Renews the lease until it is lost: the API says it ran out, or no
    /// renewal succeeded for two thirds of it.
    async fn lease(self: Arc<Self>, joined: &Joined) {
        let lease = Duration::from_secs(joined.lease_secs.max(1));
        let fence_after = lease * 2 / 3;
        let wait_ms = LEASE_WAIT_MS.min(joined.lease_secs.max(1) * 1000 / 6);
        let mut renewed = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            let sent = Instant::now();
            let request = LeaseRequest {
                running: self.running(),
                wait_ms,
            };
            let call = self
                .link
                .post_json::<LeaseGranted>("/nodes/lease", &request);
            let left = fence_after.saturating_sub(renewed.elapsed());
            match tokio::time::timeout(left, call).await {
                Ok(Ok(granted)) => {
                    renewed = sent;
                    backoff = Duration::from_millis(100);
                    self.clone().act(granted).await;
                }
                Ok(Err(e)) if e.status() == Some(reqwest::StatusCode::CONFLICT) => {
                    eprintln!("the lease is lost: {e}");
                    return;
                }
                Ok(Err(e)) => {
                    if renewed.elapsed() >= fence_after {
                        eprintln!(
                            "no renewal for {} ms ({e}): stopping every app",
                            fence_after.as_millis()
                        );
                        return;
                    }
                    eprintln!("cannot renew the lease yet: {e}");
                    tokio::time::sleep(backoff.min(fence_after.saturating_sub(renewed.elapsed())))
                        .await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(_) => {
                    eprintln!(
                        "no renewal for {} ms (the API does not answer): stopping every app",
                        fence_after.as_millis()
                    );
                    return;
                }
            }
        }
    }

    /// The apps this host runs or is starting (their package being
    /// fetched, included).
    fn running(&self) -> Vec<String> {
        let mut running = self.processes.held();
        if let Ok(pending) = self.pending.lock() {
            running.extend(pending.iter().cloned());
        }
        running.into_iter().collect()
    }

    async fn act(self: Arc<Self>, granted: LeaseGranted) {
        for order in &granted.stop {
            self.processes.stop_once(&order.app, &order.reason);
        }
        if granted.start.is_empty() {
            return;
        }
        let current = self.catalog.lock().map(|c| c.clone()).unwrap_or_default();
        if current != granted.catalog_digest {
            if let Err(e) = self.fetch_catalog(&granted.catalog_digest).await {
                eprintln!("cannot fetch the catalog: {e:#}");
            }
        }
        for assignment in granted.start {
            let host = self.clone();
            tokio::spawn(async move { host.start(assignment).await });
        }
    }

    async fn fetch_catalog(&self, digest: &str) -> anyhow::Result<()> {
        let response = self
            .link
            .send(self.link.client.get(self.link.url("/nodes/catalog")))
            .await?;
        let text = response.text().await?;
        let catalog = mse_runtime::Catalog::parse("the platform's catalog", &text)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if catalog.digest() != digest {
            anyhow::bail!("the catalog changed while it was fetched");
        }
        write_file(&self.processes.config().catalog, text.as_bytes(), false)?;
        if let Ok(mut current) = self.catalog.lock() {
            *current = digest.to_string();
        }
        Ok(())
    }

    async fn start(self: Arc<Self>, assignment: Assignment) {
        let id = assignment.app.clone();
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(id.clone());
        }
        self.clone().launch(assignment).await;
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&id);
        }
    }

    async fn launch(self: Arc<Self>, assignment: Assignment) {
        let id = assignment.app.clone();
        let sink = Arc::new(ApiSink {
            host: self.clone(),
            app: id.clone(),
        });
        let launch = match self.fetch(&assignment).await {
            Ok(launch) => launch,
            Err(e) => {
                let event = Event::new(AppStatus::OnError, chrono::Utc::now())
                    .because(format!("cannot fetch the app's package: {e:#}"));
                sink.report(event).await;
                return;
            }
        };
        if let Err(e) = self.processes.spawn(launch, sink.clone()).await {
            let event = Event::new(AppStatus::OnError, chrono::Utc::now())
                .because(format!("cannot start the node: {e:#}"));
            sink.report(event).await;
        }
    }

    /// Fetches an app's package and checks its SHA-256.
    async fn fetch(&self, assignment: &Assignment) -> anyhow::Result<Launch> {
        let sha = &assignment.package_sha256;
        let response = self
            .link
            .send(
                self.link
                    .client
                    .get(self.link.url(&format!("/nodes/packages/{sha}"))),
            )
            .await?;
        let bytes = response.bytes().await?;
        let seen = hex::encode(Sha256::digest(&bytes));
        if !seen.eq_ignore_ascii_case(sha) {
            anyhow::bail!("the package's SHA-256 is {seen}, not {sha}: refused");
        }
        let package = self.packages_dir.join(format!("{}.tar", assignment.app));
        write_file(&package, &bytes, true)?;
        let owner_chain = match &assignment.tls {
            AppTls::Owner { chain_pem } => {
                let path = self
                    .packages_dir
                    .join(format!("{}.owner.pem", assignment.app));
                write_file(&path, chain_pem.as_bytes(), false)?;
                Some(path)
            }
            _ => None,
        };
        let restore = match &assignment.storage {
            Some(storage) if storage.version > 0 => {
                Some(self.fetch_snapshot(&assignment.app).await?)
            }
            _ => None,
        };
        Ok(Launch {
            assignment: assignment.clone(),
            package,
            owner_chain,
            restore,
        })
    }

    /// Fetches the snapshot of app `id`'s storage the platform holds into
    /// its restore folder (its sealed manifest as `manifest`, its blobs by
    /// id), checking each blob against its name.
    async fn fetch_snapshot(&self, id: &str) -> anyhow::Result<PathBuf> {
        let head: mse_api::node::StorageHead = self
            .link
            .send(
                self.link
                    .client
                    .get(self.link.url(&format!("/nodes/storage/{id}"))),
            )
            .await?
            .json()
            .await?;
        let dir = self.processes.restore_dir(id);
        let _ = std::fs::remove_dir_all(&dir);
        crate::data::dir::create_private_dir(&self.processes.storage_dir(id))?;
        crate::data::dir::create_private_dir(&dir)?;
        let manifest =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &head.manifest)
                .context("the platform's snapshot manifest is not base64")?;
        write_file(
            &dir.join(mse_api::launch::RESTORE_MANIFEST_FILE),
            &manifest,
            true,
        )?;
        for blob in &head.blobs {
            if !mse_api::node::is_blob_id(blob) {
                anyhow::bail!("the platform's snapshot names `{blob}`, not a blob");
            }
            let bytes = self
                .link
                .send(
                    self.link
                        .client
                        .get(self.link.url(&format!("/nodes/storage/{id}/blobs/{blob}"))),
                )
                .await?
                .bytes()
                .await?;
            if !hex::encode(Sha256::digest(&bytes)).eq_ignore_ascii_case(blob) {
                anyhow::bail!("blob {blob} of the app's storage is not what its name says");
            }
            write_file(&dir.join(blob.to_ascii_lowercase()), &bytes, true)?;
        }
        Ok(dir)
    }

    /// Sends what is new in the logs (of `only`, or of every app with a
    /// log here).
    async fn send_logs(&self, only: Option<&str>) {
        let _one_at_a_time = self.sending_logs.lock().await;
        let logs_dir = self.processes.logs_dir();
        let ids: Vec<String> = match only {
            Some(id) => vec![id.to_string()],
            None => std::fs::read_dir(&logs_dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter_map(|e| {
                            e.file_name()
                                .to_str()
                                .and_then(|n| n.strip_suffix(".log"))
                                .map(String::from)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        for id in ids {
            let path = self.processes.log_path(&id);
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let sent = self
                .logs_sent
                .lock()
                .ok()
                .and_then(|m| m.get(&id).copied())
                .unwrap_or(0);
            let len = bytes.len() as u64;
            // A log rewritten shorter (kept to its bound) is sent anew.
            let (from, replace) = if len < sent { (0, true) } else { (sent, false) };
            if from == len {
                continue;
            }
            let start = usize::try_from(from).unwrap_or(0);
            let end = (start + MAX_LOG_CHUNK).min(bytes.len());
            let chunk = bytes[start..end].to_vec();
            let url = self.link.url(&format!(
                "/nodes/logs/{id}{}",
                if replace { "?replace=true" } else { "" }
            ));
            let request = self.link.client.post(url).body(chunk);
            match self.link.send(request).await {
                Ok(_) => {
                    if let Ok(mut m) = self.logs_sent.lock() {
                        m.insert(id.clone(), end as u64);
                    }
                }
                Err(e) if e.status() == Some(reqwest::StatusCode::NOT_FOUND) => {
                    // The app is no longer this host's: nothing to keep.
                    self.forget_log(&id);
                }
                Err(_) => {}
            }
        }
    }

    fn forget_log(&self, id: &str) {
        let _ = std::fs::remove_file(self.processes.log_path(id));
        if let Ok(mut m) = self.logs_sent.lock() {
            m.remove(id);
        }
    }
}

/// A host's replica of the key service, recorded through the node protocol.
struct HostRegistry {
    link: Arc<Link>,
}

impl super::key_service::Registry for HostRegistry {
    fn started<'a>(
        &'a self,
        addr: std::net::SocketAddr,
        measurement: &'a str,
        credential_hash: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let started = mse_api::keys::ReplicaStarted {
                port: addr.port(),
                measurement: measurement.to_string(),
                credential_hash: credential_hash.to_string(),
            };
            let request = self
                .link
                .client
                .post(self.link.url("/nodes/key-service"))
                .json(&started);
            self.link
                .send(request)
                .await
                .context("cannot record the key service")?;
            Ok(())
        })
    }

    fn ended(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let request = self.link.client.delete(self.link.url("/nodes/key-service"));
            let _ = self.link.send(request).await;
        })
    }
}

/// The events of one app, sent to the API.
struct ApiSink {
    host: Arc<Host>,
    app: String,
}

impl ApiSink {
    /// Sends a snapshot: its new blobs, then the commit.
    async fn send_snapshot(&self, snapshot: &Snapshot) -> anyhow::Result<()> {
        let link = &self.host.link;
        let app = &self.app;
        for (id, bytes) in &snapshot.new_blobs {
            let request = link
                .client
                .put(link.url(&format!("/nodes/storage/{app}/blobs/{id}")))
                .body(bytes.clone());
            link.send(request).await?;
        }
        let request = link
            .client
            .post(link.url(&format!("/nodes/storage/{app}/head")))
            .json(&snapshot.commit);
        link.send(request).await?;
        Ok(())
    }
}

impl EventSink for ApiSink {
    fn snapshot<'a>(&'a self, snapshot: &'a Snapshot) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.send_snapshot(snapshot))
    }

    fn report(&self, event: Event) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move {
            let terminal = matches!(event.status, AppStatus::Stopped | AppStatus::OnError);
            if terminal {
                // Its last lines reach the API before its last state does.
                self.host.send_logs(Some(&self.app)).await;
                let _ =
                    std::fs::remove_file(self.host.packages_dir.join(format!("{}.tar", self.app)));
                let _ = std::fs::remove_file(
                    self.host
                        .packages_dir
                        .join(format!("{}.owner.pem", self.app)),
                );
            }
            let report = EventReport {
                app: self.app.clone(),
                event,
            };
            let mut backoff = Duration::from_millis(100);
            for _ in 0..8 {
                let request = self
                    .host
                    .link
                    .client
                    .post(self.host.link.url("/nodes/events"))
                    .json(&report);
                match self.host.link.send(request).await {
                    Ok(_) => break,
                    Err(e) if e.status().is_some_and(|s| s.is_client_error()) => {
                        // Not this host's (any more), or refused: the node
                        // must not go on.
                        eprintln!("app {}: the API refused an event: {e}", self.app);
                        return (!terminal).then(|| format!("the API refused its event: {e}"));
                    }
                    Err(_) => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            }
            if terminal {
                self.host.forget_log(&self.app);
            }
            None
        })
    }
}

/// Writes a file of the host's (mode 0600 when private, else 0644).
fn write_file(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    if private {
        mse_package::context::write_private(path, bytes)
            .with_context(|| format!("cannot write {}", path.display()))
    } else {
        std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
    }
}
