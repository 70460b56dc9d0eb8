//! `mse verify`: checks that an app runs, in a genuine enclave, the code its
//! owner published — without any account.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::Utc;
use mse_attest::evidence::{verify_evidence, Evidence};
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
    after_help = "Checks: quote_present, report_data_binding, evidence_inputs (certificates \
without a quote only), debug_disabled, mr_signer, mr_enclave (skipped, with a warning, with --skip-fingerprint or when no fingerprint is given), \
quote_signature, tcb. The exit code is 0 only when every check passes; a verified RA-TLS \
certificate is then saved for `curl --cacert`. A certificate that carries no quote (a \
browser-trusted ACME certificate, or the owner's certificate of an `[ssl]` app) is checked \
against the evidence its node publishes at https://DOMAIN/.well-known/mse-evidence: the quote \
there must bind exactly the key of the certificate DOMAIN serves (check report_data_binding), \
and the fingerprint inputs published beside it must give the quote's MRENCLAVE (check \
evidence_inputs); a certificate served by anything else than the attested node fails."
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
        CertificateOrigin::SelfSigned | CertificateOrigin::Operator | CertificateOrigin::Acme => {
            None
        }
    };
    let origin = match (instance.ssl_certificate_origin, &owner_der) {
        (CertificateOrigin::Operator, _) => TlsOrigin::Operator,
        (CertificateOrigin::Acme, _) => TlsOrigin::Acme,
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
    /// Where the evidence came from, when the certificate carries no quote.
    evidence_url: Option<String>,
    /// The served certificate's issuer.
    certificate_issuer: Option<String>,
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
    collateral_for_quote(quote_bytes, pccs_url, file, now)
}

/// [`collateral_for`] a quote (`None`: there is none to check).
pub fn collateral_for_quote(
    quote_bytes: Option<Vec<u8>>,
    pccs_url: Option<&str>,
    file: Option<&Path>,
    now: chrono::DateTime<Utc>,
) -> Result<Result<mse_attest::verify::Collateral, String>, Failure> {
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

/// Where collateral for SGX quotes comes from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Collateral<'a> {
    /// The PCCS [default: Intel's].
    pub pccs_url: Option<&'a str>,
    /// A collateral file instead.
    pub file: Option<&'a Path>,
}

/// Verifies `cert_der`, the certificate `host:port` served without a
/// quote, against the evidence that server publishes. Returns the report
/// and the evidence's URL; an error when it publishes none.
pub fn verify_with_evidence(
    host: &str,
    port: u16,
    overrides: &[fetch::Override],
    cert_der: &[u8],
    policy: &Policy,
    collateral: Collateral<'_>,
    now: chrono::DateTime<Utc>,
) -> Result<(Verification, String), Failure> {
    let url = format!(
        "https://{host}:{port}{}",
        mse_attest::evidence::EVIDENCE_PATH
    );
    let Some(bytes) = fetch::evidence(host, port, overrides, cert_der)? else {
        return Err(Failure::Other(anyhow::anyhow!(
            "{host}:{port} serves a certificate without an attestation quote and publishes no \
             evidence at {url}: nothing binds that certificate to an attested node (it may be \
             served by the platform's proxy or by another server); nothing was saved"
        )));
    };
    let evidence = Evidence::parse(&bytes)
        .map_err(|e| Failure::Other(anyhow::anyhow!("the evidence at {url}: {e}")))?;
    let collateral = collateral_for_quote(
        evidence.quote_bytes().ok(),
        collateral.pccs_url,
        collateral.file,
        now,
    )?;
    let verification = verify_evidence(
        cert_der,
        &evidence,
        host,
        policy,
        collateral.as_ref().map_err(String::as_str),
        now,
    );
    Ok((verification, url))
}

