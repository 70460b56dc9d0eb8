//! The runtime's life: prepare, wait for the configuration, start the app,
//! watch it, stop it.
//!
//! Its files follow that life: `prepare` (what is known before the
//! configuration: the app, its TLS mode and fingerprint, its sandbox and
//! limits), `handover` (the RA-TLS configuration server the owner's
//! configuration arrives on), `start` (the decrypted app's requirements and
//! server, confined), `serving` (the node's front and its certificate,
//! renewed over ACME), `health` (the health checks and the watch over the
//! running app), `storage` (the persistent home, restored and written back)
//! and `shutdown` (the reasons to stop, and the app's end).

pub(crate) mod handover;
mod health;
pub(crate) mod prepare;
mod serving;
mod shutdown;
mod start;
pub(crate) mod storage;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mse_api::apps::AppStatus;
use mse_api::launch::Launch;
use mse_run::acme;
use mse_run::limits;
use mse_run::logs::LogSink;
use mse_run::sandbox::Decision;
use mse_run::status::{emit, Event};
use mse_runtime::EnvCache;

use self::handover::life;
use self::prepare::prepare;

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

/// `mse-run --fingerprint`: the app's fingerprint (hex) on standard
/// output, computed as the node computes it, with nothing started: what a
/// node host renders into an app's Gramine manifest.
pub fn print_fingerprint(launch: &Launch) -> ExitCode {
    match prepare::identify(launch, Utc::now()) {
        Ok(identity) => {
            println!("{}", hex::encode(identity.fingerprint));
            ExitCode::SUCCESS
        }
        Err(Failure::Invalid(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(INVALID)
        }
        Err(Failure::Error(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
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
        Err(failure) => return failure.exit(),
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

pub(crate) enum Failure {
    /// Bad arguments or files: nothing started.
    Invalid(String),
    /// Something failed while setting up.
    Error(String),
}

impl Failure {
    /// Says what failed (an `on_error` event for an error once started) and
    /// gives the exit code: 2 for bad arguments or files, 1 otherwise.
    pub(crate) fn exit(self) -> ExitCode {
        match self {
            Failure::Invalid(message) => {
                eprintln!("error: {message}");
                ExitCode::from(INVALID)
            }
            Failure::Error(message) => {
                eprintln!("error: {message}");
                emit(&Event::new(AppStatus::OnError, Utc::now()).because(message));
                ExitCode::FAILURE
            }
        }
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::Invalid(message.into())
}

pub(crate) fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}
