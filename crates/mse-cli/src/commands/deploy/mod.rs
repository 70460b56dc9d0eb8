//! `mse deploy`: the owner's whole deployment: check, package, upload,
//! verify the node, hand it the key and secrets, wait until it serves, save
//! the context. The node's side of it is in docs/run.md ("Life of a node").
//!
//! The flags, the profile and `mse.toml` are first resolved into a
//! [`plan::Plan`] without any network I/O; [`deploy`] then runs the named
//! steps of [`steps`] one after the other, and [`report`] prints the result.

pub(crate) mod node;
mod plan;
mod report;
mod steps;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::anyhow;
use mse_api::apps::App;

pub use plan::Rotation;

use crate::commands::load_valid_config;
use crate::exit::{CmdResult, Failure};
use crate::profile::Profile;
use crate::progress::Steps;

/// Arguments of `mse deploy`.
#[derive(Debug, clap::Args)]
#[command(after_help = format!(
    "Steps: check mse.toml, check the project and resource, replace a live app of the same \
     name (asked, or -y), encrypt the code, upload it, wait for the node, verify its certificate \
     (attestation), send it the code key and secrets over TLS pinned to that certificate, wait \
     until the app serves, with --keep-running hand the keys to the verified key service under a \
     policy your owner key signs, check the certificate a browser sees against the node's \
     evidence (ACME and [ssl] apps whose domain resolves), save the context. With --json, progress goes \
     to stderr and stdout carries one JSON object: the app as `mse status --json` shows it \
     ({}), its fingerprint being the one this deployment computed and verified; plus resolves \
     (whether this machine's resolver knows the URL's name; when it does not, a warning says \
     what to do), verified, tee, browser_verified, cert_path, context_path, key_service (with \
     --keep-running: app, policy_version, measurement), timings.",
    crate::views::APP_FIELDS
))]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Replace a live app of the same name without asking
    #[arg(short = 'y', long = "yes")]
    yes: bool,
    /// Skip the verification of the node (its key and secrets are then sent to an unverified node)
    #[arg(long)]
    no_verify: bool,
    /// Let the platform serve the app with its own certificate (operator mode)
    #[arg(long)]
    untrusted_ssl: bool,
    /// Keep the node's self-signed RA-TLS certificate where the platform would obtain a
    /// browser-trusted one over ACME (zero trust either way; only `mse verify` and clients given
    /// the RA-TLS certificate can then open the app)
    #[arg(long, conflicts_with = "untrusted_ssl")]
    no_acme: bool,
    /// Have the platform's key service, verified first, keep the code key and secrets under a
    /// release policy your owner key signs (this deployment's fingerprint on its TEE), so that
    /// the platform can start the app again without you (docs/keys.md)
    #[arg(long, conflicts_with = "no_verify")]
    keep_running: bool,
    /// A new version of an app whose keys the key service keeps: send it only the new code
    /// key and a later policy admitting the new fingerprint; the service gives the new node the
    /// secrets, the owner's TLS key and the storage key it keeps (the local secrets file is not
    /// read or sent). Implies --keep-running (docs/keys.md)
    #[arg(long, conflicts_with = "no_verify")]
    keep_secrets: bool,
    /// `mse rotate`: what is renewed besides the code key.
    #[arg(skip)]
    rotation: Option<plan::Rotation>,
}

/// The common flags of `mse deploy` that `mse rotate` takes too.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The configuration file [default: ./mse.toml]
    #[arg(long, value_name = "FILE")]
    pub path: Option<PathBuf>,
    /// Accept a node in the simulation TEE (no hardware protection) for this deployment
    #[arg(long)]
    pub allow_simulation: bool,
    /// Trust these test roots (PEM: an emulated Intel root CA, emulated AMD ARKs) instead of
    /// Intel's and AMD's: for emulated hardware only; the node is reported EMULATED
    #[arg(long, value_name = "PEM")]
    pub test_roots: Option<PathBuf>,
    /// PCCS to fetch the collateral of an SGX or TDX node's quote from [default:
    /// https://api.trustedservices.intel.com]
    #[arg(long, value_name = "URL")]
    pub pccs_url: Option<String>,
    /// How long to wait for the app to start, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub timeout: u64,
    /// Print one JSON object on stdout at the end (progress goes to stderr)
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// The deployment `mse rotate` runs: the app of `common.path` replaces
    /// the live one (no question), its keys kept by the key service, with
    /// what `rotation` renews.
    pub fn rotation(common: Common, rotation: plan::Rotation) -> Args {
        Args {
            common,
            yes: true,
            no_verify: false,
            untrusted_ssl: false,
            no_acme: false,
            keep_running: true,
            keep_secrets: !rotation.secrets,
            rotation: Some(rotation),
        }
    }
}

/// What the user must know if the deployment stops half way: the app it
/// created on the platform, if any, and whether that app can still run.
#[derive(Clone, Default)]
pub struct LeftBehind(Arc<Mutex<Option<(String, bool)>>>);

impl LeftBehind {
    fn set(&self, app: &App) {
        if let Ok(mut guard) = self.0.lock() {
            *guard = Some((app.id.clone(), !app.is_final()));
        }
    }

