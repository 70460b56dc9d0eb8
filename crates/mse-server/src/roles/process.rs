//! Node processes: one `mse-run` per app on this machine, started from an
//! [`Assignment`], its status events handed to an [`EventSink`] as they
//! come, stopped by signal. The API's machine (the local runner) and every
//! remote node host run their apps through this one type; they differ only
//! in where the events go (the store, or the API over TLS).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use mse_api::apps::AppStatus;
use mse_api::event::{Event, SnapshotWritten};
use mse_api::launch::{
    Installer, Quotes, Tls, DEFAULT_ATTESTATION_ROOT, DEFAULT_TSM_ROOT, LAUNCH_FILE,
};
use mse_api::node::{AppTls, Assignment};
use mse_api::tee::Tee;
use sha2::Digest as _;
use tokio::io::AsyncBufReadExt;

use crate::data::dir::create_private_dir;
use crate::state::backend::BoxFuture;

/// Where a node's status events go.
pub trait EventSink: Send + Sync + 'static {
    /// Records `event` of the sink's app. `Some(reason)` asks for the node
    /// to be stopped (it reported something it must not go on after).
    fn report(&self, event: Event) -> BoxFuture<'_, Option<String>>;
    /// Keeps the snapshot of the app's persistent storage the node wrote
    /// into `outbox` ([`Snapshot::read`]); an error says why it was not
    /// kept (the previous one stays whole).
    fn snapshot<'a>(&'a self, snapshot: &'a Snapshot) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// A snapshot of an app's persistent storage its node wrote back, as read
/// from its outbox: the new blobs (named by their SHA-256, checked) and
/// the commit naming them all.
#[derive(Debug)]
pub struct Snapshot {
    /// The blobs this snapshot adds, `(id, bytes)`.
    pub new_blobs: Vec<(String, Vec<u8>)>,
    /// What makes it the app's storage.
    pub commit: mse_api::node::StorageCommit,
}

impl Snapshot {
    /// Reads what the node's event `written` names from `outbox`: only
    /// names of the node's own form (`manifest-<n>`, 64 hex digits), each
    /// blob checked against its name. The blobs are the new ones and those
    /// a snapshot that was not kept left in the outbox.
    pub fn read(written: &SnapshotWritten, outbox: &Path) -> anyhow::Result<Snapshot> {
        if written.manifest != format!("manifest-{}", written.version)
            || !written
                .blobs
                .iter()
                .chain(&written.new_blobs)
                .all(|id| mse_api::node::is_blob_id(id))
            || written.blobs.len() > 8192
        {
            anyhow::bail!("the node's snapshot event names files that are not its own");
        }
        let manifest = std::fs::read(outbox.join(&written.manifest))
            .with_context(|| format!("cannot read {}", written.manifest))?;
        let mut new_blobs = Vec::new();
        let left = written
            .blobs
            .iter()
            .filter(|id| !written.new_blobs.contains(id) && outbox.join(id).is_file());
        for id in written.new_blobs.iter().chain(left) {
            let bytes =
                std::fs::read(outbox.join(id)).with_context(|| format!("cannot read blob {id}"))?;
            let seen = hex::encode(sha2::Sha256::digest(&bytes));
            if !seen.eq_ignore_ascii_case(id) {
                anyhow::bail!("blob {id} is not what its name says");
            }
            new_blobs.push((id.to_ascii_lowercase(), bytes));
        }
        Ok(Snapshot {
            new_blobs,
            commit: mse_api::node::StorageCommit {
                version: written.version,
                manifest: base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    manifest,
                ),
                blobs: written
                    .blobs
                    .iter()
                    .map(|b| b.to_ascii_lowercase())
                    .collect(),
                size: written.size,
            },
        })
    }

    /// Removes the files of a kept snapshot.
    pub fn clear(written: &SnapshotWritten, outbox: &Path) {
        let _ = std::fs::remove_file(outbox.join(&written.manifest));
        for id in &written.blobs {
            let _ = std::fs::remove_file(outbox.join(id));
        }
    }
}

/// How often a node writes back an app's persistent storage, at most.
pub const STORAGE_PERIOD: Duration = Duration::from_secs(2);

