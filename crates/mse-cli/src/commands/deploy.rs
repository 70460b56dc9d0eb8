//! `mse deploy`: the owner's whole deployment: check, package, upload,
//! verify the node, hand it the key and secrets, wait until it serves, save
//! the context. The node's side of it is in docs/run.md ("Life of a node").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use chrono::{DateTime, Utc};
use mse_api::apps::{App, AppStatus, DeployConfig, DeploySsl, ListQuery};
use mse_api::text::{one_line, strip_controls};
use mse_attest::fingerprint::{fingerprint, AppIdentity, FingerprintInput, Runtime, TlsOrigin};
use mse_attest::verify::{verify_certificate, Policy, Tee};
use mse_config::AppConfig;
use mse_package::context::{CertificateOrigin, Context, ContextConfig, ContextInstance};
use mse_package::{CodeKey, Nonces};
use serde::Serialize;

use crate::api::Client;
use crate::commands::apps::kept_domain_note;
use crate::commands::{confirm, load_valid_config, verify};
use crate::conf::conf_dir;
use crate::exit::{CmdResult, Failure};
use crate::poll::{wait_for_status, Pace, WaitError};
use crate::profile::Profile;
use crate::progress::{seconds, Steps};
use crate::{fetch, render};

/// Arguments of `mse deploy`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Steps: check mse.toml, check the project and resource, replace a live \
app of the same name (asked, or -y), encrypt the code, upload it, wait for the node, verify its \
certificate (attestation), send it the code key and secrets over TLS pinned to that certificate, \
wait until the app serves, check the certificate a browser sees against the node's evidence (ACME \
and [ssl] apps whose domain resolves), save the context. With --json, progress goes to stderr and stdout \
carries one JSON object: uuid, name, project, domain_name, config_domain_name, url, resolves \
(whether this machine's resolver knows the URL's name; when it does not, a warning says what to \
do), status, expires_at, certificate_origin, fingerprint, verified, tee, sandbox (how the node \
confines the app), certificate (issuer, not_after and error of the certificate the node serves, \
ACME and [ssl] apps), browser_verified, cert_path, context_path, timings."
)]
pub struct Args {
    /// The configuration file [default: ./mse.toml]
    #[arg(long, value_name = "FILE")]
    path: Option<PathBuf>,
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
    /// Accept a node in the simulation TEE (no hardware protection) for this deployment
    #[arg(long)]
    allow_simulation: bool,
    /// How long to wait for the app to start, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    timeout: u64,
    /// Print one JSON object on stdout at the end (progress goes to stderr)
    #[arg(long)]
    json: bool,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct JsonOutput {
    uuid: String,
    name: String,
    project: String,
    domain_name: String,
    config_domain_name: String,
    url: String,
    /// Whether the system's resolver knows the URL's name (what other
    /// clients than `mse` need).
    resolves: bool,
    status: AppStatus,
    expires_at: DateTime<Utc>,
    certificate_origin: CertificateOrigin,
    fingerprint: String,
    verified: bool,
    tee: Option<Tee>,
    sandbox: Option<String>,
    /// The certificate the node serves (ACME, owner): issuer, expiry, error.
    certificate: Option<mse_api::event::ServedCertificate>,
    /// Whether the certificate a browser sees was verified against the
    /// node's evidence (ACME and owner apps whose domain resolves).
    browser_verified: Option<bool>,
    cert_path: Option<PathBuf>,
    context_path: PathBuf,
    timings: serde_json::Map<String, serde_json::Value>,
}

/// What the user must know if the deployment stops half way: the app it
/// created on the platform, if any, and whether that app can still run.
#[derive(Clone, Default)]
struct LeftBehind(Arc<Mutex<Option<(String, bool)>>>);

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

fn deploy(args: &Args, steps: &mut Steps, left: &LeftBehind) -> CmdResult {
    let started = Instant::now();
    let profile = Profile::load()?;
    let client = profile.client()?;
    let allow_simulation = profile.allow_simulation || args.allow_simulation;
    // The platform said at login that its nodes are simulated: their
    // verification would fail after the upload, leaving a node behind.
    if profile.platform.quote_provider == "simulation" && !allow_simulation && !args.no_verify {
        return Err(Failure::Invalid(format!(
            "{} runs apps in the simulation TEE (no hardware protection) and this profile does \
             not accept simulation, so nothing was uploaded; log in again with `mse login \
             --allow-simulation`, or pass --allow-simulation to accept it for this deployment",
            profile.url
        )));
    }

    steps.start("config", "Checking mse.toml");
    let config = load_valid_config(args.path.as_deref(), args.untrusted_ssl)?;
    // What was asked; for zero trust the platform says whether the node
    // gets an ACME certificate (it has an ACME CA) or keeps its RA-TLS one.
    let asked = if args.untrusted_ssl {
        CertificateOrigin::Operator
    } else if config.ssl.is_some() {
        CertificateOrigin::Owner
    } else {
        CertificateOrigin::SelfSigned
    };
    let catalog = crate::catalog::refresh(&client)?;
    let runtime_spec_digest = catalog
        .catalog
        .find(&config.code.docker)
        .map_err(|e| Failure::Invalid(format!("docker: {e} ({})", catalog.origin)))?
        .digest();
    let secrets = read_secrets(&config)?;
    let (ssl, ssl_key) = read_ssl(&config)?;
    steps.done(&format!(
        "app `{}`, project `{}`, {} certificate",
        config.name,
        config.project,
        origin_words(asked)
    ));

    steps.start("project", "Checking the project and the resource");
    if !client.project_exists(&config.project)? {
        return Err(Failure::Invalid(format!(
            "project `{}` does not exist on {}; use an existing project (`default` always \
             exists) or create it first",
            config.project, profile.url
        )));
    }
    let resource = client.resource(&config.resource)?.ok_or_else(|| {
        Failure::Invalid(format!(
            "resource `{}` is not available to you; use `free` or ask the operator to \
                 grant it",
            config.resource
        ))
    })?;
    steps.done(&format!(
        "`{}`: {} MB, {} core{}, enclave {}",
        resource.name,
        resource.memory_mb,
        resource.cores,
        if resource.cores == 1 { "" } else { "s" },
        resource.enclave_size
    ));

    steps.start("same_name", "Looking for a live app of the same name");
    let live: Vec<App> = client
        .apps(&ListQuery {
            project: Some(config.project.clone()),
            name: Some(config.name.clone()),
            ..ListQuery::default()
        })?
        .into_iter()
        .filter(|app| !app.is_final())
        .collect();
    if live.is_empty() {
        steps.done("none");
    } else {
        let ids: Vec<&str> = live.iter().map(|a| a.id.as_str()).collect();
        let live_text = format!(
            "an app named `{}` is live in project `{}` ({})",
            config.name,
            config.project,
            ids.join(", ")
        );
        let replace = steps.suspend(|| {
            confirm(args.yes, &live_question(&live_text), None, || {
                format!("{live_text}; pass -y to replace it (there is no terminal to ask on)")
            })
        })?;
        if !replace {
            return Err(Failure::Invalid(format!(
                "deployment cancelled: `{}` keeps running",
                config.name
            )));
        }
        for app in &live {
            steps.update(&format!("Stopping the previous app {}", app.id));
            stop_and_wait(&client, &app.id, steps)?;
            let _ = mse_package::context::ContextStore::new(&conf_dir()).remove(&app.id);
        }
        steps.done(&format!("stopped {}", ids.join(", ")));
    }

    steps.start("package", "Encrypting the code");
    let work = tempfile::tempdir().context("cannot create a temporary folder")?;
    let tar_path = work.path().join(mse_package::context::CODE_FILE);
    let key = CodeKey::generate();
    let file = std::fs::File::create(&tar_path)
        .with_context(|| format!("cannot create {}", tar_path.display()))?;
    let packed = mse_package::pack(
        &config.code.location,
        &key,
        Nonces::Random,
        std::io::BufWriter::with_capacity(1 << 20, file),
    )
    .map_err(|e| match e {
        mse_package::PackError::Io(..) | mse_package::PackError::Write { .. } => {
            // The message already ends with its source's.
            Failure::Other(anyhow!("{e}"))
        }
        _ => Failure::Invalid(e.to_string()),
    })?;
    steps.done(&format!(
        "{} files, {}, sha256 {}",
        packed.files,
        render::bytes(std::fs::metadata(&tar_path).map(|m| m.len()).unwrap_or(0)),
        &hex::encode(packed.sha256)[..16]
    ));

    steps.start("upload", "Uploading the encrypted code");
    let deploy_config = DeployConfig {
        name: config.name.clone(),
        project: config.project.clone(),
        resource: config.resource.clone(),
        docker: config.code.docker.clone(),
        python_application: config.code.python_application.to_string(),
        healthcheck_endpoint: config.code.healthcheck_endpoint.clone(),
        expiration_date: config.expiration_date,
        ssl: ssl.clone(),
        untrusted_ssl: args.untrusted_ssl,
        no_acme: args.no_acme,
    };
    let created = client
        .deploy(&deploy_config, &tar_path)
        .map_err(|e| match e.status() {
            Some(400 | 404 | 409 | 413 | 422) => {
                Failure::Invalid(format!("the platform refused the app: {e}"))
            }
            _ => Failure::Other(e.into()),
        })?;
    let app = &created.app;
    left.set(app);
    let origin = app.certificate_origin;
    let expected_origin = match asked {
        CertificateOrigin::SelfSigned if args.no_acme => origin == CertificateOrigin::SelfSigned,
        CertificateOrigin::SelfSigned => {
            matches!(
                origin,
                CertificateOrigin::SelfSigned | CertificateOrigin::Acme
            )
        }
        asked => origin == asked,
    };
    if !expected_origin {
        return Err(Failure::Other(anyhow!(
            "the platform set the app up with {} certificate, not {} as asked",
            origin_words(origin),
            origin_words(asked)
        )));
    }
    if app.code_sha256 != hex::encode(packed.sha256) {
        return Err(Failure::Other(anyhow!(
            "the platform stored a different package (sha256 {}) than the one sent",
            app.code_sha256
        )));
    }
    let theirs = &created.runtime_digest;
    if *theirs != runtime_spec_digest {
        return Err(Failure::Other(anyhow!(
            "the platform approved `{}` with the environment {theirs}, but {} (digest {}) \
             gives {runtime_spec_digest}: the platform's catalog changed during this deploy; \
             deploy again",
            config.code.docker,
            catalog.origin,
            short(&catalog.digest)
        )));
    }
    steps.done(&format!("app {}", app.id));

    steps.start("node", "Waiting for the node");
    let building = (!created.runtime_ready).then(|| {
        format!(
            "the node is starting; the platform builds the Python environment of {} first \
             (once per image)",
            config.code.docker
        )
    });
    let app = wait_for(
        &client,
        &app.id,
        &[AppStatus::Initializing, AppStatus::Running],
        args.timeout,
        steps,
        building.as_deref(),
        Some(left),
    )?;
    let waiting = format!(
        "{} is waiting for its configuration",
        app.config_domain_name
    );
    match app
        .sandbox
        .as_deref()
        .filter(|s| s.starts_with("UNSANDBOXED"))
    {
        Some(unsandboxed) => steps.warn(&format!(
            "{waiting}; the platform runs this app without a sandbox ({}): other \
             tenants' apps on its node host may reach its files",
            one_line(unsandboxed)
        )),
        None => steps.done(&waiting),
    }

    let expires_at = DateTime::from_timestamp(app.expires_at, 0)
        .ok_or_else(|| anyhow!("the platform gave an invalid expiry {}", app.expires_at))?;
    let owner_der = match (origin, &ssl) {
        (CertificateOrigin::Owner, Some(ssl)) => Some(
            mse_attest::ratls::pem_to_der(ssl.certificate.as_bytes())
                .map_err(|e| Failure::Invalid(format!("ssl.certificate: {e}")))?,
        ),
        _ => None,
    };
    let tls = match (origin, &owner_der) {
        (_, Some(leaf_der)) => TlsOrigin::Owner { leaf_der },
        (CertificateOrigin::Operator, _) => TlsOrigin::Operator,
        (CertificateOrigin::Acme, _) => TlsOrigin::Acme,
        _ => TlsOrigin::SelfSigned,
    };
    let expected = fingerprint(&FingerprintInput::new(
        Runtime {
            image: &config.code.docker,
            spec_digest: &runtime_spec_digest,
            enclave_size: &app.enclave_size,
        },
        AppIdentity {
            uuid: &app.id,
            domain: &app.domain_name,
            python_application: &config.code.python_application.to_string(),
        },
        tls,
        expires_at,
        packed.sha256,
    ));

    let port = profile.platform.proxy_port;
    let config_host = app.config_domain_name.clone();
    let cert_der = fetch::server_certificate(&config_host, port, &[])?;
    let (verified, tee) = if args.no_verify {
        steps.start("verify", "Verifying the node");
        steps.warn("SKIPPED (--no-verify): the code key and secrets go to a node nobody checked");
        (false, None)
    } else {
        steps.start("verify", "Verifying the node (remote attestation)");
        let policy = policy(&profile, expected, allow_simulation)?;
        let now = Utc::now();
        let collateral = verify::collateral_for(&cert_der, None, None, now)?;
        let verification = verify_certificate(
            &cert_der,
            &policy,
            collateral.as_ref().map_err(String::as_str),
            now,
        );
        if !verification.verified {
            let failed = verification.failures();
            let mut message = format!(
                "the node failed verification, so it was sent nothing:\n  {}",
                failed.join("\n  ")
            );
            let enclave_failed = verification
                .checks
                .iter()
                .any(|c| c.name == "mr_enclave" && c.status == mse_attest::verify::Status::Failed);
            if enclave_failed {
                message.push_str(&format!(
                    "\n  this client computed MRENCLAVE with the environment of `{}` in {} \
                     (catalog digest {}, spec digest {}); the platform approved the app with \
                     spec digest {}",
                    config.code.docker,
                    catalog.origin,
                    short(&catalog.digest),
                    short(&runtime_spec_digest),
                    short(&created.runtime_digest)
                ));
            }
            let simulated = mse_attest::ratls::inspect(&cert_der)
                .ok()
                .and_then(|i| mse_attest::quote::Quote::parse(&i.quote_bytes).ok())
                .is_some_and(|q| mse_attest::simulation::looks_simulated(&q));
            if simulated && !allow_simulation {
                message.push_str(
                    "\n  the node runs in the simulation TEE (no hardware protection); accept it \
                     with --allow-simulation if that is what you want",
                );
            }
            // A node left waiting would keep the name taken until its
            // configuration deadline.
            steps.update(&format!("Stopping the node of {}", app.id));
            match stop_and_wait(&client, &app.id, steps) {
                Ok(_) => {
                    left.ended();
                    message.push_str("\n  the node was stopped");
                }
                Err(e) => message.push_str(&format!("\n  the node could not be stopped: {e}")),
            }
            return Err(Failure::Other(anyhow!(message)));
        }
        match verification.tee {
            Some(Tee::Simulation) => steps.warn(&format!(
                "SIMULATION accepted, no hardware protection; MRENCLAVE {} matches the code",
                short(&hex::encode(expected))
            )),
            _ => steps.done(&format!(
                "genuine SGX enclave, MRENCLAVE {} matches the code",
                short(&hex::encode(expected))
            )),
        }
        (true, verification.tee)
    };

    steps.start(
        "configure",
        "Sending the code key and secrets to the verified node",
    );
    send_configuration(
        &config_host,
        port,
        &cert_der,
        &app.id,
        &key,
        ssl_key,
        secrets,
    )?;
    steps.done("accepted");

    steps.start("running", "Waiting for the app to start");
    let app = wait_for(
        &client,
        &app.id,
        &[AppStatus::Running],
        args.timeout,
        steps,
        None,
        Some(left),
    )?;
    steps.done(&format!(
        "health check {} answers",
        app.healthcheck_endpoint
    ));

    // The certificate a browser sees, checked against the node's evidence.
    let (resolves, advice) = profile.reachability(&app.domain_name, &app.config_domain_name);
    let browser = match origin {
        CertificateOrigin::Acme | CertificateOrigin::Owner if !args.no_verify && resolves => {
            Some(verify_served(
                &app,
                origin,
                port,
                expected,
                allow_simulation,
                &profile,
                steps,
            )?)
        }
        _ => None,
    };

    steps.start("context", "Saving the context");
    let context = Context {
        version: mse_package::context::CONTEXT_VERSION.into(),
        config: ContextConfig {
            name: config.name.clone(),
            project: config.project.clone(),
            python_application: config.code.python_application.to_string(),
            docker: config.code.docker.clone(),
            code_secret_key: key.to_hex(),
            ssl_app_certificate: ssl.as_ref().map(|s| s.certificate.clone()),
        },
        instance: ContextInstance {
            id: app.id.clone(),
            config_domain_name: app.config_domain_name.clone(),
            domain_name: Some(app.domain_name.clone()),
            runtime_spec_digest: Some(runtime_spec_digest),
            enclave_size: app.enclave_size.clone(),
            expires_at,
            ssl_certificate_origin: origin,
            nonces: mse_package::context::nonces_to_hex(&packed.nonces),
        },
    };
    let store = mse_package::context::ContextStore::new(&conf_dir());
    let context_dir = store
        .save(&context, &tar_path)
        .map_err(|e| Failure::Other(anyhow!("cannot save the context: {e}")))?;
    let cert_path = match origin {
        CertificateOrigin::SelfSigned => Some(("cert.pem", verify::pem_encode(&cert_der))),
        CertificateOrigin::Operator => Some(("operator-ca.pem", profile.operator_ca.clone())),
        // Served with a certificate of a CA the user's tools know, or the
        // RA-TLS certificate still (the ACME CA failed).
        CertificateOrigin::Acme if browser.as_ref().is_some_and(Browser::issued) => None,
        CertificateOrigin::Acme => Some(("cert.pem", verify::pem_encode(&cert_der))),
        CertificateOrigin::Owner => None,
    }
    .map(|(name, pem)| -> Result<PathBuf, Failure> {
        let path = context_dir.join(name);
        std::fs::write(&path, pem).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    })
    .transpose()?;
    steps.done(&context_dir.display().to_string());
    left.clear();

    let url = profile.app_url(&app.domain_name);
    if let Some(advice) = &advice {
        eprint!("{} {advice}", render::warning_prefix());
    }
    if args.json {
        let mut timings = serde_json::Map::new();
        for (key, elapsed) in steps.timings() {
            timings.insert(key.clone(), serde_json::json!(elapsed.as_secs_f64()));
        }
        timings.insert(
            "total".into(),
            serde_json::json!(started.elapsed().as_secs_f64()),
        );
        let output = JsonOutput {
            uuid: app.id.clone(),
            name: app.name.clone(),
            project: app.project.clone(),
            domain_name: app.domain_name.clone(),
            config_domain_name: app.config_domain_name.clone(),
            url,
            resolves,
            status: app.status,
            expires_at,
            certificate_origin: origin,
            fingerprint: hex::encode(expected),
            verified,
            tee,
            sandbox: app.sandbox.clone(),
            certificate: app.certificate.clone(),
            browser_verified: browser.as_ref().map(Browser::issued),
            cert_path,
            context_path: context_dir,
            timings,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&output).context("cannot encode the output")?
        );
        return Ok(());
    }
    println!(
        "Deployed `{}` in {}: {} is running",
        app.name,
        seconds(started.elapsed()),
        app.id
    );
    println!("  URL          {url}");
    if let Some(note) = kept_domain_note(&app) {
        println!("               ({note})");
    }
    println!(
        "  expires      {} ({})",
        mse_config::datetime::display_utc(&expires_at),
        remaining(expires_at, Utc::now())
    );
    println!("  fingerprint  {}", hex::encode(expected));
    match (verified, tee) {
        (true, Some(Tee::Simulation)) => println!(
            "  TEE          SIMULATION — no hardware protection (accepted for this platform)"
        ),
        (true, _) => println!("  TEE          SGX, verified"),
        (false, _) => println!("  TEE          NOT VERIFIED (--no-verify)"),
    }
    if let Some(sandbox) = &app.sandbox {
        println!("  sandbox      {}", one_line(sandbox));
    }
    if let Some(certificate) = &app.certificate {
        println!(
            "  certificate  {}, until {}",
            one_line(&certificate.issuer),
            one_line(&certificate.not_after)
        );
        if let Some(error) = &certificate.error {
            println!(
                "               {} {}",
                render::warning_prefix(),
                one_line(error)
            );
        }
    }
    if let Some(browser) = &browser {
        if let Some(evidence_url) = &browser.evidence_url {
            println!(
                "  browser      {url} (its certificate's key is the attested node's, verified \
                 against {evidence_url})"
            );
        }
    }
    println!("  context      {}", context_dir.display());
    println!(
        "Let app users verify it: `mse context --export {}` gives them the context, to use with \
         the plaintext code and `mse verify`.",
        app.id
    );
    let health = format!("{url}{}", app.healthcheck_endpoint);
    match &cert_path {
        Some(path) => println!("Try it: curl --cacert {} {health}", path.display()),
        None => println!("Try it: curl {health}"),
    }
    Ok(())
}

