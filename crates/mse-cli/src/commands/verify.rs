//! `mse verify`: checks that an app runs, in a genuine enclave, the code its
//! owner published — without any account.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::Utc;
use mse_attest::fingerprint::{fingerprint, AppIdentity, FingerprintInput, Runtime, TlsOrigin};
use mse_attest::verify::{verify_certificate, Policy, Status, Tee, Verification};
use mse_package::context::{CertificateOrigin, Context};
use serde::Serialize;

use crate::commands::absolute;
use crate::conf::conf_dir;
use crate::exit::{CmdResult, Failure};
use crate::{fetch, render};

/// PCCS used when neither `--pccs-url` nor `--collateral` is given.
pub const DEFAULT_PCCS_URL: &str = "https://api.trustedservices.intel.com";

/// Arguments of `mse verify`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Checks: quote_present, report_data_binding, debug_disabled, mr_signer, \
mr_enclave (skipped, with a warning, with --skip-fingerprint or when no fingerprint is given), \
quote_signature, tcb. The exit code is 0 only when every check passes; the verified certificate \
is then saved for `curl --cacert`. An `[ssl]` app serves its owner's certificate, which carries \
no attestation quote: it cannot be verified from its certificate."
)]
pub struct Args {
    /// The app to verify; its certificate is fetched over TLS (SNI = DOMAIN)
    #[arg(
        value_name = "DOMAIN[:PORT]",
        required_unless_present = "cert",
        conflicts_with = "cert"
    )]
    target: Option<String>,
    /// Verify this certificate (PEM) instead of fetching one
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Reach HOST:PORT at ADDR instead of the address the resolver gives, as curl's --resolve
    /// does (e.g. an app's own domain before its DNS record exists); may be repeated
    #[arg(long, value_name = "HOST:PORT:ADDR", conflicts_with = "cert")]
    resolve: Vec<fetch::Override>,
    /// Expected fingerprint (MRENCLAVE), 64 hex digits
    #[arg(long, value_name = "HEX", conflicts_with = "context")]
    fingerprint: Option<String>,
    /// Recompute the fingerprint from this exported context (with --code)
    #[arg(long, value_name = "FILE", requires = "code")]
    context: Option<PathBuf>,
    /// The plaintext code folder the context was packaged from
    #[arg(long, value_name = "DIR", requires = "context")]
    code: Option<PathBuf>,
    /// Run every check but the fingerprint (MRENCLAVE), reported as skipped: nothing then proves
    /// which code the app runs
    #[arg(long, conflicts_with_all = ["fingerprint", "context"])]
    skip_fingerprint: bool,
    /// The platform's enclave-signing public key (RSA-3072, PEM), giving the expected MRSIGNER
    /// [default: the key saved by `mse login`, if logged in]
    #[arg(long, value_name = "PEM")]
    signer_key: Option<PathBuf>,
    /// The platform's simulation CA (PEM), to check simulated quotes with --allow-simulation
    /// [default: the CA saved by `mse login`, if logged in]
    #[arg(long, value_name = "PEM")]
    simulation_ca: Option<PathBuf>,
    /// The quote keys the platform revoked, as its `GET /simulation-revoked` answers (JSON), to
    /// check simulated quotes with --allow-simulation [default: fetched from the platform of
    /// `mse login` when its simulation CA is used]
    #[arg(long, value_name = "FILE")]
    simulation_revoked: Option<PathBuf>,
    /// PCCS to fetch collateral from [default: https://api.trustedservices.intel.com]
    #[arg(long, value_name = "URL", conflicts_with = "collateral")]
    pccs_url: Option<String>,
    /// Read the collateral from this JSON file instead of a PCCS
    #[arg(long, value_name = "FILE")]
    collateral: Option<PathBuf>,
    /// TCB statuses to accept besides UpToDate, e.g. SWHardeningNeeded
    #[arg(long, value_name = "STATUS,...", value_delimiter = ',')]
    accept_tcb: Vec<String>,
    /// Accept a simulated TEE (no hardware protection), reported as such [default: accepted for
    /// the platform of `mse login --allow-simulation`]
    #[arg(long)]
    allow_simulation: bool,
    /// Where to save the certificate once verified
    #[arg(long, value_name = "FILE", default_value = "cert.pem")]
    output: PathBuf,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|e| Failure::Invalid(format!("cannot read the {what} {}: {e}", path.display())))
}