/// What a node process needs of its machine.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// The `mse-run` binary.
    pub mse_run: PathBuf,
    /// Where runtime environments are cached.
    pub cache_dir: PathBuf,
    /// What installs their packages.
    pub installer: mse_runtime::Installer,
    /// The nodes' private folders (`<uuid>/`) and their logs (`logs/`).
    pub nodes_dir: PathBuf,
    /// The TEE of this machine's nodes.
    pub tee: crate::domain::nodes::TeeDevice,
    /// How nodes run apps.
    pub options: crate::domain::nodes::NodeOptions,
    /// The runtime catalog (TOML).
    pub catalog: PathBuf,
    /// The enclave-signing public key (PEM).
    pub signer_pub: PathBuf,
    /// This machine's quote key and its chain (simulation).
    pub quote: QuoteFiles,
    /// The address nodes listen on (a port of their own choosing).
    pub listen_ip: IpAddr,
}

/// The files of a machine's simulation quote key.
#[derive(Debug, Clone)]
pub struct QuoteFiles {
    /// This machine's quote-signing key (PKCS#8 PEM, mode 0600).
    pub key: PathBuf,
    /// Its certificate then the CA's (PEM).
    pub chain: PathBuf,
}

/// An app to start, with where its files are on this machine.
#[derive(Debug, Clone)]
pub struct Launch {
    /// What to run.
    pub assignment: Assignment,
    /// Its encrypted package.
    pub package: PathBuf,
    /// The owner's certificate chain (PEM), owner mode.
    pub owner_chain: Option<PathBuf>,
    /// The snapshot of its persistent storage to restore (its sealed
    /// manifest as `manifest` and its blobs by id), fetched by the caller
    /// into [`NodeProcesses::restore_dir`].
    pub restore: Option<PathBuf>,
}

/// The node processes of this machine.
#[derive(Clone)]
pub struct NodeProcesses {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NodeProcesses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeProcesses")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: ProcessConfig,
    /// The node options in force (a host learns them as it joins).
    runtime: Mutex<crate::domain::nodes::NodeOptions>,
    /// The live nodes' process ids.
    pids: Mutex<HashMap<String, u32>>,
    /// Apps whose node is being started (not yet in `pids`).
    starting: Mutex<HashSet<String>>,
    /// Nodes asked to stop, with why (what the app's state will say).
    stopping: Mutex<HashMap<String, String>>,
}

/// The folder of the apps' logs in the nodes' folder (no app uuid reads
/// so).
pub const LOGS: &str = "logs";
/// The folder of the quote keys in the nodes' folder (mode 0700).
pub const QUOTE_KEYS: &str = "quote-keys";
/// The key service's folder in the nodes' folder (its root key lives there).
pub const KEY_SERVICE: &str = "key-service";
/// The folder of the apps' persistent storage in the nodes' folder.
pub const STORAGE: &str = "storage";
/// A host's folder of the packages it fetched (mode 0700).
pub const PACKAGES: &str = "packages";
/// The folder of this machine's ACME account key and of the CA bundles of
/// the ACME server (mode 0700).
pub const ACME: &str = "acme";
/// The stem of an SGX app's manifest and SIGSTRUCT in its node folder
/// (`app.manifest.sgx`, `app.sig`), which Gramine's loader is given.
const ENCLAVE: &str = "app";

