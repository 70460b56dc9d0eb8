//! `mse policy show|edit NAME`: the release policy the owner's key signed
//! for an app name whose keys the key service keeps (docs/keys.md). `mse
//! deploy --keep-running` keeps a copy of each policy it signs in
//! `$MSE_CONF_PATH/policies/PROJECT/NAME.json`; `edit` signs a later
//! version with the same key and hands it to the verified key service,
//! which keeps the app's keys as they are.

use std::path::PathBuf;

use mse_api::apps::ListQuery;
use mse_api::tee::Tee;
use mse_keys::{Rule, SignedPolicy};

use crate::conf::conf_dir;
use crate::exit::{CmdResult, Failure};
use crate::profile::Profile;

/// Arguments of `mse policy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Show the policy last signed on this machine for app NAME: which
    /// fingerprints, TEE kinds and TCB statuses may receive its keys
    Show(ShowArgs),
    /// Sign a later version of NAME's policy with your key and hand it to
    /// the key service (verified first); the app's keys stay as they are
    Edit(EditArgs),
}

/// Arguments of `mse policy show`.
#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// The app's name (`name` in its mse.toml)
    name: String,
    /// Its project
    #[arg(long, default_value = "default")]
    project: String,
    /// Print the signed policy as JSON
    #[arg(long)]
    json: bool,
}

/// Arguments of `mse policy edit`.
#[derive(Debug, clap::Args)]
struct EditArgs {
    /// The app's name (`name` in its mse.toml)
    name: String,
    /// Its project
    #[arg(long, default_value = "default")]
    project: String,
    /// The TEE kinds a node may run in (simulation, sgx, tdx, sev-snp);
    /// repeatable, replaces the list
    #[arg(long = "tee", value_name = "TEE")]
    tees: Vec<Tee>,
    /// The TCB statuses accepted (UpToDate, SWHardeningNeeded, …, or
    /// Simulation); repeatable, replaces the list
    #[arg(long = "tcb-status", value_name = "STATUS")]
    tcb_statuses: Vec<String>,
    /// How long a release lasts before the node attests again, seconds
    /// (60 to 2592000)
    #[arg(long, value_name = "SECS")]
    lease_seconds: Option<u64>,
    /// Accept a simulated key service (no hardware protection)
    #[arg(long)]
    allow_simulation: bool,
    /// Trust these test roots (PEM) instead of Intel's and AMD's: emulated
    /// hardware only
    #[arg(long, value_name = "PEM")]
    test_roots: Option<PathBuf>,
}

/// Runs `mse policy`.
pub fn run(args: Args) -> CmdResult {
    match args.command {
        Command::Show(args) => show(args),
        Command::Edit(args) => edit(args),
    }
}

/// Where the copy of a policy signed for `project`/`name` is kept.
fn path(project: &str, name: &str) -> Result<PathBuf, Failure> {
    for (what, value) in [("project", project), ("name", name)] {
        mse_config::fields::check_name(what, value).map_err(Failure::Invalid)?;
    }
    Ok(conf_dir()
        .join("policies")
        .join(project)
        .join(format!("{name}.json")))
}

/// Keeps a copy of `signed`, the policy just handed to the key service.
pub fn save(project: &str, name: &str, signed: &SignedPolicy) -> Result<(), Failure> {
    let path = path(project, name)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(signed)
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot encode the policy: {e}")))?;
    std::fs::write(&path, text)?;
    Ok(())
}

fn load(project: &str, name: &str) -> Result<SignedPolicy, Failure> {
    let path = path(project, name)?;
    let text = std::fs::read(&path).map_err(|e| {
        Failure::Invalid(format!(
            "no policy for {project}/{name} on this machine ({}: {e}): `mse deploy \
             --keep-running` signs one",
            path.display()
        ))
    })?;
    serde_json::from_slice(&text)
        .map_err(|e| Failure::Invalid(format!("{}: not a signed policy: {e}", path.display())))
}

