//! `mse login` and `mse logout`: the profile of the platform the client
//! deploys to.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::anyhow;

use crate::api::Client;
use crate::exit::{CmdResult, Failure};
use crate::profile::{self, Profile, BASE_URL_ENV};
use crate::render;

/// Arguments of `mse login`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The profile (URL, token, the platform's signer key and CAs) is saved \
in $MSE_CONF_PATH/login.toml, readable by you only. MSE_BASE_URL overrides its URL."
)]
pub struct Args {
    /// The platform's API, e.g. http://127.0.0.1:9443 [default: $MSE_BASE_URL, else asked]
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The API token; `-` reads it from the first line of stdin [default: asked]
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Accept apps in the simulation TEE (no hardware protection) from this platform
    #[arg(long)]
    allow_simulation: bool,
}

/// Arguments of `mse logout`.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {}

fn terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn ask_url() -> Result<String, Failure> {
    if !terminal() {
        return Err(Failure::Invalid(format!(
            "no platform URL: pass --url URL or set {BASE_URL_ENV}"
        )));
    }
    dialoguer::Input::<String>::new()
        .with_prompt("Platform API URL")
        .default("http://127.0.0.1:9443".into())
        .interact_text()
        .map_err(|e| Failure::Other(anyhow!("cannot read the answer: {e}")))
}

fn ask_token() -> Result<String, Failure> {
    if !terminal() {
        return Err(Failure::Invalid(
            "no token: pass --token TOKEN, or --token - to read it from stdin".into(),
        ));
    }
    dialoguer::Password::new()
        .with_prompt("API token")
        .interact()
        .map_err(|e| Failure::Other(anyhow!("cannot read the answer: {e}")))
}

fn read_stdin_token() -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::Other(anyhow!("cannot read the token from stdin: {e}")))?;
    Ok(line.trim().to_string())
}

/// Runs `mse login`.
pub fn run(args: Args) -> CmdResult {
    let url = match args
        .url
        .or_else(|| std::env::var(BASE_URL_ENV).ok().filter(|u| !u.is_empty()))
    {
        Some(url) => url,
        None => ask_url()?,
    };
    let url = url.trim().trim_end_matches('/').to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Failure::Invalid(format!(
            "`{url}` is not an http:// or https:// URL"
        )));
    }
    let token = match args.token.as_deref() {
        Some("-") => read_stdin_token()?,
        Some(token) => token.trim().to_string(),
        None => ask_token()?,
    };
    if token.is_empty() {
        return Err(Failure::Invalid("the token is empty".into()));
    }

    let client = Client::new(&url, Some(token.clone()))?;
    let user = client.me().map_err(|e| match e.status() {
        Some(401) => Failure::Other(anyhow!(
            "the token was refused by {url}: check it, or ask the operator for a new one"
        )),
        _ => e.into(),
    })?;
    let platform = client.platform()?;
    let signer_key = client.signer()?;
    mse_attest::signer::mr_signer_from_pem(&signer_key)
        .map_err(|e| Failure::Other(anyhow!("the platform's signer key is not usable: {e}")))?;
    let simulation_ca = client.simulation_ca()?;
    let operator_ca = client.operator_ca()?;

    let profile = Profile {
        url: url.clone(),
        token,
        user: user.name.clone(),
        allow_simulation: args.allow_simulation,
        platform,
        signer_key,
        simulation_ca,
        operator_ca,
    };
    let catalog = crate::catalog::refresh(&client)?;
    let path = profile.save()?;
    outln!("Logged in to {url} as {}", user.name)?;
    outln!(
        "  apps are served at {} ({} quotes)",
        profile.app_url(&format!("<uuid>.{}", profile.platform.base_domain)),
        profile.platform.quote_provider
    )?;
    outln!(
        "  profile saved to {} (readable by you only)",
        path.display()
    )?;
    outln!(
        "  image catalog: {} approved image{} (digest {})",
        catalog.catalog.images.len(),
        if catalog.catalog.images.len() == 1 {
            ""
        } else {
            "s"
        },
        &catalog.digest[..catalog.digest.len().min(16)]
    )?;
    if args.allow_simulation {
        eprintln!(
            "{} simulation accepted: apps of this platform may run in the simulation TEE, with no \
             hardware protection (their host can read their code and secrets)",
            render::warning_prefix()
        );
    } else if profile.platform.quote_provider == "simulation" {
        eprintln!(
            "{} this platform runs apps in the simulation TEE; `mse deploy` refuses to deploy to \
             it unless you log in again with --allow-simulation (or deploy with --allow-simulation)",
            render::warning_prefix()
        );
    }
    Ok(())
}

/// Runs `mse logout`.
pub fn logout(_args: LogoutArgs) -> CmdResult {
    let path = profile::path();
    match std::fs::remove_file(&path) {
        Ok(()) => {
            outln!("Logged out: removed {}", path.display())?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            outln!("Not logged in: nothing to do")?;
            Ok(())
        }
        Err(e) => Err(Failure::Other(anyhow!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}
