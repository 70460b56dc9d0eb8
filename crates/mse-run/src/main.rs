//! `mse-run`: the node runtime. It proves what it runs with an RA-TLS
//! certificate, waits for the owner's configuration, decrypts the code and
//! serves the app.

// The node calls the C library (signals, uids); each unsafe block says why
// it is sound.
#![allow(unsafe_code)]

mod config_server;
mod node;

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Parser;

/// Runs one encrypted app: RA-TLS configuration server, decryption, app server.
///
/// Status changes are printed on standard output as JSON lines
/// (`initializing`, `running`, `on_error`, `stopped`); the app's output and
/// access log go to the log file, kept to its last 64 kB.
#[derive(Debug, Parser)]
#[command(name = "mse-run", version)]
pub struct Args {
    /// The app's uuid (the configuration must name it)
    #[arg(long)]
    pub uuid: String,
    /// The app, as `module:variable`
    #[arg(long, value_name = "MODULE:VARIABLE")]
    pub application: String,
    /// The app's domain: the certificate's subject alternative name
    #[arg(long)]
    pub domain: String,
    /// The encrypted code tarball
    #[arg(long, value_name = "FILE")]
    pub code: PathBuf,
    /// The runtime image (`code.docker`), looked up in the catalog
    #[arg(long, value_name = "REF")]
    pub image: String,
    /// The runtime catalog [default: the built-in one]
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Where runtime environments are built and cached
    #[arg(long, value_name = "DIR", env = "MSE_CACHE_DIR")]
    pub cache_dir: PathBuf,
    /// What installs packages: `uv` (on PATH), `pip`, or the path of a uv
    /// binary [default: $MSE_UV, else uv on PATH, else pip]
    #[arg(long, value_name = "uv|pip|FILE", value_parser = mse_runtime::Installer::parse)]
    pub installer: Option<mse_runtime::Installer>,
    /// The enclave size, as the platform names it (part of the fingerprint)
    #[arg(long, default_value = "1G")]
    pub enclave_size: String,
    /// Address to listen on, first for the configuration, then for the app
    /// (port 0: a free port, told in the `initializing` event)
    #[arg(long, value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// A private folder for the app (created, mode 0700)
    #[arg(long, value_name = "DIR")]
    pub work_dir: PathBuf,
    /// The log file [default: WORK_DIR/app.log]
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// The app's health check path, polled until it answers 2xx (404 or 405,
    /// no such GET route, ends the node at once)
    #[arg(long, default_value = "/health")]
    pub healthcheck: String,
    /// Seconds to wait for the app to become healthy
    #[arg(long, default_value_t = 120)]
    pub health_timeout: u64,
    /// Seconds to wait for the configuration [default: until expiry]
    #[arg(long)]
    pub config_timeout: Option<u64>,
    /// `required`: confine the app (Landlock, its own uid where this runs as
    /// root) or refuse to start it; `best-effort`: the operator's explicit
    /// opt-out, running the app unconfined, and saying so, where this kernel
    /// offers no sandbox
    #[arg(long, value_enum, default_value = "required", env = "MSE_SANDBOX")]
    pub sandbox: mse_run::sandbox::Mode,

    /// The most memory the app server and every process it starts may use,
    /// in MB (a cgroup of its own; without limits, said so, where the
    /// kernel offers no writable cgroup)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub memory_mb: Option<u64>,
    /// The most CPU time the app gets, in cores (as --memory-mb)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub cores: Option<u32>,

    /// Where quotes come from
    #[arg(long, value_enum, default_value = "simulation")]
    pub quote_provider: Provider,
    /// This node host's quote-signing key (P-256, PKCS#8 PEM), `simulation`
    /// only
    #[arg(long, value_name = "FILE")]
    pub simulation_quote_key: Option<PathBuf>,
    /// The certificate chain of that key (PCK leaf, then the platform's
    /// simulation CA; PEM), as the platform certified it, `simulation` only
    #[arg(long, value_name = "FILE")]
    pub simulation_quote_chain: Option<PathBuf>,
    /// The operator's enclave-signing key (RSA-3072, PEM), `simulation` only: sets MRSIGNER
    #[arg(long, value_name = "PEM")]
    pub signer_key: Option<PathBuf>,
    /// Root of the attestation device, `gramine` only
    #[arg(long, value_name = "DIR", default_value = "/dev/attestation")]
    pub attestation_root: PathBuf,

    /// Serve the app with the RA-TLS certificate, valid until EXPIRY
    /// (RFC 3339 or Unix seconds)
    #[arg(long, value_name = "EXPIRY", value_parser = parse_expiry,
          group = "tls", required_unless_present_any = ["certificate", "no_ssl"])]
    pub ratls: Option<DateTime<Utc>>,
    /// Serve the app with the owner's certificate chain (PEM); its key comes
    /// with the configuration
    #[arg(long, value_name = "PEM", group = "tls")]
    pub certificate: Option<PathBuf>,
    /// Serve the app over plain HTTP (TLS ends at the platform's proxy)
    #[arg(long, group = "tls")]
    pub no_ssl: bool,
    /// Serve the app with a browser-trusted certificate from this ACME
    /// directory (with --ratls): its key is the node's RA-TLS key, the node
    /// answers the CA's TLS-ALPN-01 challenge on --listen itself, renews it
    /// two thirds into its validity, and publishes its evidence at
    /// /.well-known/mse-evidence; the RA-TLS certificate is served until
    /// the first one is issued
    #[arg(long, value_name = "URL", requires_all = ["ratls", "acme_account"])]
    pub acme_directory: Option<String>,
    /// Trust these PEM roots for the ACME server's own HTTPS [default: the
    /// system's]
    #[arg(long, value_name = "PEM", requires = "acme_directory")]
    pub acme_ca_bundle: Option<PathBuf>,
    /// This node host's ACME account key (PKCS#8 PEM, made, mode 0600,
    /// when missing)
    #[arg(long, value_name = "FILE", requires = "acme_directory")]
    pub acme_account: Option<PathBuf>,
    /// Ask the CA for certificates valid this many seconds (an order's
    /// `notAfter`), for CAs that honour it [default: the CA's choice]
    #[arg(long, value_name = "SECONDS", requires = "acme_directory",
          value_parser = clap::value_parser!(u64).range(30..=31_536_000))]
    pub acme_lifetime: Option<u64>,
    /// The app's expiry with --no-ssl (and, optionally, --certificate)
    #[arg(long, value_name = "EXPIRY", value_parser = parse_expiry, conflicts_with = "ratls")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Where quotes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    /// No hardware: quotes certified by the platform's simulation CA
    Simulation,
    /// Real SGX through Gramine's /dev/attestation
    Gramine,
}

fn parse_expiry(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(seconds) = text.parse::<i64>() {
        return DateTime::from_timestamp(seconds, 0)
            .ok_or_else(|| format!("{seconds} is out of range"));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!("`{text}` is neither RFC 3339 (2026-12-01T12:00:00Z) nor Unix seconds")
        })
}

fn main() -> ExitCode {
    // The code key, the app's secrets and the TLS key pass through this
    // process: nothing of the same user may trace it or read its memory.
    mse_run::sandbox::make_undumpable();
    // While this process has one thread: what it mounts for its app is its
    // own and goes with it.
    mse_run::sandbox::enter_own_mount_namespace();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(node::run(args))
}