    /// The app left behind is stopped or failed: it only waits to be removed.
    fn ended(&self) {
        if let Ok(mut guard) = self.0.lock() {
            if let Some((_, live)) = guard.as_mut() {
                *live = false;
            }
        }
    }

    fn clear(&self) {
        if let Ok(mut guard) = self.0.lock() {
            *guard = None;
        }
    }

    fn hint(&self) -> String {
        match self.0.lock().ok().and_then(|g| g.clone()) {
            Some((id, true)) => format!(
                "the app {id} was left on the platform; see it with `mse status {id}`, stop it \
                 with `mse stop {id}`, then remove it with `mse remove {id}`"
            ),
            Some((id, false)) => format!(
                "the app {id} is no longer running but stays on the platform with its log \
                 (`mse logs {id}`); remove it with `mse remove {id}`"
            ),
            None => "nothing was left on the platform".to_string(),
        }
    }
}

/// Runs `mse deploy`.
pub fn run(args: Args) -> CmdResult {
    let left = LeftBehind::default();
    {
        let left = left.clone();
        // A second handler cannot be installed; deploy runs once per process.
        let _ = ctrlc::set_handler(move || {
            eprintln!("\ninterrupted: {}", left.hint());
            std::process::exit(130);
        });
    }
    let mut steps = Steps::new();
    let result = deploy(&args, &mut steps, &left);
    if result.is_err() {
        steps.fail();
        let hint = left.hint();
        return result.map_err(|failure| match failure {
            Failure::Other(e) => Failure::Other(anyhow!("{e:#}\n{hint}")),
            other => other,
        });
    }
    result
}

/// The deployment, step by step.
fn deploy(args: &Args, steps: &mut Steps, left: &LeftBehind) -> CmdResult {
    let started = Instant::now();
    let profile = Profile::load()?;
    let client = profile.client()?;
    let flags = plan::Flags::resolve(args, &profile)?;

    steps.start("config", "Checking mse.toml");
    let config = load_valid_config(args.common.path.as_deref(), flags.untrusted_ssl)?;
    let runtime = steps::runtime(&client, &config)?;
    let files = plan::AppFiles::read(&config)?;
    let plan = plan::Plan::new(flags, config, files).with_storage_key();
    if let Some(rotation) = plan.flags.rotation {
        if rotation.storage_key && !plan.keeps_storage() {
            return Err(Failure::Invalid(
                "--storage-key: this app keeps no persistent storage ([storage] persistent = \
                 true in mse.toml)"
                    .into(),
            ));
        }
    }
    steps::config_checked(&plan, steps);

    let hardware = crate::commands::verify::hardware_policy(
        &runtime.catalog,
        Some(&profile.signer_key),
        Some(&plan.config.code.docker),
        args.common.test_roots.as_deref(),
    )?;
    let ctx = steps::Deployment {
        client: &client,
        profile: &profile,
        plan: &plan,
        left,
        hardware,
        pccs_url: args.common.pccs_url.clone(),
    };
    steps::check_project_and_resource(&ctx, steps)?;
    steps::replace_live_app(&ctx, steps)?;
    let package = steps::encrypt(&ctx, steps)?;
    let created = steps::upload(&ctx, &runtime, &package, steps)?;
    let waiting = steps::wait_for_node(&ctx, &created, steps)?;
    let expected = steps::expected_fingerprint(&ctx, &runtime, &package, &created, &waiting)?;
    let node = steps::verify_node(&ctx, &runtime, &created, &waiting.app, &expected, steps)?;
    let (app, mut kept) = if plan.service_configures() {
        // The key service configures the node with what it keeps.
        let kept = steps::keep_keys(&ctx, &package, &waiting.app, &expected, &node, steps)?;
        (steps::wait_until_running(&ctx, &waiting.app, steps)?, kept)
    } else {
        steps::configure(&ctx, &package, &waiting.app, &node, steps)?;
        let app = steps::wait_until_running(&ctx, &waiting.app, steps)?;
        let kept = steps::keep_keys(&ctx, &package, &app, &expected, &node, steps)?;
        (app, kept)
    };
    if let (Some(kept), Some(rotation)) = (kept.as_mut(), plan.flags.rotation) {
        kept.rotated = Some(steps::rotated(&ctx, &app, rotation, steps)?);
    }
    let served = steps::check_served_certificate(&ctx, &app, &expected, steps)?;
    let saved = steps::save_context(&ctx, &package, &app, &expected, &node, &served, steps)?;
    left.clear();

    report::print(&report::Deployed {
        profile: &profile,
        flags: &plan.flags,
        app: &app,
        expected: &expected,
        node: &node,
        served: &served,
        saved: &saved,
        kept: kept.as_ref(),
        steps,
        started,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_left_behind_hint_says_to_stop_a_live_app_and_remove_an_ended_one() {
        let left = LeftBehind::default();
        assert_eq!(left.hint(), "nothing was left on the platform");
        if let Ok(mut guard) = left.0.lock() {
            *guard = Some(("abc".into(), true));
        }
        assert!(left.hint().contains("mse stop abc"), "{}", left.hint());
        left.ended();
        assert!(!left.hint().contains("mse stop"), "{}", left.hint());
        assert!(left.hint().contains("mse remove abc"), "{}", left.hint());
        left.clear();
        assert_eq!(left.hint(), "nothing was left on the platform");
    }
}