/// "An app named … is live …\nWould you like to replace it?"
fn live_question(live: &str) -> String {
    let mut first = live.chars();
    let capitalised: String = first
        .next()
        .map(|c| c.to_uppercase().chain(first).collect())
        .unwrap_or_default();
    format!("{capitalised}\nWould you like to replace it?")
}

fn origin_words(origin: CertificateOrigin) -> &'static str {
    match origin {
        CertificateOrigin::SelfSigned => "the node's RA-TLS",
        CertificateOrigin::Owner => "your own",
        CertificateOrigin::Operator => "the platform's",
        CertificateOrigin::Acme => "a browser-trusted (ACME)",
    }
}

/// What deploy expects of its node: the platform's MRSIGNER, the
/// fingerprint it computed, simulation as the profile or flag allows.
fn policy(
    profile: &Profile,
    expected: [u8; 32],
    allow_simulation: bool,
) -> Result<Policy, Failure> {
    Ok(Policy {
        mr_signer: Some(profile.mr_signer()?),
        mr_enclave: Some(expected),
        accepted_tcb: Vec::new(),
        allow_simulation,
        simulation_ca: Some(profile.simulation_ca_der()?),
        simulation_revoked: if allow_simulation {
            Some(profile.simulation_revoked()?)
        } else {
            None
        },
    })
}

