//! The runtime's life: prepare, wait for the configuration, start the app,
//! watch it, stop it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use chrono::{DateTime, Utc};
use mse_api::apps::AppStatus;
use mse_api::event::ServedCertificate;
use mse_api::launch::{Launch, Quotes, Tls};
use mse_attest::fingerprint::{fingerprint, AppIdentity, FingerprintInput, Runtime, TlsOrigin};
use mse_attest::provider::{GramineProvider, QuoteProvider};
use mse_attest::simulation::{QuoteKey, SimulatedPck, SimulationProvider};
use mse_run::acme::{self, Challenges};
use mse_run::front::{self, Backend, Front, Presented};
use mse_run::limits;
use mse_run::logs::LogSink;
use mse_run::sandbox::{self, Confinement, Decision, Identity, Policy};
use mse_run::status::{emit, Event};
use mse_runtime::{App, Catalog, EnvCache, Serving};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::config_server::{self, Accepted, Outcome, Waiting};

/// How long the app gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The pause between two health checks while the app server does not
/// answer yet. Each answer that is not 2xx (a line in the app's access log)
/// makes the next pause half again as long, up to [`HEALTH_MAX_INTERVAL`]:
/// a quick app is seen healthy the moment it is, and a slow one's access log
/// gets about one line a second.
const HEALTH_FIRST_INTERVAL: Duration = Duration::from_millis(50);
/// The longest pause between two health checks.
const HEALTH_MAX_INTERVAL: Duration = Duration::from_secs(1);
/// The `User-Agent` of the health checks, as the access log shows it.
const HEALTH_USER_AGENT: &str = "mse-run health check";

/// Exit code for an invalid launch description or files.
pub(crate) const INVALID: u8 = 2;

/// Everything known before the configuration arrives.
struct Prepared {
    log: Arc<LogSink>,
    dirs: Dirs,
    tls: TlsSetup,
    expires_at: DateTime<Utc>,
    ratls: mse_attest::ratls::RaTls,
    fingerprint: [u8; 32],
    env: mse_runtime::Environment,
    cache: EnvCache,
    /// How the app's processes are confined.
    sandbox: Decision,
    /// The app's limits, as asked.
    asked: limits::Limits,
    /// The app server's memory, CPU and process limits.
    limits: limits::Applied,
    /// What the node publishes beside a certificate that carries no quote
    /// (ACME and owner modes), JSON.
    evidence: Option<bytes::Bytes>,
}

struct Dirs {
    work: PathBuf,
    app: PathBuf,
    home: PathBuf,
    tmp: PathBuf,
    tls: PathBuf,
}

impl Dirs {
    fn new(work_dir: &Path) -> Self {
        let [app, home, tmp, tls] = mse_api::launch::private_dirs(work_dir);
        Dirs {
            work: work_dir.to_path_buf(),
            app,
            home,
            tmp,
            tls,
        }
    }

    /// Removes the decrypted code, secrets and keys; the log stays.
    fn clean(&self) {
        mse_run::workdir::wipe(&self.work);
    }
}

enum TlsSetup {
    RaTls,
    Owner {
        chain_pem: String,
        leaf_der: Vec<u8>,
        leaf: Box<mse_config::tls::Leaf>,
    },
    /// The RA-TLS certificate first, then one from an ACME CA for the same
    /// key, both served by the node's front.
    Acme(acme::Settings),
    Plain,
}

impl TlsSetup {
    /// True when the node's front serves the app (the app server then
    /// listens on a loopback port of its own).
    fn fronted(&self) -> bool {
        matches!(self, TlsSetup::Owner { .. } | TlsSetup::Acme(_))
    }
}

pub async fn run(launch: Launch) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    let now = Utc::now();
    // Signals are handled from the start: a node stopped while it prepares
    // (the first environment build takes a while) still says so.
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("error: cannot handle signals");
        return ExitCode::FAILURE;
    };
    let prepared = tokio::select! {
        prepared = prepare(&launch, now) => prepared,
        _ = term.recv() => return stopped_early("SIGTERM"),
        _ = int.recv() => return stopped_early("SIGINT"),
    };
    let mut prepared = match prepared {
        Ok(p) => p,
        Err(Failure::Invalid(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(INVALID);
        }
        Err(Failure::Error(message)) => {
            eprintln!("error: {message}");
            emit(&Event::new(AppStatus::OnError, Utc::now()).because(message));
            return ExitCode::FAILURE;
        }
    };
    let signals = Signals { term, int };
    let log = prepared.log.clone();
    let outcome = life(&launch, &prepared, signals).await;
    prepared.dirs.clean();
    if let limits::Applied::Limited(cgroup) = &mut prepared.limits {
        cgroup.remove();
    }
    match outcome {
        Ok(reason) => {
            log.note(&format!("stopped: {reason}"));
            emit(&Event::new(AppStatus::Stopped, Utc::now()).because(reason));
            ExitCode::SUCCESS
        }
        Err(e) => {
            let reason = format!("{e:#}");
            log.note(&format!("error: {reason}"));
            eprintln!("error: {reason}");
            emit(&Event::new(AppStatus::OnError, Utc::now()).because(reason));
            ExitCode::FAILURE
        }
    }
}

