//! What the node knows before the configuration arrives: the app and its
//! runtime environment, its TLS mode, fingerprint and RA-TLS certificate,
//! its sandbox and its limits.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mse_api::launch::{Launch, Quotes, Tls};
use mse_attest::fingerprint::{fingerprint, AppIdentity, FingerprintInput, Runtime, TlsOrigin};
use mse_attest::provider::{GramineProvider, QuoteProvider, TsmKind, TsmProvider};
use mse_attest::simulation::{QuoteKey, SimulatedPck, SimulationProvider};
use mse_run::acme;
use mse_run::limits;
use mse_run::logs::LogSink;
use mse_run::sandbox::{self, Decision, Identity};
use mse_runtime::{Catalog, EnvCache};
use sha2::{Digest, Sha256};

use super::{create_private_dir, invalid, Dirs, Failure, Prepared, TlsSetup};

fn read_text(path: &Path, what: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read the {what} {}: {e}", path.display())))
}

fn sha256_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finalize().into())
}

/// What installs the app's packages, as the launch names it.
fn installer(launch: &Launch) -> Result<mse_runtime::Installer, Failure> {
    use mse_api::launch::Installer;
    Ok(match &launch.runtime.installer {
        None => mse_runtime::Installer::detect(),
        Some(Installer::Pip) => mse_runtime::Installer::Pip,
        Some(Installer::Uv) => mse_runtime::Installer::parse("uv")
            .map_err(|e| invalid(format!("runtime.installer: {e}")))?,
        Some(Installer::UvAt(path)) => {
            use std::os::unix::fs::PermissionsExt as _;
            let executable = std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            if !executable {
                return Err(invalid(format!(
                    "runtime.installer: {} is not an executable uv binary",
                    path.display()
                )));
            }
            mse_runtime::Installer::Uv(path.clone())
        }
    })
}

/// Who the app is: its runtime, TLS mode and expiry, and the fingerprint
/// they, the domain and the code give (docs/fingerprint.md).
pub(super) struct Identified {
    spec: mse_runtime::ImageSpec,
    installer: mse_runtime::Installer,
    tls: TlsSetup,
    expires_at: DateTime<Utc>,
    input: FingerprintInput,
    /// The app's fingerprint.
    pub fingerprint: [u8; 32],
}