/// What deploy checked of the certificate a browser sees: where the
/// evidence that verified it was read, or `None` when the node still
/// serves its RA-TLS certificate (the CA issued none).
struct Browser {
    evidence_url: Option<String>,
}

impl Browser {
    /// The certificate is one the CA issued, verified against the evidence.
    fn issued(&self) -> bool {
        self.evidence_url.is_some()
    }
}

/// Checks the certificate `app`'s domain serves against its node's
/// evidence, as `mse verify DOMAIN` would.
fn verify_served(
    app: &App,
    origin: CertificateOrigin,
    port: u16,
    expected: [u8; 32],
    allow_simulation: bool,
    profile: &Profile,
    steps: &mut Steps,
) -> Result<Browser, Failure> {
    steps.start("browser", "Verifying the certificate a browser sees");
    let served = fetch::server_certificate(&app.domain_name, port, &[])?;
    let policy = policy(profile, expected, allow_simulation)?;
    let now = Utc::now();
    if origin == CertificateOrigin::Acme && mse_attest::ratls::inspect(&served).is_ok() {
        // The ACME CA failed: the node still serves its RA-TLS certificate,
        // verified before the configuration was sent.
        let why = app
            .certificate
            .as_ref()
            .and_then(|c| c.error.clone())
            .unwrap_or_else(|| "no certificate yet".into());
        steps.warn(&format!(
            "the node serves its RA-TLS certificate: the ACME CA gave none ({why})"
        ));
        return Ok(Browser { evidence_url: None });
    }
    let (verification, evidence_url) = verify::verify_with_evidence(
        &app.domain_name,
        port,
        &[],
        &served,
        &policy,
        verify::Collateral::default(),
        now,
    )?;
    if !verification.verified {
        let failed = verification.failures();
        return Err(Failure::Other(anyhow!(
            "the certificate {} serves is not the attested node's:\n  {}",
            app.domain_name,
            failed.join("\n  ")
        )));
    }
    let issuer = mse_attest::ratls::issuer(&served).unwrap_or_default();
    steps.done(&format!(
        "issued by {issuer}, its key bound by the node's quote"
    ));
    Ok(Browser {
        evidence_url: Some(evidence_url),
    })
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(16)]
}

