//! The steps of `mse deploy`, in the order it takes them. Each starts and
//! ends its line of progress and hands the next what it found.

use std::path::PathBuf;

use anyhow::{anyhow, Context as _};
use chrono::{DateTime, Utc};
use mse_api::apps::{App, AppStatus, Created, ListQuery};
use mse_api::text::one_line;
use mse_attest::fingerprint::{fingerprint, AppIdentity, FingerprintInput, Runtime, TlsOrigin};
use mse_attest::verify::Tee;
use mse_config::AppConfig;
use mse_package::context::{CertificateOrigin, Context, ContextConfig, ContextInstance};
use mse_package::{CodeKey, Nonces, Packed};

use super::node::{
    send_configuration, short, stop_and_wait, verify_ratls, verify_served, wait_for, Browser,
};
use super::plan::{origin_words, Plan};
use super::LeftBehind;
use crate::api::Client;
use crate::commands::confirm;
use crate::conf::conf_dir;
use crate::exit::Failure;
use crate::profile::Profile;
use crate::progress::Steps;
use crate::{fetch, render};

/// What every step works with.
pub struct Deployment<'a> {
    /// The platform's API.
    pub client: &'a Client,
    /// The login profile.
    pub profile: &'a Profile,
    /// What was resolved before any step.
    pub plan: &'a Plan,
    /// The app left on the platform if a step fails.
    pub left: &'a LeftBehind,
    /// The roots, runtime references and TCB minimum hardware nodes are
    /// checked against.
    pub hardware: crate::commands::verify::HardwarePolicy,
    /// Where the collateral of SGX and TDX quotes comes from.
    pub pccs_url: Option<String>,
}

/// The runtime environment of the app's image, as this client computes it.
pub struct RuntimeEnv {
    /// The platform's catalog, as last fetched.
    pub catalog: crate::catalog::Current,
    /// The spec digest of the image's environment (part of the fingerprint).
    pub spec_digest: String,
}

/// The encrypted code, with its key.
pub struct Package {
    /// The folder holding the tarball until the context is saved.
    _work: tempfile::TempDir,
    /// The encrypted tarball.
    pub tar_path: PathBuf,
    /// The code key, sent only to the verified node.
    pub key: CodeKey,
    /// The tarball's digest and nonces.
    pub packed: Packed,
}

/// The fingerprint the node must prove, and what it was computed from.
pub struct Expected {
    /// MRENCLAVE.
    pub fingerprint: [u8; 32],
    /// The app's expiry, part of the fingerprint.
    pub expires_at: DateTime<Utc>,
    /// The certificate origin the platform set the app up with.
    pub origin: CertificateOrigin,
    /// The spec digest of the image's environment it was computed with.
    pub spec_digest: String,
}

/// The node's certificate and what its verification found.
pub struct NodeCheck {
    /// The node's RA-TLS certificate (DER).
    pub cert_der: Vec<u8>,
    /// Whether it was verified (not with `--no-verify`).
    pub verified: bool,
    /// Which TEE the quote came from, when verified.
    pub tee: Option<Tee>,
    /// It verified under test roots (`--test-roots`): emulated hardware.
    pub emulated: bool,
}

/// Where the app is reached, and the certificate a browser sees there.
pub struct Served {
    /// Whether the system's resolver knows the URL's name.
    pub resolves: bool,
    /// What to do when it does not.
    pub advice: Option<String>,
    /// What was checked of the certificate a browser sees (ACME and owner
    /// apps whose domain resolves).
    pub browser: Option<Browser>,
}

/// Where the context was saved.
pub struct Saved {
    /// The context's folder.
    pub context_dir: PathBuf,
    /// The certificate to give clients (`curl --cacert`), if they need one.
    pub cert_path: Option<PathBuf>,
}

