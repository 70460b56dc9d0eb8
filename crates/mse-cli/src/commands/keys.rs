//! `mse keys`: the platform's key service (docs/keys.md), which owners
//! verify before they trust it with an app's keys.

use clap::Parser as _;

use crate::conf::conf_dir;
use crate::exit::{CmdResult, Failure};
use crate::profile::Profile;

/// Arguments of `mse keys`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Verify the platform's key service: its RA-TLS certificate must carry
    /// evidence of its measurement, signed by the platform's MRSIGNER in a
    /// genuine TEE (checks as `mse verify`)
    Verify(VerifyArgs),
}

/// Arguments of `mse keys verify`.
#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The measurement to expect, 64 hex digits (the one you computed or
    /// were given) [default: the one the platform publishes, `GET /keys`]
    #[arg(long, value_name = "HEX")]
    measurement: Option<String>,
    /// Accept a simulated TEE (no hardware protection), reported as such
    /// [default: accepted for the platform of `mse login --allow-simulation`]
    #[arg(long)]
    allow_simulation: bool,
    /// Trust these test roots (PEM) instead of Intel's and AMD's: emulated
    /// hardware only
    #[arg(long, value_name = "PEM")]
    test_roots: Option<std::path::PathBuf>,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

/// `mse verify`'s own arguments, read from words.
#[derive(clap::Parser)]
struct Verify {
    #[command(flatten)]
    args: super::verify::Args,
}

/// Runs `mse keys`.
pub fn run(args: Args) -> CmdResult {
    match args.command {
        Command::Verify(args) => verify(args),
    }
}

fn verify(args: VerifyArgs) -> CmdResult {
    let profile = Profile::load()?;
    let info = profile.client()?.key_service()?;
    let published = info.measurement.clone();
    let Some(published) = published.filter(|_| info.running) else {
        return Err(Failure::Other(anyhow::anyhow!(
            "the key service of {} does not run now{}: nothing to verify",
            profile.url,
            info.node
                .as_deref()
                .map(|n| format!(" (it last ran on node {n})"))
                .unwrap_or_default()
        )));
    };
    let expected = match &args.measurement {
        Some(pinned) => {
            let pinned = pinned.trim().to_ascii_lowercase();
            if pinned != published {
                eprintln!(
                    "the platform publishes the measurement {published}, not the {pinned} you \
                     expect: checking the service against yours"
                );
            }
            pinned
        }
        None => published,
    };
    let target = format!("{}:{}", info.domain, profile.platform.proxy_port);
    let output = conf_dir().join("key-service.pem");
    let mut words = vec![
        "verify".to_string(),
        target,
        "--fingerprint".into(),
        expected,
        "--output".into(),
        output.display().to_string(),
    ];
    if args.allow_simulation {
        words.push("--allow-simulation".into());
    }
    if let Some(roots) = &args.test_roots {
        words.push("--test-roots".into());
        words.push(roots.display().to_string());
    }
    if args.json {
        words.push("--json".into());
    }
    let parsed = Verify::try_parse_from(words)
        .map_err(|e| Failure::Invalid(format!("mse keys verify: {e}")))?;
    super::verify::run(parsed.args)
}