fn show(args: ShowArgs) -> CmdResult {
    let signed = load(&args.project, &args.name)?;
    let policy = signed
        .verify()
        .map_err(|e| Failure::Invalid(format!("the policy kept here: {e}")))?;
    if args.json {
        let value = serde_json::json!({"policy": policy, "owner_key": hex::encode(
            signed.owner_key().map(|k| k.to_bytes()).unwrap_or_default())});
        println!("{value:#}");
        return Ok(());
    }
    println!("app           {}", policy.app);
    println!("version       {}", policy.version);
    for rule in &policy.admit {
        match rule {
            Rule::Fingerprint { fingerprint } => {
                println!("admits        fingerprint {fingerprint}");
            }
            Rule::Inputs { .. } => println!("admits        fingerprint inputs (any code)"),
        }
    }
    let tees: Vec<&str> = policy.tees.iter().map(|t| t.as_str()).collect();
    println!("tees          {}", tees.join(", "));
    println!("tcb statuses  {}", policy.tcb_statuses.join(", "));
    println!("lease         {} s", policy.lease_seconds);
    if policy.emulated {
        let roots = policy
            .test_roots
            .as_deref()
            .map_or(0, |pem| pem.matches("-----BEGIN CERTIFICATE-----").count());
        println!(
            "emulated      accepted, under {roots} test root certificate(s): emulated hardware, \
             no protection"
        );
    }
    Ok(())
}

fn edit(args: EditArgs) -> CmdResult {
    let held = load(&args.project, &args.name)?;
    let mut policy = held
        .verify()
        .map_err(|e| Failure::Invalid(format!("the policy kept here: {e}")))?;
    let owner = crate::owner_key::load_or_create()?;
    if held.owner_key().ok().map(|k| k.to_bytes()) != Some(owner.verifying_key().to_bytes()) {
        return Err(Failure::Invalid(format!(
            "the policy of {}/{} was signed by another key than {}: only that key may sign \
             its next version",
            args.project,
            args.name,
            crate::owner_key::path().display()
        )));
    }
    if !args.tees.is_empty() {
        policy.tees = args.tees.clone();
    }
    if !args.tcb_statuses.is_empty() {
        policy.tcb_statuses = args.tcb_statuses.clone();
    }
    if let Some(lease) = args.lease_seconds {
        policy.lease_seconds = lease;
    }
    let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(1);
    policy.version = now.max(policy.version.saturating_add(1));
    let signed = policy
        .sign(&owner)
        .map_err(|e| Failure::Invalid(format!("the new policy: {e}")))?;

    // A ticket of a live app of that name says whose it is to the service.
    let profile = Profile::load()?;
    let client = profile.client()?;
    let apps = client.apps(&ListQuery {
        project: Some(args.project.clone()),
        name: Some(args.name.clone()),
        ..Default::default()
    })?;
    let app = apps.iter().find(|a| !a.is_final()).ok_or_else(|| {
        Failure::Invalid(format!(
            "no live app named {} in project {}: the key service takes a new policy with a \
                 ticket of a live app of the name",
            args.name, args.project
        ))
    })?;
    let (info, port, cert_der) =
        super::keys::verified_service(args.allow_simulation, args.test_roots.clone(), true)?;
    let ticket = client.keep_running(&app.id)?;
    let request = mse_api::keys::PolicyUpdate {
        ticket: ticket.ticket,
        policy: serde_json::to_value(&signed)
            .map_err(|e| Failure::Other(anyhow::anyhow!("cannot encode the policy: {e}")))?,
    };
    let answer: mse_api::keys::ProvisionAnswer = super::deploy::node::post_to_key_service(
        &info.domain,
        port,
        &cert_der,
        "/policy",
        &request,
        "the policy",
    )?;
    save(&args.project, &args.name, &signed)?;
    println!(
        "policy version {} in force for {}",
        answer.policy_version, answer.app
    );
    Ok(())
}