/// The fingerprint input of a deployment, from its context and the SHA-256
/// of its recomputed package.
pub fn fingerprint_input(
    context: &Context,
    code_sha256: [u8; 32],
) -> Result<FingerprintInput, String> {
    let instance = &context.instance;
    let missing =
        |what: &str| format!("the context has no {what}; export it again from a current client");
    let owner_der = match instance.ssl_certificate_origin {
        CertificateOrigin::Owner => {
            let pem = context
                .config
                .ssl_app_certificate
                .as_deref()
                .ok_or_else(|| missing("owner certificate"))?;
            Some(mse_attest::ratls::pem_to_der(pem.as_bytes()).map_err(|e| e.to_string())?)
        }
        CertificateOrigin::SelfSigned | CertificateOrigin::Operator => None,
    };
    let origin = match (instance.ssl_certificate_origin, &owner_der) {
        (CertificateOrigin::Operator, _) => TlsOrigin::Operator,
        (_, Some(leaf_der)) => TlsOrigin::Owner { leaf_der },
        (_, None) => TlsOrigin::SelfSigned,
    };
    let runtime_spec_digest = instance
        .runtime_spec_digest
        .as_deref()
        .ok_or_else(|| missing("runtime_spec_digest"))?;
    let domain = instance
        .domain_name
        .as_deref()
        .ok_or_else(|| missing("domain_name"))?;
    Ok(FingerprintInput::new(
        Runtime {
            image: &context.config.docker,
            spec_digest: runtime_spec_digest,
            enclave_size: &instance.enclave_size,
        },
        AppIdentity {
            uuid: &instance.id,
            domain,
            python_application: &context.config.python_application,
        },
        origin,
        instance.expires_at,
        code_sha256,
    ))
}

/// Repackages `code` with the context's key and nonces and derives the fingerprint.
fn fingerprint_from_context(context_path: &Path, code: &Path) -> Result<[u8; 32], Failure> {
    let text = String::from_utf8(read(context_path, "context")?)
        .map_err(|_| Failure::Invalid(format!("{} is not UTF-8", context_path.display())))?;
    let context =
        Context::from_toml(context_path, &text).map_err(|e| Failure::Invalid(e.to_string()))?;
    let key = context.key().map_err(|e| Failure::Invalid(e.to_string()))?;
    let nonces = context.nonces().map_err(Failure::Invalid)?;
    let packed = mse_package::pack(
        code,
        &key,
        mse_package::Nonces::Given(&nonces),
        std::io::sink(),
    )
    .map_err(|e| {
        Failure::Invalid(format!(
            "cannot recompute the package from {}: {e}",
            code.display()
        ))
    })?;
    let input = fingerprint_input(&context, packed.sha256).map_err(Failure::Invalid)?;
    Ok(fingerprint(&input))
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    name: &'a str,
    ok: bool,
    status: Status,
    detail: &'a str,
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    verified: bool,
    tee: Option<Tee>,
    mr_enclave: &'a Option<String>,
    mr_signer: &'a Option<String>,
    debug: Option<bool>,
    tcb_status: &'a Option<String>,
    advisories: &'a [String],
    checks: Vec<JsonCheck<'a>>,
    cert_path: Option<PathBuf>,
}

/// The collateral to check a certificate's quote with: none for a quote
/// that is not genuine SGX (simulated or unparsable), else from `file`, else
/// from the PCCS at `pccs_url` (Intel's by default) through the cache under
/// `$MSE_CONF_PATH/collateral`. An `Err` inside says why there is none; the
/// verification then fails its `tcb` check with that reason.
pub fn collateral_for(
    cert_der: &[u8],
    pccs_url: Option<&str>,
    file: Option<&Path>,
    now: chrono::DateTime<Utc>,
) -> Result<Result<mse_attest::verify::Collateral, String>, Failure> {
    let quote_bytes = mse_attest::ratls::inspect(cert_der)
        .map(|i| i.quote_bytes)
        .ok();
    let needs_collateral = quote_bytes
        .as_deref()
        .and_then(|bytes| mse_attest::quote::Quote::parse(bytes).ok())
        .is_some_and(|q| !mse_attest::simulation::looks_simulated(&q));
    if !needs_collateral {
        return Ok(Err(mse_attest::verify::NO_COLLATERAL.to_string()));
    }
    if let Some(path) = file {
        return Ok(Ok(mse_attest::collateral::from_file(&absolute(path)?)
            .map_err(|e| Failure::Invalid(e.to_string()))?));
    }
    let url = pccs_url.unwrap_or(DEFAULT_PCCS_URL);
    let cache = mse_attest::collateral::Cache::new(conf_dir().join("collateral"));
    Ok(cache
        .get_or_fetch(
            url,
            quote_bytes.as_deref().unwrap_or_default(),
            now,
            mse_attest::collateral::fetch_pccs,
        )
        .map_err(|e| format!("{e}; pass --collateral FILE or another --pccs-url")))
}