fn stopped_early(signal: &str) -> ExitCode {
    emit(&Event::new(AppStatus::Stopped, Utc::now()).because(signal));
    ExitCode::SUCCESS
}

/// The signal streams, installed once.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

enum Failure {
    /// Bad arguments or files: nothing started.
    Invalid(String),
    /// Something failed while setting up.
    Error(String),
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::Invalid(message.into())
}

fn read_text(path: &Path, what: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read the {what} {}: {e}", path.display())))
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

fn sha256_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finalize().into())
}

/// What installs the app's packages, as the launch names it.
fn installer(launch: &Launch) -> Result<mse_runtime::Installer, Failure> {
    use mse_api::launch::Installer;
    Ok(match &launch.runtime.installer {
        None => mse_runtime::Installer::detect(),
        Some(Installer::Pip) => mse_runtime::Installer::Pip,
        Some(Installer::Uv) => mse_runtime::Installer::parse("uv")
            .map_err(|e| invalid(format!("runtime.installer: {e}")))?,
        Some(Installer::UvAt(path)) => {
            use std::os::unix::fs::PermissionsExt as _;
            let executable = std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            if !executable {
                return Err(invalid(format!(
                    "runtime.installer: {} is not an executable uv binary",
                    path.display()
                )));
            }
            mse_runtime::Installer::Uv(path.clone())
        }
    })
}