/// The app's identity, from its launch description and code: no device,
/// no environment, nothing written.
pub(super) fn identify(launch: &Launch, now: DateTime<Utc>) -> Result<Identified, Failure> {
    let app = &launch.app;
    mse_config::fields::check_domain_name(&app.domain)
        .map_err(|e| invalid(format!("app.domain: {e}")))?;
    mse_config::fields::PythonApplication::parse(&app.application)
        .map_err(|e| invalid(format!("app.application: {e}")))?;
    let catalog = match &launch.runtime.catalog {
        Some(path) => Catalog::parse(&path.display().to_string(), &read_text(path, "catalog")?)
            .map_err(|e| invalid(e.to_string()))?,
        None => Catalog::default_catalog(),
    };
    let spec = catalog
        .find(&launch.runtime.image)
        .map_err(|e| invalid(e.to_string()))?
        .clone();
    let code_sha256 = sha256_file(&app.code)
        .map_err(|e| invalid(format!("cannot read the code {}: {e}", app.code.display())))?;
    let installer = installer(launch)?;

    let (tls, expires_at) = match &launch.tls {
        Tls::Acme {
            expires_at,
            directory,
            account_key,
            ca_bundle,
            lifetime,
        } => {
            let settings = acme::Settings {
                directory: directory.clone(),
                ca_bundle: ca_bundle.clone(),
                account_key: account_key.clone(),
                lifetime: *lifetime,
            };
            (TlsSetup::Acme(settings), *expires_at)
        }
        Tls::Ratls { expires_at } => (TlsSetup::RaTls, *expires_at),
        Tls::Owner {
            certificate: path,
            expires_at,
        } => {
            let chain_pem = read_text(path, "certificate")?;
            let leaf = mse_config::tls::parse_chain(chain_pem.as_bytes())
                .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            if !mse_config::tls::domain_matches(&app.domain, &leaf.dns_names) {
                return Err(invalid(format!(
                    "{} is not valid for {} (it names {})",
                    path.display(),
                    app.domain,
                    leaf.dns_names.join(", ")
                )));
            }
            let leaf_der = mse_attest::ratls::pem_to_der(chain_pem.as_bytes())
                .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            let expiry = expires_at.unwrap_or(leaf.not_after).min(leaf.not_after);
            (
                TlsSetup::Owner {
                    chain_pem,
                    leaf_der,
                    leaf: Box::new(leaf),
                },
                expiry,
            )
        }
        Tls::Plain { expires_at } => (TlsSetup::Plain, *expires_at),
    };
    if expires_at <= now {
        return Err(invalid(format!("the app's expiry {expires_at} is past")));
    }

    let origin = match &tls {
        TlsSetup::RaTls => TlsOrigin::SelfSigned,
        TlsSetup::Owner { leaf_der, .. } => TlsOrigin::Owner { leaf_der },
        TlsSetup::Acme(_) => TlsOrigin::Acme,
        TlsSetup::Plain => TlsOrigin::Operator,
    };
    let input = FingerprintInput::new(
        Runtime {
            image: &launch.runtime.image,
            spec_digest: &spec.digest(),
            enclave_size: &launch.runtime.enclave_size,
        },
        AppIdentity {
            uuid: &app.uuid,
            domain: &app.domain,
            python_application: &app.application,
        },
        origin,
        expires_at,
        code_sha256,
    );
    let fingerprint = fingerprint(&input);
    Ok(Identified {
        spec,
        installer,
        tls,
        expires_at,
        input,
        fingerprint,
    })
}

/// The quote provider `quotes` names, binding `binding` (an app's
/// fingerprint, or the key service's measurement): in simulation it is the
/// quote's MRENCLAVE; a Gramine enclave must have been built for it (its
/// manifest sets it); on TDX and SEV-SNP it fills REPORTDATA[32..64].
pub(crate) fn quote_provider(
    quotes: &Quotes,
    binding: [u8; 32],
) -> Result<Box<dyn QuoteProvider>, Failure> {
    Ok(match quotes {
        Quotes::Simulation {
            quote_key: key,
            quote_chain: chain,
            signer_key: signer,
        } => {
            let pck = SimulatedPck::new(
                QuoteKey::from_pem(&read_text(key, "simulation quote key")?)
                    .map_err(|e| invalid(format!("{}: {e}", key.display())))?,
                &read_text(chain, "simulation quote chain")?,
            )
            .map_err(|e| invalid(format!("{}: {e}", chain.display())))?;
            let mr_signer =
                mse_attest::signer::mr_signer_from_pem(&read_text(signer, "signer key")?)
                    .map_err(|e| invalid(format!("{}: {e}", signer.display())))?;
            Box::new(SimulationProvider::new(pck, binding, mr_signer))
        }
        Quotes::Gramine { attestation_root } => {
            let provider = GramineProvider::new(attestation_root);
            if !provider.available() {
                return Err(invalid(format!(
                    "no attestation device at {} (is this a Gramine SGX enclave? use the \
                     `simulation` quote provider otherwise)",
                    attestation_root.display()
                )));
            }
            // MRENCLAVE covers the manifest, and so the fingerprint it sets:
            // an enclave built for another app must not attest for this one
            // (docs/attestation.md).
            let variable = mse_api::launch::GRAMINE_FINGERPRINT_ENV;
            let built_for = std::env::var(variable).map_err(|_| {
                invalid(format!(
                    "the enclave's environment has no {variable}: its manifest must set \
                     loader.env.{variable} to the app's fingerprint (mse-server tee \
                     gramine-manifest)"
                ))
            })?;
            if !built_for.eq_ignore_ascii_case(&hex::encode(binding)) {
                return Err(invalid(format!(
                    "this enclave was built for the fingerprint {built_for}, not for this \
                     app's {}: refusing to run it",
                    hex::encode(binding)
                )));
            }
            Box::new(provider)
        }
        Quotes::Tdx { tsm_root } | Quotes::SevSnp { tsm_root } => {
            let kind = match quotes {
                Quotes::Tdx { .. } => TsmKind::Tdx,
                _ => TsmKind::SevSnp,
            };
            // Only this runtime reaches configfs-tsm: the app's identity is
            // bound in REPORTDATA[32..64] (docs/attestation.md).
            let provider = TsmProvider::new(tsm_root, kind, binding);
            if let Some(why) = provider.unavailable() {
                return Err(invalid(why));
            }
            Box::new(provider)
        }
    })
}