/// Runs `mse verify`.
pub fn run(args: Args) -> CmdResult {
    let now = Utc::now();
    let (cert_der, source, dialled) = match (&args.cert, &args.target) {
        (Some(path), _) => {
            let pem = read(&absolute(path)?, "certificate")?;
            let der = mse_attest::ratls::pem_to_der(&pem)
                .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?;
            (der, path.display().to_string(), None)
        }
        (None, Some(target)) => {
            let (host, port) =
                fetch::split_target(target).map_err(|e| Failure::Invalid(e.to_string()))?;
            let der = fetch::server_certificate(&host, port, &args.resolve)?;
            (der, format!("{host}:{port}"), Some((host, port)))
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

    // A certificate without a quote (ACME, an owner's, or any other) is
    // checked against the evidence its server publishes, when it was
    // fetched from a domain.
    let no_quote = matches!(
        mse_attest::ratls::inspect(&cert_der),
        Err(mse_attest::AttestError::NoQuote)
    );
    let mut evidence_url = None;
    let mut verification = match (&dialled, no_quote) {
        (Some((host, port)), true) => {
            let collateral = Collateral {
                pccs_url: args.pccs_url.as_deref(),
                file: args.collateral.as_deref(),
            };
            let (verification, url) = verify_with_evidence(
                host,
                *port,
                &args.resolve,
                &cert_der,
                &policy,
                collateral,
                now,
            )?;
            evidence_url = Some(url);
            verification
        }
        _ => {
            let collateral = collateral_for(
                &cert_der,
                args.pccs_url.as_deref(),
                args.collateral.as_deref(),
                now,
            )?;
            verify_certificate(
                &cert_der,
                &policy,
                collateral.as_ref().map_err(String::as_str),
                now,
            )
        }
    };
    let certificate_issuer = mse_attest::ratls::issuer(&cert_der).ok();
    // Only a quote-less certificate that was not fetched is left unchecked.
    let no_quote = no_quote && evidence_url.is_none();
    if args.skip_fingerprint {
        for check in &mut verification.checks {
            if check.name == "mr_enclave" && check.status == Status::Skipped {
                check.detail =
                    "SKIPPED (--skip-fingerprint): the code the enclave runs is not checked".into();
            }
        }
    }

    // A verified RA-TLS certificate is its own trust anchor for curl; an
    // ACME or owner's certificate chains to a CA the user's tools know.
    let cert_path = if verification.verified && evidence_url.is_none() {
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
            evidence_url: evidence_url.clone(),
            certificate_issuer: certificate_issuer.clone(),
        };
        outln!(
            "{}",
            serde_json::to_string_pretty(&json).context("cannot encode the report")?
        )?;
    } else {
        print_human(
            &source,
            &verification,
            cert_path.as_deref(),
            &args,
            no_quote,
            evidence_url
                .as_deref()
                .map(|url| (url, certificate_issuer.as_deref().unwrap_or("?"))),
        )?;
    }
    if no_quote {
        let what = match &args.target {
            Some(_) => format!("{source} serves a certificate"),
            None => format!("{source} is a certificate"),
        };
        return Err(Failure::Other(anyhow::anyhow!(
            "{what} without an attestation quote: an ACME or an `[ssl]` app's certificate, or \
             not an MSE app at all. Verify it by its domain (`mse verify DOMAIN`), which checks \
             it against the evidence its node publishes; nothing was saved"
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
    evidence: Option<(&str, &str)>,
) -> CmdResult {
    match evidence {
        Some((url, issuer)) => {
            outln!("Verifying the certificate of {source} (issued by {issuer})")?;
            outln!("  against the evidence at {url}")?;
        }
        None => outln!("Verifying the certificate of {source}")?,
    }
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
        outln!("  {mark} {:<width$}  {}", check.name, check.detail)?;
    }
    if let Some(value) = &v.mr_enclave {
        outln!("  MRENCLAVE {value}")?;
    }
    if let Some(value) = &v.mr_signer {
        outln!("  MRSIGNER  {value}")?;
    }
    if let Some(status) = &v.tcb_status {
        let advisories = if v.advisories.is_empty() {
            "none".to_string()
        } else {
            v.advisories.join(", ")
        };
        outln!("  TCB       {status} (advisories: {advisories})")?;
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
    let tee = match v.tee {
        Some(Tee::Sgx) => "an SGX enclave",
        _ => "the simulation TEE",
    };
    let verified = if skipped {
        "Verified, except the code it runs"
    } else {
        "Verified"
    };
    if let (true, Some((_, issuer)), Some(target)) = (v.verified, evidence, &args.target) {
        outln!(
            "{verified}: the certificate {target} serves (issued by {issuer}) has the key of the \
             node's quote; the app runs in {tee}."
        )?;
        outln!("  Open it in a browser: https://{target}/")?;
    }
    if let Some(path) = cert_path {
        outln!(
            "{verified}: the app runs in {tee}. Certificate saved to {}",
            path.display()
        )?;
        if let Some(target) = &args.target {
            let resolve: String = args
                .resolve
                .iter()
                .map(|o| format!(" --resolve {o}"))
                .collect();
            outln!(
                "  curl --cacert {}{resolve} https://{target}/",
                path.display()
            )?;
        }
    }
    Ok(())
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