async fn prepare(launch: &Launch, now: DateTime<Utc>) -> Result<Prepared, Failure> {
    let app = &launch.app;
    mse_config::fields::check_domain_name(&app.domain)
        .map_err(|e| invalid(format!("app.domain: {e}")))?;
    mse_config::fields::PythonApplication::parse(&app.application)
        .map_err(|e| invalid(format!("app.application: {e}")))?;
    let catalog = match &launch.runtime.catalog {
        Some(path) => Catalog::parse(&path.display().to_string(), &read_text(path, "catalog")?)
            .map_err(|e| invalid(e.to_string()))?,
        None => Catalog::default_catalog(),
    };
    let spec = catalog
        .find(&launch.runtime.image)
        .map_err(|e| invalid(e.to_string()))?
        .clone();
    let code_sha256 = sha256_file(&app.code)
        .map_err(|e| invalid(format!("cannot read the code {}: {e}", app.code.display())))?;
    let installer = installer(launch)?;

    let (tls, expires_at) = match &launch.tls {
        Tls::Acme {
            expires_at,
            directory,
            account_key,
            ca_bundle,
            lifetime,
        } => {
            let settings = acme::Settings {
                directory: directory.clone(),
                ca_bundle: ca_bundle.clone(),
                account_key: account_key.clone(),
                lifetime: *lifetime,
            };
            (TlsSetup::Acme(settings), *expires_at)
        }
        Tls::Ratls { expires_at } => (TlsSetup::RaTls, *expires_at),
        Tls::Owner {
            certificate: path,
            expires_at,
        } => {
            let chain_pem = read_text(path, "certificate")?;
            let leaf = mse_config::tls::parse_chain(chain_pem.as_bytes())
                .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            if !mse_config::tls::domain_matches(&app.domain, &leaf.dns_names) {
                return Err(invalid(format!(
                    "{} is not valid for {} (it names {})",
                    path.display(),
                    app.domain,
                    leaf.dns_names.join(", ")
                )));
            }
            let leaf_der = mse_attest::ratls::pem_to_der(chain_pem.as_bytes())
                .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            let expiry = expires_at.unwrap_or(leaf.not_after).min(leaf.not_after);
            (
                TlsSetup::Owner {
                    chain_pem,
                    leaf_der,
                    leaf: Box::new(leaf),
                },
                expiry,
            )
        }
        Tls::Plain { expires_at } => (TlsSetup::Plain, *expires_at),
    };
    if expires_at <= now {
        return Err(invalid(format!("the app's expiry {expires_at} is past")));
    }

    let origin = match &tls {
        TlsSetup::RaTls => TlsOrigin::SelfSigned,
        TlsSetup::Owner { leaf_der, .. } => TlsOrigin::Owner { leaf_der },
        TlsSetup::Acme(_) => TlsOrigin::Acme,
        TlsSetup::Plain => TlsOrigin::Operator,
    };
    let input = FingerprintInput::new(
        Runtime {
            image: &launch.runtime.image,
            spec_digest: &spec.digest(),
            enclave_size: &launch.runtime.enclave_size,
        },
        AppIdentity {
            uuid: &app.uuid,
            domain: &app.domain,
            python_application: &app.application,
        },
        origin,
        expires_at,
        code_sha256,
    );
    let fingerprint = fingerprint(&input);
    let provider: Box<dyn QuoteProvider> = match &launch.quotes {
        Quotes::Simulation {
            quote_key: key,
            quote_chain: chain,
            signer_key: signer,
        } => {
            let pck = SimulatedPck::new(
                QuoteKey::from_pem(&read_text(key, "simulation quote key")?)
                    .map_err(|e| invalid(format!("{}: {e}", key.display())))?,
                &read_text(chain, "simulation quote chain")?,
            )
            .map_err(|e| invalid(format!("{}: {e}", chain.display())))?;
            let mr_signer =
                mse_attest::signer::mr_signer_from_pem(&read_text(signer, "signer key")?)
                    .map_err(|e| invalid(format!("{}: {e}", signer.display())))?;
            Box::new(SimulationProvider::new(pck, fingerprint, mr_signer))
        }
        Quotes::Gramine { attestation_root } => {
            let provider = GramineProvider::new(attestation_root);
            if !provider.available() {
                return Err(invalid(format!(
                    "no attestation device at {} (is this a Gramine SGX enclave? use the \
                     `simulation` quote provider otherwise)",
                    attestation_root.display()
                )));
            }
            Box::new(provider)
        }
    };

    let work_dir = &launch.node.work_dir;
    create_private_dir(work_dir)
        .map_err(|e| invalid(format!("cannot create {}: {e}", work_dir.display())))?;
    let dirs = Dirs::new(work_dir);
    dirs.clean();
    for dir in [&dirs.home, &dirs.tmp, &dirs.tls] {
        create_private_dir(dir)
            .map_err(|e| Failure::Error(format!("cannot create {}: {e}", dir.display())))?;
    }
    let log_path = launch
        .node
        .log_file
        .clone()
        .unwrap_or_else(|| work_dir.join("app.log"));
    let log = Arc::new(
        LogSink::create(&log_path)
            .map_err(|e| invalid(format!("cannot create {}: {e}", log_path.display())))?,
    );

    let ratls = mse_attest::ratls::create(&app.domain, expires_at, None, provider.as_ref(), now)
        .map_err(|e| Failure::Error(format!("cannot create the RA-TLS certificate: {e}")))?;
    std::fs::write(work_dir.join("ratls.pem"), &ratls.cert_pem)
        .map_err(|e| Failure::Error(format!("cannot save the RA-TLS certificate: {e}")))?;
    let evidence = evidence(&tls, &ratls, &input, provider.as_ref())?;

    let cache = EnvCache::new(&launch.runtime.cache_dir).with_installer(installer);
    let build_log = log.clone();
    let env = tokio::task::spawn_blocking(move || {
        cache
            .ensure(&spec, &mut |message| build_log.note(message))
            .map(|env| (env, cache))
    })
    .await
    .map_err(|e| Failure::Error(e.to_string()))?
    .map_err(|e| Failure::Error(e.to_string()))?;
    let (env, cache) = env;

    let sandbox = decide_sandbox(launch);
    match &sandbox {
        Decision::Refuse(why) => return Err(Failure::Error(why.clone())),
        decision => log.note(&format!("sandbox: {}", sandbox::describe(decision))),
    }
    let asked = limits::Limits::for_resource(
        launch.limits.memory_mb.map(|mb| mb.get()),
        launch.limits.cores.map(|cores| cores.get()),
    );
    let mut limits = app_limits(&app.uuid, asked);
    // The home and the temporary folder hold at most their share of bytes.
    if let (Some(mb), limits::Applied::Limited(_)) = (asked.disk_mb, &limits) {
        for dir in [&dirs.home, &dirs.tmp] {
            if let Err(why) = sandbox::mount_private_tmpfs(dir, mb, app_owner(&sandbox)) {
                limits = limits::Applied::Unlimited(why);
                break;
            }
        }
    }
    log.note(&format!("limits: {}", limits.describe()));
    if let (limits::Applied::Unlimited(why), sandbox::Mode::Required) =
        (&limits, sandbox::Mode::from(launch.sandbox))
    {
        return Err(Failure::Error(format!(
            "cannot limit the app: {why}; the operator can run apps without limits with \
             --sandbox best-effort"
        )));
    }

    Ok(Prepared {
        log,
        dirs,
        tls,
        expires_at,
        ratls,
        fingerprint,
        env,
        cache,
        sandbox,
        asked,
        limits,
        evidence,
    })
}

/// The evidence of a fronted app: the quote that binds the key of the
/// certificate it serves (for ACME, the RA-TLS certificate's own quote, as
/// the key is the same), with what the fingerprint is computed from.
fn evidence(
    tls: &TlsSetup,
    ratls: &mse_attest::ratls::RaTls,
    input: &FingerprintInput,
    provider: &dyn QuoteProvider,
) -> Result<Option<bytes::Bytes>, Failure> {
    use mse_attest::evidence::{key_bits, key_report_data, Evidence};
    let quote = match tls {
        TlsSetup::Acme(_) => ratls.quote.clone(),
        TlsSetup::Owner { leaf_der, .. } => {
            let bits =
                key_bits(leaf_der).map_err(|e| invalid(format!("the owner's certificate: {e}")))?;
            provider
                .quote(&key_report_data(&bits))
                .map_err(|e| Failure::Error(format!("cannot quote the owner's key: {e}")))?
        }
        TlsSetup::RaTls | TlsSetup::Plain => return Ok(None),
    };
    Ok(Some(bytes::Bytes::from(
        Evidence::new(&quote, input).to_json(),
    )))
}

