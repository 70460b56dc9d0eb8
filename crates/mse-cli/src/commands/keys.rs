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
    /// After every replica lost its root key: verify the key service as
    /// `mse keys verify` does, then send it the recovery shares its holders
    /// opened (`mse-server keys open-share`), at least the threshold; it
    /// recovers the platform's root key from them (docs/keys.md)
    Recover(RecoverArgs),
}

/// Arguments of `mse keys recover`.
#[derive(Debug, clap::Args)]
struct RecoverArgs {
    /// A file of opened shares, one per line (`mse-recovery-v1.…`); kept
    /// off the command line, where other users of this machine would see
    /// them
    #[arg(long, value_name = "FILE")]
    shares_file: std::path::PathBuf,
    /// Accept a simulated TEE (no hardware protection), reported as such
    #[arg(long)]
    allow_simulation: bool,
    /// Trust these test roots (PEM) instead of Intel's and AMD's: emulated
    /// hardware only
    #[arg(long, value_name = "PEM")]
    test_roots: Option<std::path::PathBuf>,
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
        Command::Verify(args) => verify(args, true),
        Command::Recover(args) => recover(args),
    }
}

fn recover(args: RecoverArgs) -> CmdResult {
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(&args.shares_file).map_err(|e| {
            Failure::Invalid(format!("cannot read {}: {e}", args.shares_file.display()))
        })?);
    let shares: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if shares.is_empty() {
        return Err(Failure::Invalid(format!(
            "{} holds no share: one opened share (mse-recovery-v1.…) per line",
            args.shares_file.display()
        )));
    }
    // The shares go to a verified key service only.
    let (info, port, cert_der) =
        verified_service(args.allow_simulation, args.test_roots.clone(), false)?;
    let answer: mse_api::keys::RootCheck = super::deploy::node::post_to_key_service(
        &info.domain,
        port,
        &cert_der,
        "/recover",
        &mse_api::keys::Recover { shares },
        "the shares",
    )?;
    println!(
        "the key service recovered root key {}",
        answer.check.unwrap_or_default()
    );
    Ok(())
}

/// Verifies the key service (as `mse keys verify`, printing its checks);
/// with `keeping`, only one that keeps keys now. What it is, the proxy port
/// it is reached on, and the certificate that verified (DER), for what is
/// sent to it next.
pub(crate) fn verified_service(
    allow_simulation: bool,
    test_roots: Option<std::path::PathBuf>,
    keeping: bool,
) -> Result<(mse_api::keys::KeyServiceInfo, u16, Vec<u8>), Failure> {
    verify(
        VerifyArgs {
            measurement: None,
            allow_simulation,
            test_roots,
            json: false,
        },
        keeping,
    )?;
    let profile = Profile::load()?;
    let info = profile.client()?.key_service()?;
    let pem = std::fs::read(conf_dir().join("key-service.pem"))?;
    let cert_der = mse_attest::ratls::pem_to_der(&pem)
        .map_err(|e| Failure::Other(anyhow::anyhow!("the verified certificate: {e}")))?;
    Ok((info, profile.platform.proxy_port, cert_der))
}

/// Verifies the key service; with `keeping`, only one that keeps keys now
/// (one waiting for its root key passes without).
fn verify(args: VerifyArgs, keeping: bool) -> CmdResult {
    let profile = Profile::load()?;
    let info = profile.client()?.key_service()?;
    let published = info.measurement.clone();
    let Some(published) = published.filter(|_| info.running || !keeping) else {
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