/// Part of the "config" step: the spec digest of the image's environment
/// in the platform's catalog.
pub fn runtime(client: &Client, config: &AppConfig) -> Result<RuntimeEnv, Failure> {
    let catalog = crate::catalog::refresh(client)?;
    let spec_digest = catalog
        .catalog
        .find(&config.code.docker)
        .map_err(|e| Failure::Invalid(format!("docker: {e} ({})", catalog.origin)))?
        .digest();
    Ok(RuntimeEnv {
        catalog,
        spec_digest,
    })
}

/// Ends the "config" step.
pub fn config_checked(plan: &Plan, steps: &mut Steps) {
    steps.done(&format!(
        "app `{}`, project `{}`, {} certificate",
        plan.config.name,
        plan.config.project,
        origin_words(plan.asked)
    ));
}

/// "project": the project exists and the resource is available.
pub fn check_project_and_resource(ctx: &Deployment<'_>, steps: &mut Steps) -> Result<(), Failure> {
    let config = &ctx.plan.config;
    steps.start("project", "Checking the project and the resource");
    if !ctx.client.project_exists(&config.project)? {
        return Err(Failure::Invalid(format!(
            "project `{}` does not exist on {}; use an existing project (`default` always \
             exists) or create it first",
            config.project, ctx.profile.url
        )));
    }
    let resource = ctx.client.resource(&config.resource)?.ok_or_else(|| {
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
    Ok(())
}

/// "same_name": a live app of the same name is stopped, if the user agrees.
pub fn replace_live_app(ctx: &Deployment<'_>, steps: &mut Steps) -> Result<(), Failure> {
    let config = &ctx.plan.config;
    steps.start("same_name", "Looking for a live app of the same name");
    let live: Vec<App> = ctx
        .client
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
        return Ok(());
    }
    let ids: Vec<&str> = live.iter().map(|a| a.id.as_str()).collect();
    let live_text = format!(
        "an app named `{}` is live in project `{}` ({})",
        config.name,
        config.project,
        ids.join(", ")
    );
    let replace = steps.suspend(|| {
        confirm(ctx.plan.flags.yes, &live_question(&live_text), None, || {
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
        stop_and_wait(ctx.client, &app.id, steps)?;
        let _ = mse_package::context::ContextStore::new(&conf_dir()).remove(&app.id);
    }
    steps.done(&format!("stopped {}", ids.join(", ")));
    Ok(())
}

/// "package": the code folder encrypted with a new key.
pub fn encrypt(ctx: &Deployment<'_>, steps: &mut Steps) -> Result<Package, Failure> {
    steps.start("package", "Encrypting the code");
    let work = tempfile::tempdir().context("cannot create a temporary folder")?;
    let tar_path = work.path().join(mse_package::context::CODE_FILE);
    let key = CodeKey::generate();
    let file = std::fs::File::create(&tar_path)
        .with_context(|| format!("cannot create {}", tar_path.display()))?;
    let packed = mse_package::pack(
        &ctx.plan.config.code.location,
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
    Ok(Package {
        _work: work,
        tar_path,
        key,
        packed,
    })
}

/// "upload": the platform creates the app, as asked, with the package sent
/// and the environment this client computed.
pub fn upload(
    ctx: &Deployment<'_>,
    runtime: &RuntimeEnv,
    package: &Package,
    steps: &mut Steps,
) -> Result<Created, Failure> {
    let plan = ctx.plan;
    steps.start("upload", "Uploading the encrypted code");
    let created = ctx
        .client
        .deploy(&plan.deploy_config(), &package.tar_path)
        .map_err(|e| match e.status() {
            Some(400 | 404 | 409 | 413 | 422) => {
                Failure::Invalid(format!("the platform refused the app: {e}"))
            }
            _ => Failure::Other(e.into()),
        })?;
    let app = &created.app;
    ctx.left.set(app);
    let origin = app.certificate_origin;
    if !plan.accepts_origin(origin) {
        return Err(Failure::Other(anyhow!(
            "the platform set the app up with {} certificate, not {} as asked",
            origin_words(origin),
            origin_words(plan.asked)
        )));
    }
    if app.code_sha256 != hex::encode(package.packed.sha256) {
        return Err(Failure::Other(anyhow!(
            "the platform stored a different package (sha256 {}) than the one sent",
            app.code_sha256
        )));
    }
    let theirs = &created.runtime_digest;
    if *theirs != runtime.spec_digest {
        return Err(Failure::Other(anyhow!(
            "the platform approved `{}` with the environment {theirs}, but {} (digest {}) \
             gives {}: the platform's catalog changed during this deploy; deploy again",
            plan.config.code.docker,
            runtime.catalog.origin,
            short(&runtime.catalog.digest),
            runtime.spec_digest
        )));
    }
    steps.done(&format!("app {}", app.id));
    Ok(created)
}

/// The app once its node waits for its configuration.
pub struct Waiting {
    /// The app as the platform then shows it.
    pub app: App,
}

/// "node": the node starts and waits for its configuration.
pub fn wait_for_node(
    ctx: &Deployment<'_>,
    created: &Created,
    steps: &mut Steps,
) -> Result<Waiting, Failure> {
    steps.start("node", "Waiting for the node");
    let building = (!created.runtime_ready).then(|| {
        format!(
            "the node is starting; the platform builds the Python environment of {} first \
             (once per image)",
            ctx.plan.config.code.docker
        )
    });
    let app = wait_for(
        ctx.client,
        &created.app.id,
        &[AppStatus::Initializing, AppStatus::Running],
        ctx.plan.flags.timeout,
        steps,
        building.as_deref(),
        Some(ctx.left),
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
    Ok(Waiting { app })
}

/// The fingerprint the node must prove: this client's own computation from
/// the image, the app's identity, its certificate origin and expiry, and
/// the package.
pub fn expected_fingerprint(
    ctx: &Deployment<'_>,
    runtime: &RuntimeEnv,
    package: &Package,
    created: &Created,
    waiting: &Waiting,
) -> Result<Expected, Failure> {
    let app = &waiting.app;
    let config = &ctx.plan.config;
    let origin = created.app.certificate_origin;
    let expires_at = app.expires_at;
    let owner_der = match (origin, &ctx.plan.files.ssl) {
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
    let fingerprint = fingerprint(&FingerprintInput::new(
        Runtime {
            image: &config.code.docker,
            spec_digest: &runtime.spec_digest,
            enclave_size: &app.enclave_size,
        },
        AppIdentity {
            uuid: &app.id,
            domain: &app.domain_name,
            python_application: &config.code.python_application.to_string(),
        },
        tls,
        expires_at,
        package.packed.sha256,
    ));
    Ok(Expected {
        fingerprint,
        expires_at,
        origin,
        spec_digest: runtime.spec_digest.clone(),
    })
}

/// "verify": the node's certificate proves the expected fingerprint (unless
/// `--no-verify`); a node that fails is stopped and sent nothing.
pub fn verify_node(
    ctx: &Deployment<'_>,
    runtime: &RuntimeEnv,
    created: &Created,
    app: &App,
    expected: &Expected,
    steps: &mut Steps,
) -> Result<NodeCheck, Failure> {
    let plan = ctx.plan;
    let port = ctx.profile.platform.proxy_port;
    let cert_der = fetch::server_certificate(&app.config_domain_name, port, &[])?;
    if !plan.flags.verify {
        steps.start("verify", "Verifying the node");
        steps.warn("SKIPPED (--no-verify): the code key and secrets go to a node nobody checked");
        return Ok(NodeCheck {
            cert_der,
            verified: false,
            tee: None,
            emulated: false,
        });
    }
    steps.start("verify", "Verifying the node (remote attestation)");
    let allow_simulation = plan.flags.allow_simulation;
    let verification = verify_ratls(ctx, &cert_der, expected.fingerprint)?;
    if !verification.verified {
        let failed = verification.failures();
        let mut message = format!(
            "the node failed verification, so it was sent nothing:\n  {}",
            failed.join("\n  ")
        );
        let enclave_failed = verification.checks.iter().any(|c| {
            matches!(c.name, "mr_enclave" | "fingerprint")
                && c.status == mse_attest::verify::Status::Failed
        });
        if enclave_failed {
            message.push_str(&format!(
                "\n  this client computed MRENCLAVE with the environment of `{}` in {} \
                 (catalog digest {}, spec digest {}); the platform approved the app with \
                 spec digest {}",
                plan.config.code.docker,
                runtime.catalog.origin,
                short(&runtime.catalog.digest),
                short(&runtime.spec_digest),
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
        match stop_and_wait(ctx.client, &app.id, steps) {
            Ok(_) => {
                ctx.left.ended();
                message.push_str("\n  the node was stopped");
            }
            Err(e) => message.push_str(&format!("\n  the node could not be stopped: {e}")),
        }
        return Err(Failure::Other(anyhow!(message)));
    }
    let mr_enclave = hex::encode(expected.fingerprint);
    match verification.tee {
        Some(Tee::Simulation) => steps.warn(&format!(
            "SIMULATION accepted, no hardware protection; MRENCLAVE {} matches the code",
            short(&mr_enclave)
        )),
        Some(Tee::Tdx | Tee::SevSnp) => {
            let what = if verification.tee == Some(Tee::Tdx) {
                "Intel TDX trust domain"
            } else {
                "AMD SEV-SNP confidential VM"
            };
            let runtime = verification
                .checks
                .iter()
                .find(|c| c.name == "runtime_measurements")
                .map(|c| c.detail.clone())
                .unwrap_or_default();
            let message = format!(
                "genuine {what} ({runtime}); its fingerprint {} matches the code",
                short(&mr_enclave)
            );
            if verification.emulated {
                steps.warn(&format!(
                    "EMULATED (test roots), no hardware protection: {message}"
                ));
            } else {
                steps.done(&message);
            }
        }
        _ => steps.done(&format!(
            "genuine SGX enclave, MRENCLAVE {} matches the code",
            short(&mr_enclave)
        )),
    }
    Ok(NodeCheck {
        cert_der,
        verified: true,
        tee: verification.tee,
        emulated: verification.emulated,
    })
}

/// "configure": the code key, the owner's private key and the secrets go
/// to the node over TLS pinned to its verified certificate.
pub fn configure(
    ctx: &Deployment<'_>,
    package: &Package,
    app: &App,
    node: &NodeCheck,
    steps: &mut Steps,
) -> Result<(), Failure> {
    steps.start(
        "configure",
        "Sending the code key and secrets to the verified node",
    );
    let request = mse_api::config::ConfigRequest {
        uuid: app.id.clone(),
        code_secret_key: package.key.to_hex(),
        ssl_private_key: ctx.plan.files.ssl_key.clone(),
        app_secrets: ctx.plan.files.secrets.clone(),
        storage_key: ctx.plan.storage_key.as_ref().map(|k| k.to_string()),
        previous_storage_key: None,
    };
    send_configuration(
        &app.config_domain_name,
        ctx.profile.platform.proxy_port,
        &node.cert_der,
        &request,
    )?;
    steps.done("accepted");
    Ok(())
}

/// What the key service keeps for the app, once it does.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Kept {
    /// The app name it keeps the keys of (`OWNER/PROJECT/NAME`).
    pub app: String,
    /// The version of the policy this deployment signed.
    pub policy_version: u64,
    /// The key service's measurement, verified.
    pub measurement: String,
    /// `mse rotate`: what was renewed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated: Option<Rotated>,
}

/// What `mse rotate` renewed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rotated {
    /// The code, encrypted under a new code key (always).
    pub code_key: bool,
    /// The secrets and the owner's TLS key, from the local files.
    pub secrets: bool,
    /// The storage key: the home's snapshot this version, written by the
    /// new node, is sealed under the new one.
    pub storage_key: bool,
    /// The first snapshot sealed under the new storage key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_version: Option<u64>,
}

/// "keys" (`--keep-running`): the platform's key service, verified like a
/// node, keeps the code key and secrets under a policy the owner's key
/// signs: this deployment's fingerprint, on the TEE its node was verified
/// in.
pub fn keep_keys(
    ctx: &Deployment<'_>,
    package: &Package,
    app: &App,
    expected: &Expected,
    node: &NodeCheck,
    steps: &mut Steps,
) -> Result<Option<Kept>, Failure> {
    if !ctx.plan.flags.keep_running {
        return Ok(None);
    }
    let configures = ctx.plan.service_configures();
    steps.start(
        "keys",
        if ctx.plan.flags.keep_secrets {
            "Handing the new code key to the platform's key service, which configures the node \
             with the secrets it keeps"
        } else if configures {
            "Handing the keys to the platform's key service, which configures the node with the \
             storage key it keeps"
        } else {
            "Handing the keys to the platform's key service"
        },
    );
    let info = ctx.client.key_service()?;
    let Some(measurement) = info.measurement.clone().filter(|_| info.running) else {
        return Err(Failure::Other(anyhow::anyhow!(if configures {
            "the platform's key service does not run now, so it was sent nothing and the node \
             was not configured; try again once `mse keys` says it runs"
        } else {
            "the platform's key service does not run now, so it was sent nothing; the app runs, \
             but it ends with its node"
        })));
    };
    let mut expected_service = [0u8; 32];
    hex::decode_to_slice(&measurement, &mut expected_service).map_err(|_| {
        Failure::Other(anyhow::anyhow!(
            "the platform publishes a malformed measurement"
        ))
    })?;
    let port = ctx.profile.platform.proxy_port;
    let cert_der = crate::fetch::server_certificate(&info.domain, port, &[])?;
    let verification = verify_ratls(ctx, &cert_der, expected_service)?;
    let now = Utc::now();
    if !verification.verified {
        return Err(Failure::Other(anyhow::anyhow!(
            "the key service failed verification, so it was sent nothing:\n  {}",
            verification.failures().join("\n  ")
        )));
    }
    let tee = node.tee.unwrap_or_default();
    let statuses = match tee {
        Tee::Simulation => vec!["Simulation".to_string()],
        _ => vec!["UpToDate".to_string()],
    };
    let me = ctx.client.me()?;
    let owner = crate::owner_key::load_or_create()?;
    let mut release = mse_keys::Policy::new(
        mse_keys::AppName {
            owner: me.id,
            project: app.project.clone(),
            name: app.name.clone(),
        },
        // Later deployments sign later policies.
        u64::try_from(now.timestamp_millis()).unwrap_or(1),
        vec![mse_keys::Rule::Fingerprint {
            fingerprint: hex::encode(expected.fingerprint),
        }],
        vec![tee],
    );
    release.tcb_statuses = statuses;
    release.emulated = node.emulated;
    // The roots the owner trusted for this emulated node, for the service
    // to check the next ones against.
    release.test_roots = node
        .emulated
        .then(|| ctx.hardware.test_roots_pem.clone())
        .flatten();
    let signed = release
        .sign(&owner)
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot sign the release policy: {e}")))?;
    let keep_secrets = ctx.plan.flags.keep_secrets;
    let ticket = ctx.client.keep_running(&app.id)?;
    let request = mse_api::keys::ProvisionRequest {
        ticket: ticket.ticket,
        policy: serde_json::to_value(&signed)
            .map_err(|e| Failure::Other(anyhow::anyhow!("cannot encode the policy: {e}")))?,
        code_secret_key: package.key.to_hex(),
        // `--keep-secrets`: those the service keeps, not this machine's.
        ssl_private_key: (!keep_secrets)
            .then(|| ctx.plan.files.ssl_key.clone())
            .flatten(),
        app_secrets: (!keep_secrets)
            .then(|| ctx.plan.files.secrets.clone())
            .flatten(),
        storage_key: ctx.plan.storage_key.as_ref().map(|k| k.to_string()),
        keep_secrets,
        configure: configures,
        rotate_storage_key: ctx.plan.flags.rotation.is_some_and(|r| r.storage_key),
    };
    let answer = super::node::send_provisioning(&info.domain, port, &cert_der, &request)?;
    if configures && !answer.released {
        return Err(Failure::Other(anyhow::anyhow!(
            "the key service kept the new keys but did not configure the new node"
        )));
    }
    // `mse policy show|edit` start from it.
    crate::commands::policy::save(&app.project, &app.name, &signed)?;
    steps.done(&format!(
        "kept for {} under policy version {} (key service {})",
        answer.app,
        answer.policy_version,
        short(&measurement)
    ));
    Ok(Some(Kept {
        app: answer.app,
        policy_version: answer.policy_version,
        measurement,
        rotated: None,
    }))
}

/// "rotate" (`mse rotate`): what was renewed; with `--storage-key`, waits
/// until the new node has written the home back, sealed under the new key.
pub fn rotated(
    ctx: &Deployment<'_>,
    app: &App,
    rotation: super::plan::Rotation,
    steps: &mut Steps,
) -> Result<Rotated, Failure> {
    let mut rotated = Rotated {
        code_key: true,
        secrets: rotation.secrets,
        storage_key: rotation.storage_key,
        storage_version: None,
    };
    if !rotation.storage_key {
        return Ok(rotated);
    }
    steps.start(
        "reseal",
        "Waiting for the new node to write the home back under the new storage key",
    );
    // A snapshot the new app's node wrote is sealed under the new key.
    let resealed = |current: &App| {
        current
            .storage
            .as_ref()
            .is_some_and(|s| s.written_by.as_deref() == Some(current.id.as_str()))
    };
    let kept_both = "the key service keeps the new key and the previous one, so the next node \
                     still opens the home";
    let waited = crate::poll::wait_for_status(
        || ctx.client.app(&app.id),
        resealed,
        ctx.plan.flags.timeout,
        RESEAL_PACE,
        |_| {},
    );
    match waited {
        Ok(current) if resealed(&current) => {
            let version = current.storage.as_ref().map_or(0, |s| s.version);
            rotated.storage_version = Some(version);
            steps.done(&format!(
                "snapshot version {version} sealed under the new key"
            ));
            Ok(rotated)
        }
        Ok(current) => Err(Failure::Other(anyhow::anyhow!(
            "the app ended ({}) before it wrote its home back under the new storage key; \
             {kept_both}",
            current.status
        ))),
        Err(crate::poll::WaitError::Api(e)) => Err(e.into()),
        Err(crate::poll::WaitError::TimedOut(_)) => Err(Failure::Other(anyhow::anyhow!(
            "the new node did not write the home back under the new storage key in time; \
             {kept_both}: run `mse status {}` and rotate again later",
            app.id
        ))),
    }
}

/// How often `mse rotate` asks whether the home was resealed (the node
/// writes it back every 2 s at most).
const RESEAL_PACE: crate::poll::Pace = crate::poll::Pace::Backoff {
    first: std::time::Duration::from_millis(100),
    max: std::time::Duration::from_millis(500),
};

/// "running": the app answers its health check.
pub fn wait_until_running(
    ctx: &Deployment<'_>,
    app: &App,
    steps: &mut Steps,
) -> Result<App, Failure> {
    steps.start("running", "Waiting for the app to start");
    let app = wait_for(
        ctx.client,
        &app.id,
        &[AppStatus::Running],
        ctx.plan.flags.timeout,
        steps,
        None,
        Some(ctx.left),
    )?;
    steps.done(&format!(
        "health check {} answers",
        app.healthcheck_endpoint
    ));
    Ok(app)
}

/// "browser": the certificate a browser sees, checked against the node's
/// evidence (ACME and owner apps whose domain resolves, when verifying).
pub fn check_served_certificate(
    ctx: &Deployment<'_>,
    app: &App,
    expected: &Expected,
    steps: &mut Steps,
) -> Result<Served, Failure> {
    let (resolves, advice) = ctx
        .profile
        .reachability(&app.domain_name, &app.config_domain_name);
    let browser = match expected.origin {
        CertificateOrigin::Acme | CertificateOrigin::Owner if ctx.plan.flags.verify && resolves => {
            Some(verify_served(
                ctx,
                app,
                expected.origin,
                expected.fingerprint,
                steps,
            )?)
        }
        _ => None,
    };
    Ok(Served {
        resolves,
        advice,
        browser,
    })
}

/// "context": what an app user needs to verify the app, and the
/// certificate clients need to reach it, saved under the configuration
/// folder.
pub fn save_context(
    ctx: &Deployment<'_>,
    package: &Package,
    app: &App,
    expected: &Expected,
    node: &NodeCheck,
    served: &Served,
    steps: &mut Steps,
) -> Result<Saved, Failure> {
    let config = &ctx.plan.config;
    let origin = expected.origin;
    steps.start("context", "Saving the context");
    let context = Context {
        version: mse_package::context::CONTEXT_VERSION.into(),
        config: ContextConfig {
            name: config.name.clone(),
            project: config.project.clone(),
            python_application: config.code.python_application.to_string(),
            docker: config.code.docker.clone(),
            code_secret_key: package.key.to_hex(),
            ssl_app_certificate: ctx.plan.files.ssl.as_ref().map(|s| s.certificate.clone()),
        },
        instance: ContextInstance {
            id: app.id.clone(),
            config_domain_name: app.config_domain_name.clone(),
            domain_name: Some(app.domain_name.clone()),
            runtime_spec_digest: Some(expected.spec_digest.clone()),
            enclave_size: app.enclave_size.clone(),
            expires_at: expected.expires_at,
            ssl_certificate_origin: origin,
            nonces: mse_package::context::nonces_to_hex(&package.packed.nonces),
        },
    };
    let store = mse_package::context::ContextStore::new(&conf_dir());
    let context_dir = store
        .save(&context, &package.tar_path)
        .map_err(|e| Failure::Other(anyhow!("cannot save the context: {e}")))?;
    let cert_path = match origin {
        CertificateOrigin::SelfSigned => {
            Some(("cert.pem", mse_attest::ratls::der_to_pem(&node.cert_der)))
        }
        CertificateOrigin::Operator => Some(("operator-ca.pem", ctx.profile.operator_ca.clone())),
        // Served with a certificate of a CA the user's tools know, or the
        // RA-TLS certificate still (the ACME CA failed).
        CertificateOrigin::Acme if served.browser.as_ref().is_some_and(Browser::issued) => None,
        CertificateOrigin::Acme => {
            Some(("cert.pem", mse_attest::ratls::der_to_pem(&node.cert_der)))
        }
        CertificateOrigin::Owner => None,
    }
    .map(|(name, pem)| -> Result<PathBuf, Failure> {
        let path = context_dir.join(name);
        std::fs::write(&path, pem).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    })
    .transpose()?;
    steps.done(&context_dir.display().to_string());
    Ok(Saved {
        context_dir,
        cert_path,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replace_question_capitalises_what_is_live() {
        assert_eq!(
            live_question("an app named `x` is live"),
            "An app named `x` is live\nWould you like to replace it?"
        );
    }
}
