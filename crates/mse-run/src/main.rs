//! `mse-run`: the node runtime. It proves what it runs with an RA-TLS
//! certificate, waits for the owner's configuration, decrypts the code and
//! serves the app.

// The node calls the C library (signals, uids); each unsafe block says why
// it is sound.
#![allow(unsafe_code)]

mod config_server;
mod key_service;
mod node;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use mse_api::launch::Launch;

/// Runs one encrypted app: RA-TLS configuration server, decryption, app server.
///
/// What to run is one launch description (JSON, docs/run.md): the app, its
/// runtime, where to listen and keep files, the sandbox and limits, the
/// quote provider and the TLS mode. Status changes are printed on standard
/// output as JSON lines (`initializing`, `running`, `on_error`, `stopped`);
/// the app's output and access log go to the log file, kept to its last
/// 64 kB.
#[derive(Debug, Parser)]
#[command(name = "mse-run", version)]
struct Args {
    /// The launch description (JSON); `-` reads it from standard input
    #[arg(long, value_name = "FILE", required_unless_present = "key_service")]
    launch: Option<PathBuf>,
    /// Run the key service (docs/keys.md) described by this launch file
    /// (JSON) instead of an app
    #[arg(long, value_name = "FILE", conflicts_with_all = ["launch", "fingerprint"])]
    key_service: Option<PathBuf>,
    /// Print the app's fingerprint (hex) and exit, starting nothing: what
    /// the manifest of its Gramine enclave sets (docs/attestation.md)
    #[arg(long)]
    fingerprint: bool,
}

/// The largest launch description read (a few kB in practice).
const MAX_LAUNCH: u64 = 1024 * 1024;

/// Reads and checks the launch description at `path` (`-`: standard input).
fn read_launch(path: &Path) -> Result<Launch, String> {
    let stdin = path == Path::new("-");
    let name = if stdin {
        "standard input".to_string()
    } else {
        path.display().to_string()
    };
    let mut text = String::new();
    let read = if stdin {
        std::io::stdin().take(MAX_LAUNCH).read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_LAUNCH).read_to_string(&mut text))
    };
    read.map_err(|e| format!("cannot read the launch description from {name}: {e}"))?;
    if text.len() as u64 >= MAX_LAUNCH {
        return Err(format!(
            "the launch description in {name} is {MAX_LAUNCH} bytes or more (a few kB are \
             expected)"
        ));
    }
    Launch::from_json(&text).map_err(|e| format!("the launch description in {name}: {e}"))
}

fn main() -> ExitCode {
    // The code key, the app's secrets and the TLS key pass through this
    // process: nothing of the same user may trace it or read its memory.
    mse_run::sandbox::make_undumpable();
    // While this process has one thread: what it mounts for its app is its
    // own and goes with it.
    mse_run::sandbox::enter_own_mount_namespace();
    let args = Args::parse();
    if let Some(path) = &args.key_service {
        let launch = match key_service::read_launch(path) {
            Ok(launch) => launch,
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::from(node::INVALID);
            }
        };
        return match tokio_runtime() {
            Ok(runtime) => runtime.block_on(key_service::run(launch)),
            Err(code) => code,
        };
    }
    let Some(launch_path) = &args.launch else {
        eprintln!("error: --launch FILE is needed");
        return ExitCode::from(node::INVALID);
    };
    let launch = match read_launch(launch_path) {
        Ok(launch) => launch,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(node::INVALID);
        }
    };
    if args.fingerprint {
        return node::print_fingerprint(&launch);
    }
    match tokio_runtime() {
        Ok(runtime) => runtime.block_on(node::run(launch)),
        Err(code) => code,
    }
}

/// The runtime both programs run on: two worker threads.
fn tokio_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start: {e}");
            ExitCode::FAILURE
        })
}