/// Runs `mse verify`.
pub fn run(args: Args) -> CmdResult {
    let now = Utc::now();
    let (cert_der, source) = match (&args.cert, &args.target) {
        (Some(path), _) => {
            let pem = read(&absolute(path)?, "certificate")?;
            let der = mse_attest::ratls::pem_to_der(&pem)
                .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?;
            (der, path.display().to_string())
        }
        (None, Some(target)) => {
            let (host, port) =
                fetch::split_target(target).map_err(|e| Failure::Invalid(e.to_string()))?;
            let der = fetch::server_certificate(&host, port, &args.resolve)?;
            (der, format!("{host}:{port}"))
        }
        (None, None) => return Err(Failure::Invalid("give DOMAIN[:PORT] or --cert FILE".into())),
    };

    let mr_enclave = match (&args.fingerprint, &args.context, &args.code) {
        (Some(hex_text), _, _) => {
            let mut value = [0u8; 32];
            hex::decode_to_slice(hex_text.trim(), &mut value)
                .map_err(|_| Failure::Invalid("--fingerprint must be 64 hex digits".into()))?;
            Some(value)
        }
        (None, Some(context), Some(code)) => Some(fingerprint_from_context(
            &absolute(context)?,
            &absolute(code)?,
        )?),
        _ => None,
    };
    // Without --signer-key/--simulation-ca, the platform the user is logged
    // in to (if any) provides them, as fetched at login.
    let profile = if args.signer_key.is_none() || args.simulation_ca.is_none() {
        crate::profile::Profile::load().ok()
    } else {
        None
    };
    let mr_signer = match (&args.signer_key, &profile) {
        (Some(path), _) => {
            let pem = String::from_utf8(read(&absolute(path)?, "signer key")?)
                .map_err(|_| Failure::Invalid(format!("{} is not PEM", path.display())))?;
            Some(
                mse_attest::signer::mr_signer_from_pem(&pem)
                    .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?,
            )
        }
        (None, Some(profile)) => {
            eprintln!("using the signer key of {} (from `mse login`)", profile.url);
            Some(profile.mr_signer()?)
        }
        (None, None) => None,
    };
    let simulation_ca = match (&args.simulation_ca, &profile) {
        (Some(path), _) => Some(
            mse_attest::ratls::pem_to_der(&read(&absolute(path)?, "simulation CA")?)
                .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?,
        ),
        (None, Some(profile)) => Some(profile.simulation_ca_der()?),
        (None, None) => None,
    };
    // A user who logged in with --allow-simulation accepts the simulated
    // quotes of that platform, whose simulation CA the profile provides.
    let allow_simulation = args.allow_simulation
        || (args.simulation_ca.is_none() && profile.as_ref().is_some_and(|p| p.allow_simulation));
    if allow_simulation && !args.allow_simulation {
        if let Some(profile) = &profile {
            eprintln!(
                "accepting simulated quotes of {}, as you logged in with --allow-simulation",
                profile.url
            );
        }
    }
    // The revoked quote keys, only needed for simulated quotes: from the
    // file given, else from the platform whose CA is used. Without either,
    // every simulated quote fails.
    let simulation_revoked = match (&args.simulation_revoked, &profile) {
        _ if !allow_simulation => None,
        (Some(path), _) => Some(
            mse_attest::verify::parse_revoked(&read(&absolute(path)?, "revoked quote keys")?)
                .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?,
        ),
        (None, Some(profile)) if args.simulation_ca.is_none() => {
            Some(profile.simulation_revoked()?)
        }
        (None, _) => None,
    };
    let policy = Policy {
        mr_signer,
        mr_enclave,
        accepted_tcb: args.accept_tcb.clone(),
        allow_simulation,
        simulation_ca,
        simulation_revoked,
    };

    let collateral = collateral_for(
        &cert_der,
        args.pccs_url.as_deref(),
        args.collateral.as_deref(),
        now,
    )?;
    let mut verification = verify_certificate(
        &cert_der,
        &policy,
        collateral.as_ref().map_err(String::as_str),
        now,
    );
    // An owner's certificate ([ssl] apps) or any other plain certificate.
    let no_quote = matches!(
        mse_attest::ratls::inspect(&cert_der),
        Err(mse_attest::AttestError::NoQuote)
    );
    if args.skip_fingerprint {
        for check in &mut verification.checks {
            if check.name == "mr_enclave" && check.status == Status::Skipped {
                check.detail =
                    "SKIPPED (--skip-fingerprint): the code the enclave runs is not checked".into();
            }
        }
    }

    let cert_path = if verification.verified {
        let path = absolute(&args.output)?;
        let pem = pem_encode(&cert_der);
        std::fs::write(&path, pem).with_context(|| format!("cannot write {}", path.display()))?;
        Some(path)
    } else {
        None
    };

    if args.json {
        let json = JsonOutput {
            verified: verification.verified,
            tee: verification.tee,
            mr_enclave: &verification.mr_enclave,
            mr_signer: &verification.mr_signer,
            debug: verification.debug,
            tcb_status: &verification.tcb_status,
            advisories: &verification.advisories,
            checks: verification
                .checks
                .iter()
                .map(|c| JsonCheck {
                    name: c.name,
                    ok: c.status != Status::Failed,
                    status: c.status,
                    detail: &c.detail,
                })
                .collect(),
            cert_path: cert_path.clone(),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&json).context("cannot encode the report")?
        );
    } else {
        print_human(
            &source,
            &verification,
            cert_path.as_deref(),
            &args,
            no_quote,
        );
    }
    if no_quote {
        let what = match &args.target {
            Some(_) => format!("{source} serves a certificate"),
            None => format!("{source} is a certificate"),
        };
        return Err(Failure::Other(anyhow::anyhow!(
            "{what} without an attestation quote: it is an `[ssl]` app, \
             served with its owner's own certificate (owner mode), or not an MSE app at all. App \
             users cannot verify such an app from its certificate (evidence for `[ssl]` apps is \
             planned); nothing was saved"
        )));
    }
    if verification.verified {
        Ok(())
    } else {
        Err(Failure::Other(anyhow::anyhow!(
            "verification failed: {} of {} checks failed",
            verification
                .checks
                .iter()
                .filter(|c| c.status == Status::Failed)
                .count(),
            verification.checks.len()
        )))
    }
}