/// The app's cgroup with the limits the launch asks for, or why it runs
/// without.
fn app_limits(uuid: &str, asked: limits::Limits) -> limits::Applied {
    if asked.is_empty() {
        return limits::Applied::NotAsked;
    }
    // The uuid names the cgroup folder when it is a plain one.
    let name = if !uuid.is_empty() && uuid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        uuid.to_string()
    } else {
        hex::encode(&Sha256::digest(uuid.as_bytes())[..16])
    };
    limits::apply(asked, &name, limits::detect())
}

/// How to confine this app, from what the kernel and this process offer.
fn decide_sandbox(launch: &Launch) -> Decision {
    let offered = sandbox::Offered {
        landlock_abi: sandbox::landlock_abi(),
        root: sandbox::running_as_root(),
    };
    sandbox::decide(
        launch.sandbox.into(),
        offered,
        sandbox::app_uid(&launch.app.uuid),
    )
}

/// What the app's own processes may read besides their own folders: the
/// system's files and its runtime environment.
fn runtime_read_paths(env: &mse_runtime::Environment) -> Vec<PathBuf> {
    let mut read = sandbox::system_read_paths();
    read.extend(sandbox::python_paths(&env.python));
    read
}

/// The confinement of one of the app's processes under `policy`.
fn confinement(decision: &Decision, policy: &Policy) -> anyhow::Result<Confinement> {
    match decision {
        // The message already ends with its source's.
        Decision::Confine { identity, .. } => {
            Confinement::new(policy, *identity).map_err(|e| anyhow::anyhow!("{e}"))
        }
        Decision::Unconfined(_) => Ok(Confinement::unconfined()),
        Decision::Refuse(why) => bail!("{why}"),
    }
}

/// The uid the app's files must belong to, when it has one of its own.
fn app_owner(decision: &Decision) -> Option<u32> {
    match decision {
        Decision::Confine {
            identity: Identity::Uid(uid),
            ..
        } => Some(*uid),
        _ => None,
    }
}

/// Variables `pip` keeps from this process's environment: its own settings
/// and the proxy; nothing of the platform's.
fn pip_environment() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("PIP_")
                || k.starts_with("UV_")
                || matches!(
                    k.to_ascii_lowercase().as_str(),
                    "http_proxy" | "https_proxy" | "no_proxy" | "ssl_cert_file" | "ssl_cert_dir"
                )
        })
        .collect()
}