impl NodeProcesses {
    /// The node processes of a machine set up as `config` says.
    pub fn new(config: ProcessConfig) -> Self {
        NodeProcesses {
            inner: Arc::new(Inner {
                runtime: Mutex::new(config.options),
                config,
                pids: Mutex::new(HashMap::new()),
                starting: Mutex::new(HashSet::new()),
                stopping: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Sets the node options of the nodes started from now on.
    pub fn configure(&self, options: crate::domain::nodes::NodeOptions) {
        if let Ok(mut runtime) = self.inner.runtime.lock() {
            *runtime = options;
        }
    }

    /// How this machine runs nodes.
    pub fn config(&self) -> &ProcessConfig {
        &self.inner.config
    }

    /// Creates the nodes' folder (mode 0711: each app's own user gets
    /// through to its work folder, and lists nothing) and its logs folder
    /// (0700: only the platform reads logs).
    pub fn create_dirs(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let nodes_dir = &self.inner.config.nodes_dir;
        std::fs::create_dir_all(nodes_dir)
            .with_context(|| format!("cannot create {}", nodes_dir.display()))?;
        std::fs::set_permissions(nodes_dir, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("cannot set the mode of {}", nodes_dir.display()))?;
        create_private_dir(&self.logs_dir())
    }

    /// The logs folder.
    pub fn logs_dir(&self) -> PathBuf {
        self.inner.config.nodes_dir.join(LOGS)
    }

    /// The log file of an app's node: in the logs folder, so that it
    /// outlives the node's own folder.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.logs_dir().join(format!("{id}.log"))
    }

    /// The folder of an app's node while it runs.
    pub fn node_dir(&self, id: &str) -> PathBuf {
        self.inner.config.nodes_dir.join(id)
    }

    /// The folder of an app's persistent storage on this machine while its
    /// node runs (mode 0700): the snapshot to restore, and the node's
    /// outbox of snapshots to write back. Outside the node's own folder,
    /// which the node wipes when it ends.
    pub fn storage_dir(&self, id: &str) -> PathBuf {
        self.inner.config.nodes_dir.join(STORAGE).join(id)
    }

    /// Where the snapshot of app `id` to restore is fetched.
    pub fn restore_dir(&self, id: &str) -> PathBuf {
        self.storage_dir(id).join("restore")
    }

    /// Removes what this machine keeps of a finished app's node (its log).
    pub fn forget_node(&self, id: &str) {
        remove_node_dir(&self.node_dir(id));
        let _ = std::fs::remove_file(self.log_path(id));
    }

    /// Starts the node of `launch`, its events going to `sink`; nothing
    /// (`Ok(None)`) when that app's node runs or is starting already.
    /// Returns its process id.
    pub async fn spawn(
        &self,
        launch: Launch,
        sink: Arc<dyn EventSink>,
    ) -> anyhow::Result<Option<u32>> {
        let id = launch.assignment.app.clone();
        {
            let mut starting = self.inner.starting.lock().map_err(|_| poisoned())?;
            if self.has_node(&id) || !starting.insert(id.clone()) {
                return Ok(None);
            }
        }
        let started = self.start(launch, sink).await;
        if let Ok(mut starting) = self.inner.starting.lock() {
            starting.remove(&id);
        }
        started.map(Some)
    }

    async fn start(&self, launch: Launch, sink: Arc<dyn EventSink>) -> anyhow::Result<u32> {
        let config = &self.inner.config;
        let app = &launch.assignment;
        let options = *self.inner.runtime.lock().map_err(|_| poisoned())?;
        create_private_dir(&self.logs_dir())?;
        let description = self.describe(&launch, &config.tee, options)?;
        // Written once, in the node's own folder (mode 0700), for the node to
        // read at start: its command line then names the app's folder, and
        // the file shows an operator what the node was started with.
        let work_dir = self.node_dir(&app.app);
        create_private_dir(&work_dir)?;
        if app.storage.is_some() {
            create_private_dir(&self.storage_dir(&app.app))?;
        }
        let launch_file = work_dir.join(LAUNCH_FILE);
        mse_package::context::write_private(&launch_file, description.to_json().as_bytes())
            .with_context(|| format!("cannot write {}", launch_file.display()))?;
        let mut command = if config.tee.tee == Tee::Sgx {
            match self.enclave(&launch_file, &work_dir, app).await {
                Ok(command) => command,
                Err(e) => {
                    remove_node_dir(&work_dir);
                    return Err(e);
                }
            }
        } else {
            let mut command = tokio::process::Command::new(&config.mse_run);
            command.arg("--launch").arg(&launch_file);
            command
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        // A node outlives no platform: it stops its app and wipes what it
        // decrypted when this process dies, however it dies.
        sigterm_with_parent(&mut command);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                remove_node_dir(&work_dir);
                return Err(e).with_context(|| format!("cannot run {}", config.mse_run.display()));
            }
        };
        let pid = child.id().context("the node has no pid")?;
        if let Ok(mut pids) = self.inner.pids.lock() {
            pids.insert(app.app.clone(), pid);
        }
        let stdout = child.stdout.take().context("the node has no output")?;
        let processes = self.clone();
        let id = app.app.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let mut ended = false;
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(mut event) = serde_json::from_str::<Event>(&line) else {
                    continue;
                };
                // A snapshot written back is kept, not a change of state.
                if let Some(written) = event.snapshot.take() {
                    let outbox = processes.storage_dir(&id).join("outbox");
                    let kept = match Snapshot::read(&written, &outbox) {
                        Ok(snapshot) => sink.snapshot(&snapshot).await,
                        Err(e) => Err(e),
                    };
                    match kept {
                        Ok(()) => Snapshot::clear(&written, &outbox),
                        Err(e) => {
                            // Its blobs stay for the next snapshot to send.
                            let _ = std::fs::remove_file(outbox.join(&written.manifest));
                            eprintln!(
                                "app {id}: snapshot {} of its storage not kept: {e:#}",
                                written.version
                            );
                        }
                    }
                    continue;
                }
                if event.status == AppStatus::Stopped {
                    // The platform's reason when it asked (the node only saw
                    // a signal), else the node's own (its expiry).
                    if let Some(asked) = processes.asked(&id) {
                        event.reason = Some(asked);
                    }
                }
                ended |= matches!(event.status, AppStatus::Stopped | AppStatus::OnError);
                if let Some(why) = sink.report(event).await {
                    processes.stop_once(&id, &why);
                }
            }
            let status = child.wait().await;
            // However the node ended (a SIGKILL included), nothing it
            // decrypted stays on this machine, nor its folder; its log stays
            // in the logs folder until the app is removed.
            remove_node_dir(&processes.node_dir(&id));
            let _ = std::fs::remove_dir_all(processes.storage_dir(&id));
            // The app's cgroup, which a node killed with SIGKILL leaves.
            mse_run::limits::remove_leftover(&mse_run::limits::cgroup_name(
                &id,
                &processes.node_dir(&id),
            ));
            if let Ok(mut pids) = processes.inner.pids.lock() {
                pids.remove(&id);
            }
            let asked = processes
                .inner
                .stopping
                .lock()
                .ok()
                .and_then(|mut s| s.remove(&id));
            // A node that ends without a final word was stopped when the
            // platform asked (it may not have been listening for the signal
            // yet); otherwise it failed.
            if !ended || asked.is_some() {
                let now = chrono::Utc::now();
                let event = match (asked, status) {
                    (Some(reason), _) => Event::new(AppStatus::Stopped, now).because(reason),
                    (None, Ok(s)) => Event::new(AppStatus::OnError, now)
                        .because(format!("the node ended ({s}) without reporting why")),
                    (None, Err(e)) => Event::new(AppStatus::OnError, now)
                        .because(format!("the node was lost: {e}")),
                };
                sink.report(event).await;
            }
        });
        Ok(pid)
    }

    /// The app's SGX enclave (docs/attestation.md): its manifest, the
    /// catalog's template of its image and enclave size rendered for its
    /// fingerprint (which `mse-run --fingerprint` computes from the launch
    /// file), and the SIGSTRUCT of the enclave's replayed measurement,
    /// written in its node folder as `app.manifest.sgx` and `app.sig`; then
    /// Gramine's loader, started there.
    async fn enclave(
        &self,
        launch_file: &Path,
        work_dir: &Path,
        app: &Assignment,
    ) -> anyhow::Result<tokio::process::Command> {
        let config = &self.inner.config;
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(&config.mse_run)
                .arg("--launch")
                .arg(launch_file)
                .arg("--fingerprint")
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .context("mse-run --fingerprint took more than 60 s")?
        .with_context(|| format!("cannot run {}", config.mse_run.display()))?;
        if !output.status.success() {
            anyhow::bail!(
                "{}",
                String::from_utf8_lossy(&output.stderr)
                    .trim()
                    .trim_start_matches("error: ")
            );
        }
        let mut fingerprint = [0u8; 32];
        hex::decode_to_slice(
            String::from_utf8_lossy(&output.stdout).trim(),
            &mut fingerprint,
        )
        .context("mse-run --fingerprint printed no fingerprint")?;
        let text = std::fs::read_to_string(&config.catalog)
            .with_context(|| format!("cannot read {}", config.catalog.display()))?;
        let catalog = mse_runtime::Catalog::parse(&config.catalog.display().to_string(), &text)?;
        let spec = catalog.find(&app.image)?;
        let enclave = spec
            .tee
            .sgx
            .iter()
            .find(|e| e.enclave_size == app.enclave_size)
            .with_context(|| {
                format!(
                    "the catalog has no SGX enclave of {} for the enclave size {}: the operator \
                     publishes one ([[image.tee.sgx]], docs/attestation.md)",
                    app.image, app.enclave_size
                )
            })?;
        let manifest = mse_attest::enclave::render_manifest(&enclave.manifest, &fingerprint)?;
        let mr_enclave = enclave.layout.mr_enclave(manifest.as_bytes())?;
        let key_path = config.tee.signing_key.as_ref().context(
            "this node host has no enclave-signing key to sign SGX enclaves with: give \
             --enclave-signing-key",
        )?;
        let key = std::fs::read_to_string(key_path)
            .with_context(|| format!("cannot read {}", key_path.display()))?;
        let today: u32 = chrono::Utc::now()
            .format("%Y%m%d")
            .to_string()
            .parse()
            .unwrap_or(0);
        let sigstruct =
            mse_attest::enclave::sigstruct(&key, &mr_enclave, today).with_context(|| {
                format!(
                    "cannot sign the enclave with {} (give another key with \
                     --enclave-signing-key)",
                    key_path.display()
                )
            })?;
        mse_package::context::write_private(
            &work_dir.join(format!("{ENCLAVE}.manifest.sgx")),
            manifest.as_bytes(),
        )?;
        mse_package::context::write_private(&work_dir.join(format!("{ENCLAVE}.sig")), &sigstruct)?;
        let loader = config
            .tee
            .loader
            .clone()
            .unwrap_or_else(|| "gramine-sgx".into());
        let mut command = tokio::process::Command::new(loader);
        command.arg(ENCLAVE).current_dir(work_dir);
        Ok(command)
    }

    /// What the node of `launch` is told to run: the app, this machine's
    /// runtime, files and quote provider, and the node options in force.
    fn describe(
        &self,
        launch: &Launch,
        tee: &crate::domain::nodes::TeeDevice,
        options: crate::domain::nodes::NodeOptions,
    ) -> anyhow::Result<mse_api::launch::Launch> {
        let config = &self.inner.config;
        let app = &launch.assignment;
        let expires_at = app.expires_at;
        let tls = match (&app.tls, &launch.owner_chain) {
            (AppTls::Owner { .. }, Some(chain)) => Tls::Owner {
                certificate: chain.clone(),
                expires_at: Some(expires_at),
            },
            (AppTls::Owner { .. }, None) => anyhow::bail!("the owner's certificate is missing"),
            (AppTls::Operator, _) => Tls::Plain { expires_at },
            (AppTls::RaTls, _) => Tls::Ratls { expires_at },
            (AppTls::Acme(ca), _) => {
                let dir = config.nodes_dir.join(ACME);
                create_private_dir(&dir)?;
                let ca_bundle = match &ca.ca_bundle_pem {
                    Some(pem) => {
                        // Named by its content: bundles never change under a
                        // running node.
                        let digest =
                            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(pem.as_bytes()));
                        let path = dir.join(format!("ca-{}.pem", &digest[..16]));
                        if !path.exists() {
                            std::fs::write(&path, pem)?;
                        }
                        Some(path)
                    }
                    None => None,
                };
                Tls::Acme {
                    expires_at,
                    directory: ca.directory.clone(),
                    account_key: dir.join("account.pem"),
                    ca_bundle,
                    lifetime: ca.lifetime_secs.map(Duration::from_secs),
                }
            }
        };
        let quotes = quotes(config, tee);
        let cores = u32::try_from(app.cores)
            .with_context(|| format!("{} cores is more than a node can be given", app.cores))?;
        let pccs_url = match tee.tee {
            Tee::Sgx | Tee::Tdx => tee.pccs_url.clone(),
            Tee::Simulation | Tee::SevSnp => None,
        };
        let description =
            mse_api::launch::Launch {
                app: mse_api::launch::App {
                    uuid: app.app.clone(),
                    application: app.application.clone(),
                    domain: app.domain.clone(),
                    code: launch.package.clone(),
                    healthcheck: app.healthcheck.clone(),
                },
                runtime: mse_api::launch::Runtime {
                    image: app.image.clone(),
                    enclave_size: app.enclave_size.clone(),
                    catalog: Some(config.catalog.clone()),
                    cache_dir: config.cache_dir.clone(),
                    installer: Some(match &config.installer {
                        mse_runtime::Installer::Uv(path) => Installer::UvAt(path.clone()),
                        mse_runtime::Installer::Pip => Installer::Pip,
                    }),
                },
                node: mse_api::launch::Node {
                    // A port of its own choosing, told in its first event: no
                    // other process can take it between a choice here and its
                    // bind there.
                    listen: std::net::SocketAddr::new(config.listen_ip, 0),
                    work_dir: self.node_dir(&app.app),
                    log_file: Some(self.log_path(&app.app)),
                },
                timeouts: mse_api::launch::Timeouts {
                    config: Some(Duration::from_secs(options.config_timeout_secs)),
                    ..Default::default()
                },
                sandbox: options.sandbox.into(),
                limits: mse_api::launch::Limits {
                    memory_mb: NonZeroU64::new(app.memory_mb),
                    cores: NonZeroU32::new(cores),
                },
                quotes,
                pccs_url,
                tls,
                storage: app
                    .storage
                    .as_ref()
                    .map(|storage| mse_api::launch::Storage {
                        app: storage.scope.clone(),
                        cap_bytes: storage.cap_bytes,
                        restore: launch.restore.clone().filter(|_| storage.version > 0).map(
                            |dir| mse_api::launch::Restore {
                                dir,
                                version: storage.version,
                            },
                        ),
                        outbox: self.storage_dir(&app.app).join("outbox"),
                        period: STORAGE_PERIOD,
                    }),
            };
        description.check()?;
        Ok(description)
    }

    /// Why the platform asked this app's node to stop, if it did.
    pub fn asked(&self, id: &str) -> Option<String> {
        self.inner
            .stopping
            .lock()
            .ok()
            .and_then(|s| s.get(id).cloned())
    }

    /// Asks an app's node to stop; `reason` is what its state will say. True
    /// when it had one here.
    #[allow(unsafe_code)]
    pub fn stop(&self, id: &str, reason: &str) -> bool {
        let pid = self.inner.pids.lock().ok().and_then(|p| p.get(id).copied());
        match pid {
            Some(pid) => {
                if let Ok(mut stopping) = self.inner.stopping.lock() {
                    stopping
                        .entry(id.to_string())
                        .or_insert_with(|| reason.to_string());
                }
                // SAFETY: signalling a node process this machine started.
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
                true
            }
            None => false,
        }
    }

    /// Asks an app's node to stop unless it was asked already.
    pub fn stop_once(&self, id: &str, reason: &str) {
        if self.asked(id).is_none() {
            self.stop(id, reason);
        }
    }

    /// The apps whose node runs here, or is starting.
    pub fn held(&self) -> HashSet<String> {
        let mut held: HashSet<String> = self
            .inner
            .pids
            .lock()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        if let Ok(starting) = self.inner.starting.lock() {
            held.extend(starting.iter().cloned());
        }
        held
    }

    /// Whether an app's node runs here.
    pub fn has_node(&self, id: &str) -> bool {
        self.inner
            .pids
            .lock()
            .map(|p| p.contains_key(id))
            .unwrap_or(false)
    }

    /// Asks every node to stop with `reason` and waits (up to `grace`)
    /// until they have.
    pub async fn stop_all(&self, reason: &str, grace: Duration) {
        let ids: Vec<String> = self
            .inner
            .pids
            .lock()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        for id in &ids {
            self.stop(id, reason);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while ids.iter().any(|id| self.has_node(id)) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Removes the folders of nodes that are not running here (left by a
    /// crash, with what they decrypted), keeping their logs, except those
    /// of `keep`.
    pub fn remove_leftovers(&self, keep: &HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.inner.config.nodes_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().to_string();
            let ours =
                [LOGS, QUOTE_KEYS, PACKAGES, ACME, KEY_SERVICE, STORAGE].contains(&id.as_str());
            if !entry.path().is_dir() || ours || keep.contains(&id) || self.has_node(&id) {
                continue;
            }
            let left = entry.path().join("app.log");
            let log = self.log_path(&id);
            if left.is_file() && !log.exists() {
                let _ = std::fs::rename(&left, &log);
            }
            remove_node_dir(&entry.path());
            mse_run::limits::remove_leftover(&mse_run::limits::cgroup_name(&id, &entry.path()));
        }
    }
}

/// Has the process `command` starts get SIGTERM when this process dies,
/// however it dies.
#[allow(unsafe_code)]
pub fn sigterm_with_parent(command: &mut tokio::process::Command) {
    // SAFETY: prctl is async-signal-safe, so it may run between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// Where the nodes of a machine of `tee` get their quotes.
pub fn quotes(config: &ProcessConfig, tee: &crate::domain::nodes::TeeDevice) -> Quotes {
    let root = |usual: &str| tee.root.clone().unwrap_or_else(|| usual.into());
    match tee.tee {
        Tee::Simulation => Quotes::Simulation {
            quote_key: config.quote.key.clone(),
            quote_chain: config.quote.chain.clone(),
            signer_key: config.signer_pub.clone(),
        },
        Tee::Sgx => Quotes::Gramine {
            attestation_root: root(DEFAULT_ATTESTATION_ROOT),
        },
        Tee::Tdx => Quotes::Tdx {
            tsm_root: root(DEFAULT_TSM_ROOT),
        },
        Tee::SevSnp => Quotes::SevSnp {
            tsm_root: root(DEFAULT_TSM_ROOT),
        },
    }
}

fn poisoned() -> anyhow::Error {
    anyhow::anyhow!("a node table lock was poisoned")
}

/// Removes a node's folder: what it decrypted first, then the rest.
pub fn remove_node_dir(dir: &Path) {
    mse_run::workdir::wipe(dir);
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mse_api::node::AcmeCa;

    fn processes(nodes_dir: &Path) -> NodeProcesses {
        NodeProcesses::new(ProcessConfig {
            mse_run: "/nonexistent/mse-run".into(),
            cache_dir: "/var/cache/mse".into(),
            installer: mse_runtime::Installer::Pip,
            nodes_dir: nodes_dir.to_path_buf(),
            tee: Default::default(),
            options: crate::domain::nodes::NodeOptions::default(),
            catalog: "/data/catalog.toml".into(),
            signer_pub: "/data/signer.pub".into(),
            quote: QuoteFiles {
                key: "/nodes/quote-keys/local/quote-key.pem".into(),
                chain: "/nodes/quote-keys/local/quote-chain.pem".into(),
            },
            listen_ip: "127.0.0.1".parse().unwrap(),
        })
    }

    fn launch(tls: AppTls) -> Launch {
        Launch {
            assignment: Assignment {
                app: "a1".into(),
                domain: "a1.localhost".into(),
                application: "app:app".into(),
                image: "ghcr.io/cosmian/mse-flask:20230124182826".into(),
                enclave_size: "1G".into(),
                healthcheck: "/health".into(),
                tls,
                expires_at: chrono::DateTime::from_timestamp(4_000_000_000, 0).unwrap(),
                package_sha256: "00".into(),
                package_bytes: 1,
                memory_mb: 512,
                cores: 0,
                storage: None,
            },
            package: "/data/apps/a1/code.tar".into(),
            owner_chain: None,
            restore: None,
        }
    }

    #[test]
    fn a_node_is_described_from_its_assignment_and_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let processes = processes(dir.path());
        let options = crate::domain::nodes::NodeOptions::default();
        let described = processes
            .describe(&launch(AppTls::RaTls), &Default::default(), options)
            .unwrap();
        assert_eq!(described.app.uuid, "a1");
        assert_eq!(described.app.code, Path::new("/data/apps/a1/code.tar"));
        assert_eq!(described.node.work_dir, dir.path().join("a1"));
        assert_eq!(
            described.node.log_file,
            Some(dir.path().join(LOGS).join("a1.log"))
        );
        assert_eq!(described.node.listen.port(), 0);
        assert_eq!(described.runtime.installer, Some(Installer::Pip));
        assert_eq!(described.limits.memory_mb, NonZeroU64::new(512));
        assert_eq!(described.limits.cores, None, "0 cores: no limit");
        assert_eq!(
            described.timeouts.config,
            Some(Duration::from_secs(options.config_timeout_secs))
        );
        assert_eq!(
            described.tls,
            Tls::Ratls {
                expires_at: chrono::DateTime::from_timestamp(4_000_000_000, 0).unwrap()
            }
        );
        let Quotes::Simulation { quote_key, .. } = &described.quotes else {
            panic!("{described:?}");
        };
        assert_eq!(
            quote_key,
            Path::new("/nodes/quote-keys/local/quote-key.pem")
        );
        let device = |tee, root: Option<&str>| crate::domain::nodes::TeeDevice {
            tee,
            root: root.map(Into::into),
            ..Default::default()
        };
        let gramine = processes
            .describe(&launch(AppTls::RaTls), &device(Tee::Sgx, None), options)
            .unwrap();
        assert_eq!(
            gramine.quotes,
            Quotes::Gramine {
                attestation_root: "/dev/attestation".into()
            }
        );
        let tdx = processes
            .describe(
                &launch(AppTls::RaTls),
                &device(Tee::Tdx, Some("/t")),
                options,
            )
            .unwrap();
        assert_eq!(
            tdx.quotes,
            Quotes::Tdx {
                tsm_root: "/t".into()
            }
        );
        let snp = processes
            .describe(&launch(AppTls::RaTls), &device(Tee::SevSnp, None), options)
            .unwrap();
        assert_eq!(
            snp.quotes,
            Quotes::SevSnp {
                tsm_root: "/sys/kernel/config/tsm".into()
            }
        );
    }

    #[test]
    fn an_acme_node_gets_its_ca_bundle_as_a_file_and_an_owner_node_its_chain() {
        let dir = tempfile::tempdir().unwrap();
        let processes = processes(dir.path());
        let options = crate::domain::nodes::NodeOptions::default();
        let acme = AppTls::Acme(AcmeCa {
            directory: "https://acme.test/dir".into(),
            ca_bundle_pem: Some("-----BEGIN CERTIFICATE-----\n".into()),
            lifetime_secs: Some(600),
        });
        let described = processes
            .describe(&launch(acme), &Default::default(), options)
            .unwrap();
        let Tls::Acme {
            account_key,
            ca_bundle: Some(bundle),
            lifetime,
            ..
        } = &described.tls
        else {
            panic!("{described:?}");
        };
        assert_eq!(account_key, &dir.path().join(ACME).join("account.pem"));
        assert_eq!(
            std::fs::read_to_string(bundle).unwrap(),
            "-----BEGIN CERTIFICATE-----\n"
        );
        assert_eq!(*lifetime, Some(Duration::from_secs(600)));

        let owner = AppTls::Owner {
            chain_pem: "PEM".into(),
        };
        assert!(processes
            .describe(&launch(owner.clone()), &Default::default(), options)
            .is_err());
        let mut with_chain = launch(owner);
        with_chain.owner_chain = Some("/data/apps/a1/owner.pem".into());
        let described = processes
            .describe(&with_chain, &Default::default(), options)
            .unwrap();
        assert!(matches!(
            described.tls,
            Tls::Owner { ref certificate, expires_at: Some(_) }
                if certificate == Path::new("/data/apps/a1/owner.pem")
        ));
    }
}