/// "in 3h 59m", "in 12m", "expired".
pub fn remaining(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let minutes = (at - now).num_minutes();
    if at <= now {
        "expired".to_string()
    } else if minutes >= 24 * 60 {
        format!("in {}d {}h", minutes / (24 * 60), minutes % (24 * 60) / 60)
    } else if minutes >= 60 {
        format!("in {}h {}m", minutes / 60, minutes % 60)
    } else {
        format!("in {}m", minutes.max(1))
    }
}

/// The app's secrets, a JSON object, when `code.secrets` is set.
fn read_secrets(config: &AppConfig) -> Result<Option<serde_json::Value>, Failure> {
    let Some(path) = &config.code.secrets else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::Invalid(format!("cannot read the secrets {}: {e}", path.display()))
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Failure::Invalid(format!("{} is not JSON: {e}", path.display())))?;
    if !value.is_object() {
        return Err(Failure::Invalid(format!(
            "{} must hold a JSON object",
            path.display()
        )));
    }
    Ok(Some(value))
}

/// Owner mode: the domain and chain sent to the platform, and the private
/// key kept for the verified node.
fn read_ssl(config: &AppConfig) -> Result<(Option<DeploySsl>, Option<String>), Failure> {
    let Some(ssl) = &config.ssl else {
        return Ok((None, None));
    };
    let read = |path: &Path, what: &str| {
        std::fs::read_to_string(path).map_err(|e| {
            Failure::Invalid(format!("cannot read the {what} {}: {e}", path.display()))
        })
    };
    Ok((
        Some(DeploySsl {
            domain_name: ssl.domain_name.clone(),
            certificate: read(&ssl.certificate, "certificate")?,
        }),
        Some(read(&ssl.private_key, "private key")?),
    ))
}