/// Sends the reason to stop on SIGTERM, SIGINT or at expiry.
fn stop_signals(signals: Signals, expires_at: DateTime<Utc>) -> watch::Receiver<Option<String>> {
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

fn server_config(cert_der: &[u8], key_pem: &str) -> anyhow::Result<rustls::ServerConfig> {
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("the RA-TLS key")?;
    mse_attest::tls::server_config(
        vec![CertificateDer::from(cert_der.to_vec())],
        key,
        mse_attest::tls::HTTP1,
    )
    .context("the RA-TLS certificate")
}

/// Waits for the configuration, runs the app until told to stop. Returns why
/// it stopped, or the error.
async fn life(launch: &Launch, prepared: &Prepared, signals: Signals) -> anyhow::Result<String> {
    let log = &prepared.log;
    let mut stop = stop_signals(signals, prepared.expires_at);
    let listen = launch.node.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    // The address it got (`node.listen` may name port 0): the app is served
    // there too, and the event tells it.
    let listen = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let tls = Arc::new(server_config(
        &prepared.ratls.cert_der,
        &prepared.ratls.key_pem,
    )?);
    let owner = match &prepared.tls {
        TlsSetup::Owner { leaf, .. } => Some(leaf.as_ref().clone()),
        _ => None,
    };
    let waiting = Arc::new(Waiting::new(
        launch.app.uuid.clone(),
        launch.app.code.clone(),
        prepared.dirs.app.clone(),
        owner,
        log.clone(),
    ));
    let mut event = Event::new(AppStatus::Initializing, Utc::now());
    event.fingerprint = Some(hex::encode(prepared.fingerprint));
    event.certificate_sha256 = Some(hex::encode(Sha256::digest(&prepared.ratls.cert_der)));
    event.sandbox = Some(sandbox::describe(&prepared.sandbox));
    event.limits = Some(prepared.limits.describe());
    event.listen = Some(listen.to_string());
    log.note(&format!(
        "waiting for the configuration on {} (fingerprint {})",
        listen,
        hex::encode(prepared.fingerprint)
    ));
    emit(&event);

    let timeout = launch.timeouts.config;
    let accepted = match config_server::serve(&listener, tls, waiting, &mut stop, timeout).await {
        Outcome::Accepted(accepted) => accepted,
        Outcome::Stopped(reason) => return Ok(reason),
        Outcome::TimedOut => bail!(
            "no valid configuration arrived within {} s",
            timeout.unwrap_or_default().as_secs()
        ),
    };
    start_app(launch, prepared, accepted, listener, &mut stop).await
}

/// A loopback address for a fronted app server: a port free now, on the
/// loopback address of the node's family.
fn app_backend(listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    let ip = match listen.ip() {
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let probe = std::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .context("cannot find a loopback port for the app server")?;
    probe
        .local_addr()
        .context("cannot find a loopback port for the app server")
}

async fn start_app(
    launch: &Launch,
    prepared: &Prepared,
    accepted: Accepted,
    listener: tokio::net::TcpListener,
    stop: &mut watch::Receiver<Option<String>>,
) -> anyhow::Result<String> {
    let log = &prepared.log;
    let dirs = &prepared.dirs;
    let listen = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let secrets_path = dirs.home.join(".cache/mse/secrets.json");
    if let Some(secrets) = &accepted.app_secrets {
        if let Some(parent) = secrets_path.parent() {
            create_private_dir(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        mse_package::context::write_private(&secrets_path, &serde_json::to_vec(secrets)?)
            .context("cannot write the app's secrets")?;
    }

    // What the front presents first: the owner's certificate, or the
    // RA-TLS certificate until the CA issues one.
    let first = match &prepared.tls {
        TlsSetup::Owner { chain_pem, .. } => {
            let key = accepted
                .ssl_private_key
                .as_ref()
                .ok_or_else(|| anyhow!("the owner's private key is missing"))?;
            Some(owner_key(chain_pem, key)?)
        }
        TlsSetup::Acme(_) => Some(ratls_key(&prepared.ratls)?),
        TlsSetup::RaTls | TlsSetup::Plain => None,
    };
    drop(accepted);
    // The app server serves the RA-TLS certificate: to its clients, or
    // behind the front (on a loopback port) to the front alone.
    let (serving, pinned) = match &prepared.tls {
        TlsSetup::Plain => (Serving::Plain, None),
        TlsSetup::RaTls | TlsSetup::Owner { .. } | TlsSetup::Acme(_) => {
            let serving = write_tls(dirs, &prepared.ratls.cert_pem, &prepared.ratls.key_pem)?;
            (serving, Some(prepared.ratls.cert_der.clone()))
        }
    };
    let socket = if prepared.tls.fronted() {
        Some(app_backend(listen)?)
    } else {
        None
    };
    // Fronted, the listener stays the node's; otherwise it closes here, so
    // that the app server can listen on its port.
    let listener = socket.as_ref().map(|_| listener);
    let owner = app_owner(&prepared.sandbox);
    if let Some(uid) = owner {
        // The app's own uid owns its folders; the work folder above them
        // only lets it through.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            &launch.node.work_dir,
            std::fs::Permissions::from_mode(0o711),
        )
        .context("cannot open the work folder to the app's user")?;
        for dir in [&dirs.app, &dirs.home, &dirs.tmp, &dirs.tls] {
            if dir.exists() {
                sandbox::chown_tree(dir, uid)
                    .with_context(|| format!("cannot give {} to the app's user", dir.display()))?;
            }
        }
    }

    let mut app = App::new(&prepared.env, &launch.app.application, &dirs.app, &dirs.tmp);
    app.secrets_path = Some(secrets_path);
    app.home = Some(dirs.home.clone());
    app.clean_env = true;
    let requirements = dirs.app.join(mse_package::REQUIREMENTS);
    if requirements.is_file() {
        log.note("installing requirements.txt");
        let cache = prepared.cache.clone();
        let env = prepared.env.clone();
        let note_log = log.clone();
        let decision = prepared.sandbox.clone();
        let installer = cache.installer().program().map(Path::to_path_buf);
        let site = tokio::task::spawn_blocking(move || {
            // The installer runs as a uid of its own (never the app's: what
            // it builds is shared by every app of the same requirements, and
            // is the node's once built), with a scratch home of its own.
            let mut confine = |pip: &mut std::process::Command, site: &Path, scratch: &Path| {
                let identity = match &decision {
                    Decision::Confine {
                        identity: Identity::Uid(_),
                        ..
                    } => {
                        let uid = sandbox::installer_uid(site);
                        for dir in [site, scratch] {
                            sandbox::chown_tree(dir, uid).map_err(|e| e.to_string())?;
                        }
                        Some(uid)
                    }
                    _ => None,
                };
                let mut read = runtime_read_paths(&env);
                read.extend(site.parent().map(|dir| dir.join(mse_package::REQUIREMENTS)));
                read.extend(installer.clone());
                for (key, value) in pip_environment() {
                    if matches!(key.as_str(), "PIP_CERT" | "PIP_FIND_LINKS") {
                        read.extend(
                            value
                                .split_whitespace()
                                .map(|v| PathBuf::from(v.trim_start_matches("file://")))
                                .filter(|p| p.is_absolute() && p.exists()),
                        );
                    }
                }
                let policy = Policy {
                    read,
                    write: vec![site.to_path_buf(), scratch.to_path_buf()],
                    bind_tcp: Vec::new(),
                    private_tmp: identity.map(|_| scratch.to_path_buf()),
                    open_files: Some(limits::OPEN_FILES),
                };
                pip.env_clear()
                    .env("PATH", mse_runtime::CLEAN_PATH)
                    .env("LANG", "C.UTF-8")
                    .env("HOME", scratch)
                    .env("TMPDIR", scratch)
                    .envs(pip_environment())
                    .stdin(Stdio::null());
                let confinement = match (&decision, identity) {
                    (Decision::Confine { .. }, Some(uid)) => {
                        Confinement::new(&policy, Identity::Uid(uid)).map_err(|e| e.to_string())
                    }
                    _ => confinement(&decision, &policy).map_err(|e| format!("{e:#}")),
                }?;
                confinement.apply(pip);
                Ok(())
            };
            cache.requirements(&env, &requirements, &mut |m| note_log.note(m), &mut confine)
        })
        .await?
        .context("cannot install requirements.txt")?;
        app.extra_paths.push(site);
    }

    let bind = socket.unwrap_or(listen).to_string();
    let mut command = app.server(&bind, &serving);
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut read = runtime_read_paths(&prepared.env);
    read.extend(app.extra_paths.iter().cloned());
    read.extend([dirs.app.clone(), dirs.tls.clone()]);
    let policy = Policy {
        read,
        write: vec![dirs.home.clone(), dirs.tmp.clone()],
        bind_tcp: vec![socket.unwrap_or(listen).port()],
        private_tmp: app_owner(&prepared.sandbox).map(|_| dirs.tmp.clone()),
        open_files: prepared.asked.open_files,
    };
    // In its cgroup first (while this process's privileges still hold), so
    // the limits bind the app server from its first instruction.
    if let Some(cgroup) = prepared.limits.cgroup() {
        cgroup
            .enter(&mut command)
            .context("cannot put the app server in its cgroup")?;
    }
    // The app server and everything it starts: confined, and killed by the
    // kernel if this runtime dies without stopping it.
    confinement(&prepared.sandbox, &policy)?.apply(&mut command);
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let mut child = command.spawn().context("cannot start the app server")?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("the app server has no pid"))?;
    // The output is read on the runtime's threads and written to the log by
    // a thread of its own, so file writes never block them; a slow disk
    // slows the app's writes down instead of losing lines.
    let (chunks, mut received) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let writer_log = log.clone();
    let writer = std::thread::spawn(move || {
        while let Some(chunk) = received.blocking_recv() {
            writer_log.write(&chunk);
        }
    });
    for output in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        let chunks = chunks.clone();
        tokio::spawn(async move {
            let mut output = output;
            let mut buffer = vec![0u8; 16 * 1024];
            while let Ok(n) = output.read(&mut buffer).await {
                if n == 0 || chunks.send(buffer[..n].to_vec()).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(chunks);
    log.note(&format!("app server started (pid {pid})"));
    // The listener serves the front now (fronted apps), or is closed so
    // that the app server has the port.
    let probe_at = socket.unwrap_or_else(|| loopback(listen));
    let (certificate, tasks) = match (first, socket, listener) {
        (Some(first), Some(socket), Some(listener)) => start_front(
            launch,
            prepared,
            listener,
            first,
            socket,
            pinned.clone(),
            stop,
        )?,
        _ => (watch::channel(None).1, Vec::new()),
    };
    let outcome = supervise(
        launch,
        log,
        pid,
        &mut child,
        pinned,
        probe_at,
        certificate,
        stop,
    )
    .await;
    for task in tasks {
        task.abort();
    }
    // Every line the app wrote is in the log before the final state is told
    // (the app's group is gone, so its pipes are closed).
    let _ = tokio::time::timeout(
        STOP_GRACE,
        tokio::task::spawn_blocking(move || writer.join()),
    )
    .await;
    outcome
}

/// Waits until the app is healthy, reports it running, and watches it until
/// it stops by itself (an error) or is told to stop (the reason).
#[allow(clippy::too_many_arguments)]
async fn supervise(
    launch: &Launch,
    log: &LogSink,
    pid: u32,
    child: &mut tokio::process::Child,
    pinned: Option<Vec<u8>>,
    probe_at: SocketAddr,
    mut certificate: watch::Receiver<Option<ServedCertificate>>,
    stop: &mut watch::Receiver<Option<String>>,
) -> anyhow::Result<String> {
    let client =
        pinned.map(|der| Arc::new(mse_attest::pin::client_config(&der, mse_attest::tls::HTTP1)));
    let deadline = Instant::now() + launch.timeouts.health;
    let mut pause = HEALTH_FIRST_INTERVAL;
    loop {
        if let Some(status) = child.try_wait()? {
            terminate(pid, child).await;
            bail!("the app exited ({status}) before it became healthy; see its log");
        }
        let answered = match probe(
            &probe_at,
            &launch.app.domain,
            &launch.app.healthcheck,
            client.clone(),
        )
        .await
        {
            Some(status) if status.is_success() => break,
            // The app runs, and has no such route: waiting cannot help.
            Some(status)
                if matches!(
                    status,
                    hyper::StatusCode::NOT_FOUND | hyper::StatusCode::METHOD_NOT_ALLOWED
                ) =>
            {
                terminate(pid, child).await;
                bail!(
                    "health check GET {} answered {status}: `healthcheck_endpoint` in mse.toml \
                     must name a GET route of the app that answers 2xx",
                    launch.app.healthcheck
                );
            }
            Some(_) => true,
            None => false,
        };
        if answered {
            pause = (pause * 3 / 2).min(HEALTH_MAX_INTERVAL);
        }
        if Instant::now() >= deadline {
            terminate(pid, child).await;
            bail!(
                "the app did not answer {} within {} s",
                launch.app.healthcheck,
                launch.timeouts.health.as_secs()
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            changed = stop.changed() => {
                if let (Ok(()), Some(reason)) = (changed, stop.borrow().clone()) {
                    terminate(pid, child).await;
                    return Ok(reason);
                }
            }
        }
    }
    log.note("app healthy");
    // A node that obtains its certificate says `running` once it has one,
    // or once it failed to (it then serves its RA-TLS certificate).
    let obtained = certificate.wait_for(|c| c.is_some());
    let first = tokio::select! {
        first = obtained => first.ok().and_then(|c| c.clone()),
        changed = stop.changed() => {
            if let (Ok(()), Some(reason)) = (changed, stop.borrow().clone()) {
                terminate(pid, child).await;
                return Ok(reason);
            }
            None
        }
    };
    let mut running = Event::new(AppStatus::Running, Utc::now());
    running.pid = Some(pid);
    running.certificate = first;
    emit(&running);

    // Until no certificate can come any more (its sender is gone).
    let mut watching = true;
    loop {
        tokio::select! {
            changed = certificate.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                    continue;
                }
                let mut update = Event::new(AppStatus::Running, Utc::now());
                update.pid = Some(pid);
                update.certificate = certificate.borrow_and_update().clone();
                emit(&update);
            }
            status = child.wait() => {
                terminate(pid, child).await;
                let status = status.context("cannot watch the app")?;
                bail!("the app stopped by itself ({status}); see its log");
            }
            changed = stop.changed() => {
                if let (Ok(()), Some(reason)) = (changed, stop.borrow().clone()) {
                    terminate(pid, child).await;
                    return Ok(reason);
                }
            }
        }
    }
}

/// The owner's chain with the key that came with the configuration.
fn owner_key(chain_pem: &str, key_pem: &str) -> anyhow::Result<rustls::sign::CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the owner's certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("the owner's key")?;
    acme::certified_key(chain, key)
        .context("the owner's private key does not match the owner's certificate")
}

/// The RA-TLS certificate and key, as the front presents them.
fn ratls_key(ratls: &mse_attest::ratls::RaTls) -> anyhow::Result<rustls::sign::CertifiedKey> {
    let key = PrivateKeyDer::from_pem_slice(ratls.key_pem.as_bytes()).context("the RA-TLS key")?;
    acme::certified_key(vec![CertificateDer::from(ratls.cert_der.clone())], key)
        .context("the RA-TLS certificate")
}

/// What `mse status` shows of a certificate (DER).
fn served(cert_der: &[u8], error: Option<String>) -> ServedCertificate {
    let (issuer, not_after) = match x509_parser::parse_x509_certificate(cert_der) {
        Ok((_, cert)) => (
            cert.issuer().to_string(),
            DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
        ),
        Err(_) => (String::new(), String::new()),
    };
    ServedCertificate {
        issuer,
        not_after,
        error,
    }
}

type Tasks = Vec<tokio::task::JoinHandle<()>>;

/// Starts the node's front on `listener` and, in ACME mode, the task that
/// obtains and renews its certificate. Returns what the front serves, as it
/// changes.
fn start_front(
    launch: &Launch,
    prepared: &Prepared,
    listener: tokio::net::TcpListener,
    first: rustls::sign::CertifiedKey,
    socket: SocketAddr,
    pinned: Option<Vec<u8>>,
    stop: &watch::Receiver<Option<String>>,
) -> anyhow::Result<(watch::Receiver<Option<ServedCertificate>>, Tasks)> {
    let pinned = pinned.ok_or_else(|| anyhow!("the app server has no certificate to pin"))?;
    let initial = match &prepared.tls {
        TlsSetup::Owner { leaf_der, .. } => Some(served(leaf_der, None)),
        _ => None,
    };
    let (sender, receiver) = watch::channel(initial);
    let challenges = Arc::new(Challenges::default());
    let presented = Arc::new(Presented::new(first, challenges.clone()));
    let front = Arc::new(Front {
        tls: Arc::new(front::server_config(presented.clone())),
        backend: Backend {
            addr: socket,
            tls: Arc::new(mse_attest::pin::client_config(
                &pinned,
                mse_attest::tls::HTTP1,
            )),
            domain: launch.app.domain.clone(),
        },
        evidence: prepared.evidence.clone().unwrap_or_default(),
    });
    let mut front_stop = stop.clone();
    let mut tasks = vec![tokio::spawn(async move {
        front::serve(&listener, front, &mut front_stop).await;
    })];
    if let TlsSetup::Acme(settings) = &prepared.tls {
        let key = rcgen::KeyPair::from_pem(&prepared.ratls.key_pem)
            .map_err(|e| anyhow!("the RA-TLS key: {e}"))?;
        let renewal = Renewal {
            settings: settings.clone(),
            domain: launch.app.domain.clone(),
            key,
            key_pem: zeroize::Zeroizing::new(prepared.ratls.key_pem.clone()),
            ratls_der: prepared.ratls.cert_der.clone(),
            expires_at: prepared.expires_at,
            challenges,
            presented,
            log: prepared.log.clone(),
            sender,
        };
        tasks.push(tokio::spawn(renewal.run()));
    } else {
        // The owner's certificate never changes: keep the channel open.
        tasks.push(tokio::spawn(async move {
            sender.closed().await;
        }));
    }
    Ok((receiver, tasks))
}

/// The first wait after a failed attempt; each next one is twice as long.
const RETRY_FIRST: Duration = Duration::from_secs(30);
/// The longest wait between two attempts.
const RETRY_MAX: Duration = Duration::from_secs(3600);

/// Obtains the app's certificate over ACME and renews it until the app
/// expires.
struct Renewal {
    settings: acme::Settings,
    domain: String,
    key: rcgen::KeyPair,
    key_pem: zeroize::Zeroizing<String>,
    ratls_der: Vec<u8>,
    expires_at: DateTime<Utc>,
    challenges: Arc<Challenges>,
    presented: Arc<Presented>,
    log: Arc<LogSink>,
    sender: watch::Sender<Option<ServedCertificate>>,
}

impl Renewal {
    async fn run(self) {
        let mut retry = RETRY_FIRST;
        // What is served now: the RA-TLS certificate until one is issued.
        let mut current = self.ratls_der.clone();
        loop {
            let started = Instant::now();
            match self.attempt().await {
                Ok(issued) => {
                    let leaf = issued.chain[0].to_vec();
                    let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes());
                    match key.map_err(|e| e.to_string()).and_then(|key| {
                        acme::certified_key(issued.chain.clone(), key).map_err(|e| e.to_string())
                    }) {
                        Ok(certified) => self.presented.replace(certified),
                        Err(why) => {
                            self.log
                                .note(&format!("ACME: the issued certificate is unusable: {why}"));
                            let _ = self.sender.send(Some(served(&current, Some(why))));
                            tokio::time::sleep(retry).await;
                            retry = (retry * 2).min(RETRY_MAX);
                            continue;
                        }
                    }
                    current = leaf;
                    retry = RETRY_FIRST;
                    let renew_at = issued.renew_at();
                    self.log.note(&format!(
                        "ACME: certificate for {} issued by {} in {} ms, valid until {}; renewal at {}",
                        self.domain,
                        issued.issuer,
                        started.elapsed().as_millis(),
                        issued.not_after,
                        renew_at
                    ));
                    let _ = self.sender.send(Some(ServedCertificate {
                        issuer: issued.issuer.clone(),
                        not_after: issued
                            .not_after
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        error: None,
                    }));
                    if renew_at >= self.expires_at {
                        // The app ends before the certificate needs renewing.
                        return self.sender.closed().await;
                    }
                    tokio::time::sleep((renew_at - Utc::now()).to_std().unwrap_or_default()).await;
                }
                Err(e) => {
                    let wait = if e.is_rate_limit() { RETRY_MAX } else { retry };
                    let why = format!("{e}; next attempt in {} s", wait.as_secs());
                    self.log.note(&format!("ACME: {why}"));
                    let _ = self.sender.send(Some(served(&current, Some(why))));
                    tokio::time::sleep(wait).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    async fn attempt(&self) -> Result<acme::Issued, acme::AcmeError> {
        let mut client = acme::Client::connect(&self.settings).await?;
        self.log.note(&format!(
            "ACME: account {} at {}",
            client.account_url(),
            self.settings.directory
        ));
        client
            .obtain(&self.domain, &self.key, &self.challenges, Utc::now())
            .await
    }
}

fn write_tls(dirs: &Dirs, cert_pem: &str, key_pem: &str) -> anyhow::Result<Serving> {
    let cert = dirs.tls.join("cert.pem");
    let key = dirs.tls.join("key.pem");
    std::fs::write(&cert, cert_pem).context("cannot write the app's certificate")?;
    mse_package::context::write_private(&key, key_pem.as_bytes())
        .context("cannot write the app's key")?;
    Ok(Serving::Tls { cert, key })
}

/// Where to reach a server listening on `addr` from this machine.
fn loopback(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// SIGTERM to the app's process group; SIGKILL after the grace period; then
/// SIGKILL to anything left in the group.
async fn terminate(pid: u32, child: &mut tokio::process::Child) {
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

/// What `GET path` answers; `None` when nothing answers (yet).
async fn probe(
    addr: &SocketAddr,
    domain: &str,
    path: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Option<hyper::StatusCode> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        probe_over(stream, domain, path, tls).await
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}

async fn probe_over<S>(
    stream: S,
    domain: &str,
    path: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Option<hyper::StatusCode>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    {
        let status = match tls {
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(domain.to_string()).ok()?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, stream)
                    .await
                    .ok()?;
                get_status(stream, domain, path).await?
            }
            None => get_status(stream, domain, path).await?,
        };
        Some(status)
    }
}

async fn get_status<S>(stream: S, domain: &str, path: &str) -> Option<hyper::StatusCode>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, domain)
        .header(hyper::header::USER_AGENT, HEALTH_USER_AGENT)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .ok()?;
    let response = sender.send_request(request).await.ok()?;
    Some(response.status())
}