pub(super) async fn prepare(launch: &Launch, now: DateTime<Utc>) -> Result<Prepared, Failure> {
    let app = &launch.app;
    let Identified {
        spec,
        installer,
        tls,
        expires_at,
        input,
        fingerprint,
    } = identify(launch, now)?;
    let provider = quote_provider(&launch.quotes, fingerprint)?;

    // Intel's collateral for an SGX or TDX quote, served beside it.
    let (provider, stapled): (Box<dyn QuoteProvider>, _) = match (&launch.pccs_url, &launch.quotes)
    {
        (Some(url), Quotes::Gramine { .. } | Quotes::Tdx { .. }) => {
            let with = mse_attest::provider::WithCollateral::new(provider, url.clone());
            let problem = with.problem();
            (Box::new(with), Some(problem))
        }
        _ => (provider, None),
    };

    let work_dir = &launch.node.work_dir;
    create_private_dir(work_dir)
        .map_err(|e| invalid(format!("cannot create {}: {e}", work_dir.display())))?;
    let dirs = Dirs::new(work_dir);
    dirs.clean();
    for dir in [&dirs.home, &dirs.tmp, &dirs.tls] {
        create_private_dir(dir)
            .map_err(|e| Failure::Error(format!("cannot create {}: {e}", dir.display())))?;
    }
    let log_path = launch
        .node
        .log_file
        .clone()
        .unwrap_or_else(|| work_dir.join("app.log"));
    let log = Arc::new(
        LogSink::create(&log_path)
            .map_err(|e| invalid(format!("cannot create {}: {e}", log_path.display())))?,
    );

    let ratls = mse_attest::ratls::create(&app.domain, expires_at, None, provider.as_ref(), now)
        .map_err(|e| Failure::Error(format!("cannot create the RA-TLS certificate: {e}")))?;
    std::fs::write(work_dir.join("ratls.pem"), &ratls.cert_pem)
        .map_err(|e| Failure::Error(format!("cannot save the RA-TLS certificate: {e}")))?;
    if let Some(problem) = stapled {
        let why = problem.lock().ok().and_then(|p| p.clone());
        log.note(&match (&ratls.aux, why) {
            (Some(_), _) => {
                "collateral: Intel's collateral for the quote is served in the certificate".into()
            }
            (None, why) => format!(
                "collateral: none served, verifiers fetch their own: {}",
                why.unwrap_or_else(|| "the quote needs none".into())
            ),
        });
    }
    let evidence = evidence(&tls, &ratls, &input, provider.as_ref())?;

    let cache = EnvCache::new(&launch.runtime.cache_dir).with_installer(installer);
    let build_log = log.clone();
    let env = tokio::task::spawn_blocking(move || {
        cache
            .ensure(&spec, &mut |message| build_log.note(message))
            .map(|env| (env, cache))
    })
    .await
    .map_err(|e| Failure::Error(e.to_string()))?
    .map_err(|e| Failure::Error(e.to_string()))?;
    let (env, cache) = env;

    let sandbox = decide_sandbox(launch);
    match &sandbox {
        Decision::Refuse(why) => return Err(Failure::Error(why.clone())),
        decision => log.note(&format!("sandbox: {}", sandbox::describe(decision))),
    }
    let asked = limits::Limits::for_resource(
        launch.limits.memory_mb.map(|mb| mb.get()),
        launch.limits.cores.map(|cores| cores.get()),
    );
    let mut limits = app_limits(&app.uuid, &launch.node.work_dir, asked);
    // The home and the temporary folder hold at most their share of bytes.
    if let (Some(mb), limits::Applied::Limited(_)) = (asked.disk_mb, &limits) {
        for dir in [&dirs.home, &dirs.tmp] {
            if let Err(why) = sandbox::mount_private_tmpfs(dir, mb, app_owner(&sandbox)) {
                limits = limits::Applied::Unlimited(why);
                break;
            }
        }
    }
    log.note(&format!("limits: {}", limits.describe()));
    if let (limits::Applied::Unlimited(why), sandbox::Mode::Required) =
        (&limits, sandbox::Mode::from(launch.sandbox))
    {
        return Err(Failure::Error(format!(
            "cannot limit the app: {why}; the operator can run apps without limits with \
             --sandbox best-effort"
        )));
    }

    Ok(Prepared {
        log,
        dirs,
        tls,
        expires_at,
        ratls,
        fingerprint,
        env,
        cache,
        sandbox,
        asked,
        limits,
        evidence,
    })
}