/// Asks the platform to stop app `id` and waits (at most a minute) until
/// it has.
fn stop_and_wait(client: &Client, id: &str, steps: &mut Steps) -> Result<App, Failure> {
    client.stop(id)?;
    wait_for(
        client,
        id,
        &[AppStatus::Stopped, AppStatus::OnError],
        60,
        steps,
        None,
        None,
    )
}

/// How deploy waits: fast at first (a warm start takes well under a
/// second), then gentler.
const DEPLOY_PACE: Pace = Pace::FastThenSlow {
    fast: Duration::from_millis(25),
    window: Duration::from_secs(5),
    slow: Duration::from_millis(250),
};

/// Polls the app until its status is one of `wanted`; fails at once (with
/// its last logs) when it ends up `on_error` or `stopped` instead, which
/// `left`, if given, then records. `spawning` is what to say while the node
/// starts, when there is more to say than that.
fn wait_for(
    client: &Client,
    id: &str,
    wanted: &[AppStatus],
    timeout_secs: u64,
    steps: &mut Steps,
    spawning: Option<&str>,
    left: Option<&LeftBehind>,
) -> Result<App, Failure> {
    let waited = wait_for_status(
        || client.app(id),
        |status| wanted.contains(&status),
        Duration::from_secs(timeout_secs),
        DEPLOY_PACE,
        |app| {
            steps.update(&match app.status {
                AppStatus::Spawning => spawning.unwrap_or("the node is starting").to_string(),
                status => format!("the app is {status}"),
            })
        },
    );
    let app = match waited {
        Ok(app) => app,
        Err(WaitError::Api(e)) => return Err(e.into()),
        Err(WaitError::TimedOut(app)) => {
            return Err(Failure::Other(anyhow!(
                "the app is still {} after {timeout_secs} s (raise --timeout)",
                app.status
            )))
        }
    };
    if wanted.contains(&app.status) {
        return Ok(app);
    }
    if let Some(left) = left {
        left.ended();
    }
    let logs = strip_controls(&client.logs(id).unwrap_or_default());
    let tail: Vec<&str> = logs.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(Failure::Other(anyhow!(
        "the app is {}{}\nits last log lines:\n  {}",
        app.status,
        app.reason
            .as_deref()
            .map(|r| format!(": {}", one_line(r)))
            .unwrap_or_default(),
        if tail.is_empty() {
            "(none)".to_string()
        } else {
            tail.join("\n  ")
        }
    )))
}