/// A certificate (DER) as PEM with LF line endings.
pub fn pem_encode(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn print_human(
    source: &str,
    v: &Verification,
    cert_path: Option<&Path>,
    args: &Args,
    no_quote: bool,
) {
    println!("Verifying the certificate of {source}");
    // Without a quote, every other check only says there is nothing to check.
    let shown = if no_quote {
        &v.checks[..1]
    } else {
        &v.checks[..]
    };
    let width = shown.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for check in shown {
        let mark = match check.status {
            Status::Passed => "✓",
            Status::Failed => "✗",
            Status::Skipped => "-",
        };
        println!("  {mark} {:<width$}  {}", check.name, check.detail);
    }
    if let Some(value) = &v.mr_enclave {
        println!("  MRENCLAVE {value}");
    }
    if let Some(value) = &v.mr_signer {
        println!("  MRSIGNER  {value}");
    }
    if let Some(status) = &v.tcb_status {
        let advisories = if v.advisories.is_empty() {
            "none".to_string()
        } else {
            v.advisories.join(", ")
        };
        println!("  TCB       {status} (advisories: {advisories})");
    }
    let skipped = v
        .checks
        .iter()
        .any(|c| c.name == "mr_enclave" && c.status == Status::Skipped);
    if skipped && args.skip_fingerprint {
        eprintln!(
            "{} MRENCLAVE SKIPPED (--skip-fingerprint): the fingerprint was not checked, so nothing proves which code this app runs, only where it runs",
            render::warning_prefix()
        );
    } else if skipped {
        eprintln!(
            "{} no fingerprint was given (--fingerprint or --context with --code): the code the app runs was not checked",
            render::warning_prefix()
        );
    }
    if v.tee == Some(Tee::Simulation) {
        eprintln!(
            "{} SIMULATION — no hardware protection: this app does not run in an SGX enclave; its host can read its code and secrets",
            render::warning_prefix()
        );
    }
    if let Some(path) = cert_path {
        let tee = match v.tee {
            Some(Tee::Sgx) => "an SGX enclave",
            _ => "the simulation TEE",
        };
        let verified = if skipped {
            "Verified, except the code it runs"
        } else {
            "Verified"
        };
        println!(
            "{verified}: the app runs in {tee}. Certificate saved to {}",
            path.display()
        );
        if let Some(target) = &args.target {
            let resolve: String = args
                .resolve
                .iter()
                .map(|o| format!(" --resolve {o}"))
                .collect();
            println!(
                "  curl --cacert {}{resolve} https://{target}/",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_encoding_is_standard_with_short_lines() {
        assert_eq!(
            pem_encode(b"Man"),
            "-----BEGIN CERTIFICATE-----\nTWFu\n-----END CERTIFICATE-----\n"
        );
        let long = pem_encode(&[0u8; 100]);
        assert!(long.lines().all(|l| l.len() <= 64));
    }
}