/// The evidence of a fronted app: the quote that binds the key of the
/// certificate it serves (for ACME, the RA-TLS certificate's own quote, as
/// the key is the same), with what the fingerprint is computed from.
fn evidence(
    tls: &TlsSetup,
    ratls: &mse_attest::ratls::RaTls,
    input: &FingerprintInput,
    provider: &dyn QuoteProvider,
) -> Result<Option<bytes::Bytes>, Failure> {
    use mse_attest::evidence::{key_bits, Evidence};
    let (quote, aux) = match tls {
        TlsSetup::Acme(_) => (ratls.quote.clone(), ratls.aux.clone()),
        TlsSetup::Owner { leaf_der, .. } => {
            let bits =
                key_bits(leaf_der).map_err(|e| invalid(format!("the owner's certificate: {e}")))?;
            let attested = provider
                .attest(&mse_attest::ratls::report_data(
                    &bits,
                    provider.app_binding().as_ref(),
                ))
                .map_err(|e| Failure::Error(format!("cannot quote the owner's key: {e}")))?;
            (attested.evidence, attested.aux)
        }
        TlsSetup::RaTls | TlsSetup::Plain => return Ok(None),
    };
    Ok(Some(bytes::Bytes::from(
        Evidence::new(&quote, aux.as_deref(), input).to_json(),
    )))
}

/// The app's cgroup with the limits the launch asks for, or why it runs
/// without.
fn app_limits(uuid: &str, work_dir: &Path, asked: limits::Limits) -> limits::Applied {
    if asked.is_empty() {
        return limits::Applied::NotAsked;
    }
    limits::apply(
        asked,
        &limits::cgroup_name(uuid, work_dir),
        limits::detect(),
    )
}

/// How to confine this app, from what the kernel and this process offer.
fn decide_sandbox(launch: &Launch) -> Decision {
    let offered = sandbox::Offered {
        landlock_abi: sandbox::landlock_abi(),
        root: sandbox::running_as_root(),
    };
    sandbox::decide(
        launch.sandbox.into(),
        offered,
        sandbox::app_uid(&launch.app.uuid),
    )
}

/// The uid the app's files must belong to, when it has one of its own.
pub(super) fn app_owner(decision: &Decision) -> Option<u32> {
    match decision {
        Decision::Confine {
            identity: Identity::Uid(uid),
            ..
        } => Some(*uid),
        _ => None,
    }
}