/// `POST /` to the node's configuration server over TLS pinned to the
/// verified certificate.
fn send_configuration(
    host: &str,
    port: u16,
    cert_der: &[u8],
    uuid: &str,
    key: &CodeKey,
    ssl_private_key: Option<String>,
    app_secrets: Option<serde_json::Value>,
) -> CmdResult {
    let tls = mse_attest::pin::client_config(cert_der, mse_attest::tls::HTTP1);
    let addrs: Vec<SocketAddr> = fetch::resolve(host, port)?;
    let http = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve_to_addrs(host, &addrs)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot set up the TLS client")?;
    let request = mse_api::config::ConfigRequest {
        uuid: uuid.to_string(),
        code_secret_key: key.to_hex(),
        ssl_private_key,
        app_secrets,
    };
    let url = format!("https://{host}:{port}/");
    let response = http
        .post(&url)
        .json(&request)
        .send()
        .map_err(|e| anyhow!("cannot reach the node's configuration server at {url}: {e}"))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let answer: Option<mse_api::config::ConfigAnswer> = response.json().ok();
    let why = answer
        .and_then(|a| a.error)
        .unwrap_or_else(|| format!("HTTP {status}"));
    Err(Failure::Other(anyhow!(
        "the node refused its configuration ({status}): {why}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_time_reads_naturally() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let at = |secs: i64| DateTime::from_timestamp(1_000_000 + secs, 0).unwrap();
        assert_eq!(remaining(at(4 * 3600), now), "in 4h 0m");
        assert_eq!(remaining(at(3600 * 3 + 59 * 60 + 30), now), "in 3h 59m");
        assert_eq!(remaining(at(30), now), "in 1m");
        assert_eq!(remaining(at(-5), now), "expired");
        assert_eq!(remaining(at(50 * 3600), now), "in 2d 2h");
    }

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
