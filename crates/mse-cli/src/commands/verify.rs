//! `mse verify`: checks that an app runs, in a genuine enclave, the code its
//! owner published — without any account.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::Utc;
use mse_attest::evidence::{verify_evidence, Evidence};
use mse_attest::fingerprint::{fingerprint, AppIdentity, FingerprintInput, Runtime, TlsOrigin};
use mse_attest::verify::{
    verify_certificate_with, verify_raw, Endorsements, Policy, Status, Tee, Verification,
};
use mse_package::context::{CertificateOrigin, Context};
use serde::Serialize;

use crate::commands::absolute;
use crate::conf::conf_dir;
use crate::exit::{CmdResult, Failure};
use crate::{fetch, render};

/// PCCS used when neither `--pccs-url` nor `--collateral` is given.
pub const DEFAULT_PCCS_URL: &str = "https://api.trustedservices.intel.com";
/// AMD's Key Distribution Service.
pub const DEFAULT_KDS_URL: &str = "https://kdsintf.amd.com";

/// Arguments of `mse verify`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Checks: quote_present, report_data_binding, evidence_inputs (certificates \
without a quote only), debug_disabled, mr_signer, mr_enclave (skipped, with a warning, with --skip-fingerprint or when no fingerprint is given), \
quote_signature, tcb; a TDX or SEV-SNP node has runtime_measurements and fingerprint (REPORTDATA[32..64]) \
in place of mr_signer and mr_enclave. With --quote FILE: quote_present, debug_disabled, quote_signature, \
tcb, and every measurement by its usual name (mr_enclave, mr_td, rtmr0..rtmr3, measurement, host_data, \
report_data, ...). The exit code is 0 only when every check passes; a verified RA-TLS \
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
        required_unless_present_any = ["cert", "quote", "offline"],
        conflicts_with_all = ["cert", "quote", "offline"]
    )]
    target: Option<String>,
    /// Verify this certificate (PEM) instead of fetching one
    #[arg(long, value_name = "FILE", conflicts_with = "quote")]
    cert: Option<PathBuf>,
    /// Verify this evidence on its own: an SGX or TDX quote or an SEV-SNP report, binary or hex.
    /// Prints the TEE, every measurement, the report data and the TCB; checks quote_present,
    /// debug_disabled, quote_signature and tcb
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["fingerprint", "context", "skip_fingerprint", "resolve", "allow_simulation"]
    )]
    quote: Option<PathBuf>,
    /// Verify as at this time (RFC 3339, e.g. 2025-01-31T12:00:00Z) instead of now: for evidence
    /// and collateral saved earlier
    #[arg(long, value_name = "RFC3339")]
    at: Option<chrono::DateTime<Utc>>,
    /// Once verified, save the evidence (the certificate with its quote or report, and the
    /// collateral or chain that certified it) to this file, to check it again with --offline
    #[arg(long, value_name = "FILE", conflicts_with = "quote")]
    save_evidence: Option<PathBuf>,
    /// Check an evidence bundle saved with --save-evidence, with no network: as at the time it was
    /// saved, or at --at; the fingerprint and the catalog's references come from this side as for
    /// DOMAIN
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["cert", "quote", "resolve", "pccs_url", "collateral", "save_evidence"]
    )]
    offline: Option<PathBuf>,
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
    /// AMD's Key Distribution Service, for the VCEK and chain of an SEV-SNP report given without
    /// them (`--quote`) [default: https://kdsintf.amd.com]
    #[arg(long, value_name = "URL", conflicts_with = "collateral")]
    kds_url: Option<String>,
    /// The processor of a version 2 SEV-SNP report, which does not name it, for the KDS: Milan,
    /// Genoa or Turin
    #[arg(long, value_name = "NAME")]
    snp_product: Option<String>,
    /// Read the collateral from this file instead of a PCCS: for SGX and TDX the JSON of dcap-qvl's
    /// QuoteCollateralV3; for an SEV-SNP report the PEM chain VCEK (or VLEK), ASK, ARK
    #[arg(long, value_name = "FILE")]
    collateral: Option<PathBuf>,
    /// TCB statuses to accept besides UpToDate, e.g. SWHardeningNeeded (SEV-SNP without
    /// --snp-min-tcb: NoMinimum)
    #[arg(long, value_name = "STATUS,...", value_delimiter = ',')]
    accept_tcb: Vec<String>,
    /// SEV-SNP: the lowest TCB that is UpToDate, e.g. "bl=3 tee=0 snp=8 ucode=115"; below it the
    /// status is OutOfDate [default: the catalog's, for the app's image or the strictest]
    #[arg(long, value_name = "TCB")]
    snp_min_tcb: Option<mse_attest::snp::Tcb>,
    /// Trust these test roots (PEM: an emulated Intel root CA, emulated AMD ARKs) instead of
    /// Intel's and AMD's: for emulated hardware only; a verified app is reported EMULATED
    #[arg(long, value_name = "PEM")]
    test_roots: Option<PathBuf>,
    /// The platform's image catalog, as its `GET /catalog` serves it (JSON), for the reference
    /// measurements of TDX and SEV-SNP runtimes [default: the catalog of `mse login`, else the
    /// built-in one]
    #[arg(long, value_name = "FILE")]
    catalog: Option<PathBuf>,
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
    /// Verified under a test root: emulated hardware.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    emulated: bool,
    /// SEV-SNP: the reported TCB's components.
    #[serde(skip_serializing_if = "Option::is_none")]
    tcb_components: &'a Option<String>,
    /// Every other measurement by its usual name.
    #[serde(flatten)]
    measurements: &'a std::collections::BTreeMap<&'static str, String>,
}

impl<'a> JsonOutput<'a> {
    fn new(verification: &'a Verification) -> JsonOutput<'a> {
        JsonOutput {
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
            cert_path: None,
            evidence_url: None,
            certificate_issuer: None,
            emulated: verification.emulated,
            tcb_components: &verification.tcb_components,
            measurements: &verification.measurements,
        }
    }
}

/// The collateral to check a quote with (`None`: there is none): none for
/// a quote that is not genuine SGX or TDX (simulated, SEV-SNP or
/// unparsable), else from `file`, else what the node `served` beside the
/// quote while it is not due for its next update (its signatures are
/// checked as any other's), else from the PCCS at `pccs_url` (Intel's by
/// default) through the cache under `$MSE_CONF_PATH/collateral`. An `Err`
/// inside says why there is none; the verification then fails its `tcb`
/// check with that reason.
pub fn collateral_for_quote(
    quote_bytes: Option<Vec<u8>>,
    served: Option<&[u8]>,
    pccs_url: Option<&str>,
    file: Option<&Path>,
    now: chrono::DateTime<Utc>,
) -> Result<Result<mse_attest::verify::Collateral, String>, Failure> {
    // SGX quotes but the simulation's, and TDX quotes, are checked with
    // Intel's collateral.
    let needs_collateral =
        quote_bytes
            .as_deref()
            .is_some_and(|bytes| match mse_attest::hardware::kind(bytes) {
                Ok(Tee::Tdx) => true,
                Ok(Tee::Sgx) => mse_attest::quote::Quote::parse(bytes)
                    .is_ok_and(|q| !mse_attest::simulation::looks_simulated(&q)),
                _ => false,
            });
    if !needs_collateral {
        return Ok(Err(mse_attest::verify::NO_COLLATERAL.to_string()));
    }
    if let Some(path) = file {
        return Ok(Ok(mse_attest::collateral::from_file(&absolute(path)?)
            .map_err(|e| Failure::Invalid(e.to_string()))?));
    }
    if let Some(collateral) = served.and_then(|aux| mse_attest::collateral::served(aux, now)) {
        return Ok(Ok(collateral));
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

/// What certifies the evidence of `cert_der`: Intel's collateral for an
/// SGX (not simulated) or TDX quote, from `file` or the PCCS as
/// [`collateral_for_quote`] gets it; for an SEV-SNP report the chain in
/// `file` (PEM) or, else, the one the certificate carries. An `Err` inside
/// says why there is none.
pub fn endorsements_for(
    cert_der: &[u8],
    pccs_url: Option<&str>,
    file: Option<&Path>,
    now: chrono::DateTime<Utc>,
) -> Result<Result<Endorsements, String>, Failure> {
    let Ok(inspected) = mse_attest::ratls::inspect(cert_der) else {
        return Ok(Err(mse_attest::verify::NO_COLLATERAL.to_string()));
    };
    if mse_attest::hardware::kind(&inspected.quote_bytes) != Ok(Tee::SevSnp) {
        return Ok(collateral_for_quote(
            Some(inspected.quote_bytes),
            inspected.aux.as_deref(),
            pccs_url,
            file,
            now,
        )?
        .map(|c| Endorsements::Dcap(Box::new(c))));
    }
    snp_endorsements(file, Ok(inspected.aux), "the certificate")
}

/// What certifies an SEV-SNP report: the chain in `file` (PEM), else the
/// certificate table that came with the report from `source`.
fn snp_endorsements(
    file: Option<&Path>,
    aux: Result<Option<Vec<u8>>, String>,
    source: &str,
) -> Result<Result<Endorsements, String>, Failure> {
    if let Some(path) = file {
        let bytes = read(&absolute(path)?, "certificate chain")?;
        return Endorsements::read(Tee::SevSnp, &bytes)
            .map(Ok)
            .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())));
    }
    Ok(match aux {
        Err(why) => Err(why),
        Ok(Some(table)) => Endorsements::from_aux(&table).map_err(|e| format!("{source}: {e}")),
        Ok(None) => Err(format!(
            "{source} carries no VCEK chain: give --collateral FILE with the PEM certificates \
             VCEK (or VLEK), ASK and ARK"
        )),
    })
}

/// What verifies hardware evidence beyond the vendors' roots: the test
/// roots of `test_roots` (said loudly), and, from the `current` catalog
/// when the platform's enclave-signing key (`signer_pem`) signed them, the
/// runtimes' reference measurements and the SEV-SNP minimum TCB of `image`
/// (the strictest of the catalog's when the image is not known).
pub fn hardware_policy(
    current: &crate::catalog::Current,
    signer_pem: Option<&str>,
    image: Option<&str>,
    test_roots: Option<&Path>,
) -> Result<HardwarePolicy, Failure> {
    let (trust, test_roots_pem) = test_trust(test_roots)?;
    let signed = current.catalog.signed_references(
        &current.origin,
        current.references_signature.as_deref(),
        signer_pem,
        image,
    );
    Ok(HardwarePolicy {
        trust,
        test_roots_pem,
        references: signed.references,
        references_refused: signed.refused,
        snp_min_tcb: signed.snp_min_tcb,
        sgx_enclaves: signed.sgx_enclaves,
    })
}

/// The roots hardware evidence must chain to: the vendors', or the test
/// roots of `test_roots` (said loudly).
fn test_trust(
    test_roots: Option<&Path>,
) -> Result<(mse_attest::hardware::Trust, Option<String>), Failure> {
    let Some(path) = test_roots else {
        return Ok((mse_attest::hardware::Trust::Vendors, None));
    };
    let text = String::from_utf8(read(&absolute(path)?, "test roots")?)
        .map_err(|_| Failure::Invalid(format!("{} is not PEM", path.display())))?;
    let trust = mse_attest::hardware::Trust::test_from_pem(&text)
        .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?;
    eprintln!(
        "{} trusting the test roots of {} instead of Intel's and AMD's: emulated hardware \
         only, no protection",
        render::warning_prefix(),
        path.display()
    );
    Ok((trust, Some(text)))
}

/// The parts of a [`Policy`] that only hardware evidence uses.
#[derive(Debug, Clone, Default)]
pub struct HardwarePolicy {
    /// The roots trusted.
    pub trust: mse_attest::hardware::Trust,
    /// The test roots trusted instead of the vendors', PEM, if any.
    pub test_roots_pem: Option<String>,
    /// The runtimes' reference measurements.
    pub references: Vec<mse_attest::verify::Reference>,
    /// Why the catalog's references are not used.
    pub references_refused: Option<String>,
    /// The SEV-SNP minimum TCB.
    pub snp_min_tcb: Option<mse_attest::snp::Tcb>,
    /// The SGX enclaves whose MRENCLAVE is replayed.
    pub sgx_enclaves: Vec<mse_attest::verify::EnclaveReference>,
}

impl HardwarePolicy {
    /// The SGX enclaves, each with its replay for `fingerprint` made once
    /// and kept under `$MSE_CONF_PATH/enclaves` (named by the SHA-256 of
    /// the enclave's template, layout and the fingerprint): a replay reads
    /// every page of the enclave.
    pub fn sgx_enclaves_for(
        &self,
        fingerprint: Option<[u8; 32]>,
    ) -> Vec<mse_attest::verify::EnclaveReference> {
        let Some(fingerprint) = fingerprint else {
            return self.sgx_enclaves.clone();
        };
        let dir = conf_dir().join("enclaves");
        self.sgx_enclaves
            .iter()
            .map(|reference| {
                let mut reference = reference.clone();
                let Ok(json) = serde_json::to_vec(&reference.enclave) else {
                    return reference;
                };
                let mut key = <sha2::Sha256 as sha2::Digest>::new();
                sha2::Digest::update(&mut key, b"mse-enclave-replay-v1\n");
                sha2::Digest::update(&mut key, &json);
                sha2::Digest::update(&mut key, fingerprint);
                let path = dir.join(hex::encode(sha2::Digest::finalize(key)));
                let mut kept = [0u8; 32];
                let read = std::fs::read_to_string(&path)
                    .ok()
                    .is_some_and(|text| hex::decode_to_slice(text.trim(), &mut kept).is_ok());
                if read {
                    reference.replayed = Some((fingerprint, kept));
                } else if let Ok(mr_enclave) = reference.enclave.mr_enclave(&fingerprint) {
                    reference.replayed = Some((fingerprint, mr_enclave));
                    // A cache that cannot be written only costs a replay.
                    let _ = std::fs::create_dir_all(&dir)
                        .and_then(|()| std::fs::write(&path, hex::encode(mr_enclave)));
                }
                reference
            })
            .collect()
    }
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
    let quote = evidence.quote_bytes().ok();
    let endorsements = match quote.as_deref().map(mse_attest::hardware::kind) {
        Some(Ok(Tee::SevSnp)) => snp_endorsements(
            collateral.file,
            evidence.aux_bytes().map_err(|e| e.to_string()),
            &format!("the evidence at {url}"),
        )?,
        _ => collateral_for_quote(
            quote,
            evidence.aux_bytes().ok().flatten().as_deref(),
            collateral.pccs_url,
            collateral.file,
            now,
        )?
        .map(|c| Endorsements::Dcap(Box::new(c))),
    };
    let verification = verify_evidence(
        cert_der,
        &evidence,
        host,
        policy,
        endorsements.as_ref().map_err(String::as_str),
        now,
    );
    Ok((verification, url))
}

/// Runs `mse verify`.
pub fn run(args: Args) -> CmdResult {
    if let Some(path) = &args.quote {
        return run_quote(&args, path, args.at.unwrap_or_else(Utc::now));
    }
    let bundle = match &args.offline {
        Some(path) => Some(
            mse_attest::bundle::Bundle::parse(&read(&absolute(path)?, "evidence bundle")?)
                .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?,
        ),
        None => None,
    };
    let now = args
        .at
        .or(bundle.as_ref().map(|b| b.verified_at))
        .unwrap_or_else(Utc::now);
    let (cert_der, source, dialled) = match (&args.cert, &args.target, &bundle) {
        (None, None, Some(bundle)) => (
            bundle.certificate_der().map_err(Failure::Invalid)?,
            format!(
                "{} (saved {}, checked as at {})",
                bundle.source,
                bundle.verified_at.to_rfc3339(),
                now.to_rfc3339()
            ),
            None,
        ),
        (Some(path), _, _) => {
            let pem = read(&absolute(path)?, "certificate")?;
            let der = mse_attest::ratls::pem_to_der(&pem)
                .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?;
            (der, path.display().to_string(), None)
        }
        (None, Some(target), _) => {
            let (host, port) =
                fetch::split_target(target).map_err(|e| Failure::Invalid(e.to_string()))?;
            let der = fetch::server_certificate(&host, port, &args.resolve)?;
            (der, format!("{host}:{port}"), Some((host, port)))
        }
        (None, None, None) => {
            return Err(Failure::Invalid(
                "give DOMAIN[:PORT], --cert FILE, --quote FILE or --offline FILE".into(),
            ))
        }
    };

    // The app's image, when the context names it.
    let image = match &args.context {
        Some(path) => std::fs::read_to_string(absolute(path)?)
            .ok()
            .and_then(|text| Context::from_toml(path, &text).ok())
            .map(|context| context.config.docker),
        None => None,
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
    let signer_pem = match (&args.signer_key, &profile) {
        (Some(path), _) => Some(
            String::from_utf8(read(&absolute(path)?, "signer key")?)
                .map_err(|_| Failure::Invalid(format!("{} is not PEM", path.display())))?,
        ),
        (None, Some(profile)) => {
            eprintln!("using the signer key of {} (from `mse login`)", profile.url);
            Some(profile.signer_key.clone())
        }
        (None, None) => None,
    };
    let mr_signer = match &signer_pem {
        Some(pem) => Some(
            mse_attest::signer::mr_signer_from_pem(pem)
                .map_err(|e| Failure::Invalid(format!("the platform's signer key: {e}")))?,
        ),
        None => None,
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
        (None, Some(profile)) if args.simulation_ca.is_none() && bundle.is_none() => {
            Some(profile.simulation_revoked()?)
        }
        (None, _) => None,
    };
    let catalog = match &args.catalog {
        Some(path) => crate::catalog::from_file(&absolute(path)?)?,
        None if bundle.is_some() => crate::catalog::without_network()?,
        None => crate::catalog::for_local_use()?,
    };
    let hardware = hardware_policy(
        &catalog,
        signer_pem.as_deref(),
        image.as_deref(),
        args.test_roots.as_deref(),
    )?;
    let sgx_enclaves = hardware.sgx_enclaves_for(mr_enclave);
    let policy = Policy {
        mr_signer,
        mr_enclave,
        accepted_tcb: args.accept_tcb.clone(),
        allow_simulation,
        simulation_ca,
        simulation_revoked,
        trust: hardware.trust,
        references: hardware.references,
        references_refused: hardware.references_refused,
        snp_min_tcb: args.snp_min_tcb.or(hardware.snp_min_tcb),
        sgx_enclaves,
    };

    // A certificate without a quote (ACME, an owner's, or any other) is
    // checked against the evidence its server publishes, when it was
    // fetched from a domain.
    let no_quote = matches!(
        mse_attest::ratls::inspect(&cert_der),
        Err(mse_attest::AttestError::NoQuote)
    );
    let mut evidence_url = None;
    // What certified the quote, for --save-evidence.
    let mut used = None;
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
            let endorsements = match &bundle {
                Some(bundle) => bundle.endorsements(),
                None => endorsements_for(
                    &cert_der,
                    args.pccs_url.as_deref(),
                    args.collateral.as_deref(),
                    now,
                )?,
            };
            let verification = verify_certificate_with(
                &cert_der,
                &policy,
                endorsements.as_ref().map_err(String::as_str),
                now,
            );
            used = endorsements.ok();
            verification
        }
    };
    let certificate_issuer = mse_attest::ratls::issuer(&cert_der).ok();
    // Only a quote-less certificate that was not fetched is left unchecked.
    let no_quote = no_quote && evidence_url.is_none();
    if args.skip_fingerprint {
        for check in &mut verification.checks {
            if matches!(check.name, "mr_enclave" | "fingerprint") && check.status == Status::Skipped
            {
                check.detail =
                    "SKIPPED (--skip-fingerprint): the code the enclave runs is not checked".into();
            }
        }
    }

    // A verified RA-TLS certificate is its own trust anchor for curl; an
    // ACME or owner's certificate chains to a CA the user's tools know.
    if let Some(path) = &args.save_evidence {
        save_evidence(
            path,
            &verification,
            evidence_url.as_deref(),
            &source,
            now,
            &cert_der,
            used.as_ref(),
        )?;
    }
    let cert_path = if verification.verified && evidence_url.is_none() && bundle.is_none() {
        let path = absolute(&args.output)?;
        let pem = mse_attest::ratls::der_to_pem(&cert_der);
        std::fs::write(&path, pem).with_context(|| format!("cannot write {}", path.display()))?;
        Some(path)
    } else {
        None
    };

    if args.json {
        let json = JsonOutput {
            cert_path: cert_path.clone(),
            evidence_url: evidence_url.clone(),
            certificate_issuer: certificate_issuer.clone(),
            ..JsonOutput::new(&verification)
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
    verdict(&verification)
}

/// `--save-evidence`: the verified certificate and what certified its
/// quote, as an evidence bundle.
fn save_evidence(
    path: &Path,
    verification: &Verification,
    evidence_url: Option<&str>,
    source: &str,
    now: chrono::DateTime<Utc>,
    cert_der: &[u8],
    endorsements: Option<&Endorsements>,
) -> CmdResult {
    if let Some(url) = evidence_url {
        return Err(Failure::Invalid(format!(
            "--save-evidence keeps RA-TLS certificates; this certificate carries no quote (its \
             evidence is at {url}), so nothing was saved"
        )));
    }
    if !verification.verified {
        eprintln!(
            "the verification failed: no evidence saved to {}",
            path.display()
        );
        return Ok(());
    }
    let bundle = mse_attest::bundle::Bundle::new(source, now, cert_der, endorsements);
    let text = serde_json::to_vec_pretty(&bundle).context("cannot encode the evidence")?;
    let path = absolute(path)?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "evidence saved to {}: check it again with `mse verify --offline {}`",
        path.display(),
        path.display()
    );
    Ok(())
}

/// The chain that certifies the SEV-SNP report `bytes`, from AMD's KDS at
/// `kds_url`: its chip's VCEK at its reported TCB and its product's ASK and
/// ARK, kept under `$MSE_CONF_PATH/kds` (a chip's VCEK at one TCB never
/// changes; validity and signatures are checked when the report is).
fn kds_chain(bytes: &[u8], kds_url: &str, product: Option<&str>) -> Result<Endorsements, String> {
    use mse_attest::snp;
    let report = snp::Report::parse(bytes).map_err(|e| e.to_string())?;
    let product = product.or_else(|| snp::kds_product(&report)).ok_or(
        "the report does not name its processor (version 2, or an unknown CPU): give \
         --snp-product Milan, Genoa or Turin",
    )?;
    let (vcek_path, chain_path) = snp::kds_paths(&report, product).map_err(|e| e.to_string())?;
    let cache = conf_dir().join("kds");
    // (the bytes, where they are kept once they read as a chain).
    let get = |path: &str| -> Result<(Vec<u8>, Option<PathBuf>), String> {
        let url = format!("{}{path}", kds_url.trim_end_matches('/'));
        let key = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(url.as_bytes()));
        let cached = cache.join(key);
        if let Ok(bytes) = std::fs::read(&cached) {
            return Ok((bytes, None));
        }
        let response = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .and_then(|client| client.get(&url).send())
            .map_err(|e| format!("AMD's KDS {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("AMD's KDS {url}: {}", response.status()));
        }
        let body = response
            .bytes()
            .map_err(|e| format!("AMD's KDS {url}: {e}"))?
            .to_vec();
        Ok((body, Some(cached)))
    };
    let (vcek, vcek_to_keep) = get(&vcek_path)?;
    let (chain_pem, chain_to_keep) = get(&chain_path)?;
    let chain_pem = String::from_utf8(chain_pem)
        .map_err(|_| "AMD's KDS answered a chain that is not PEM".to_string())?;
    let chain = snp::Chain::from_kds(&vcek, &chain_pem).map_err(|e| format!("AMD's KDS: {e}"))?;
    // A cache that cannot be written only costs a fetch next time.
    for (path, bytes) in [
        (vcek_to_keep, vcek.as_slice()),
        (chain_to_keep, chain_pem.as_bytes()),
    ] {
        if let Some(path) = path {
            let _ = std::fs::create_dir_all(&cache).and_then(|()| std::fs::write(path, bytes));
        }
    }
    Endorsements::read(Tee::SevSnp, chain.to_pem().as_bytes()).map_err(|e| e.to_string())
}

/// `mse verify --quote FILE`: the evidence on its own.
fn run_quote(args: &Args, path: &Path, now: chrono::DateTime<Utc>) -> CmdResult {
    let bytes = mse_attest::hardware::decode(&read(&absolute(path)?, "evidence")?);
    let endorsements = match (mse_attest::hardware::kind(&bytes), &args.collateral) {
        (Err(_), _) => Err("no evidence to check".to_string()),
        (Ok(tee), Some(file)) => Ok(Endorsements::read(
            tee,
            &read(&absolute(file)?, "collateral")?,
        )
        .map_err(|e| Failure::Invalid(format!("{}: {e}", file.display())))?),
        (Ok(Tee::SevSnp), None) => kds_chain(
            &bytes,
            args.kds_url.as_deref().unwrap_or(DEFAULT_KDS_URL),
            args.snp_product.as_deref(),
        )
        .map_err(|e| {
            format!(
                "{e}; give --collateral FILE with the PEM certificates VCEK (or VLEK), ASK and ARK"
            )
        }),
        (Ok(_), None) => collateral_for_quote(
            Some(bytes.clone()),
            None,
            args.pccs_url.as_deref(),
            None,
            now,
        )?
        .map(|c| Endorsements::Dcap(Box::new(c))),
    };
    let (trust, _) = test_trust(args.test_roots.as_deref())?;
    let policy = Policy {
        accepted_tcb: args.accept_tcb.clone(),
        snp_min_tcb: args.snp_min_tcb,
        trust,
        ..Policy::default()
    };
    let verification = verify_raw(
        &bytes,
        &policy,
        endorsements.as_ref().map_err(String::as_str),
        now,
    );
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&JsonOutput::new(&verification))
                .context("cannot encode the report")?
        )?;
    } else {
        outln!("Verifying the evidence in {}", path.display())?;
        print_checks(&verification)?;
        print_measurements(&verification, true)?;
        if verification.verified {
            outln!(
                "Verified: genuine {} hardware signed this evidence{}.",
                tee_name(verification.tee),
                args.at
                    .map(|at| format!(" (as at {})", at.to_rfc3339()))
                    .unwrap_or_default()
            )?;
        }
    }
    verdict(&verification)
}

/// The exit of a verification: success exactly when it verified.
fn verdict(verification: &Verification) -> CmdResult {
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

/// The hardware a TEE kind runs on, in words.
fn tee_name(tee: Option<Tee>) -> &'static str {
    match tee {
        Some(Tee::Sgx) => "Intel SGX",
        Some(Tee::Tdx) => "Intel TDX",
        Some(Tee::SevSnp) => "AMD SEV-SNP",
        _ => "no",
    }
}

/// Each check, one a line, marked.
fn print_checks(v: &Verification) -> CmdResult {
    let width = v.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for check in &v.checks {
        let mark = match check.status {
            Status::Passed => "✓",
            Status::Failed => "✗",
            Status::Skipped => "-",
        };
        outln!("  {mark} {:<width$}  {}", check.name, check.detail)?;
    }
    Ok(())
}

/// MRENCLAVE and MRSIGNER, then (with `all`, or for a TDX or SEV-SNP
/// node) every other measurement, then the TCB.
fn print_measurements(v: &Verification, all: bool) -> CmdResult {
    if let Some(value) = &v.mr_enclave {
        outln!("  MRENCLAVE {value}")?;
    }
    if let Some(value) = &v.mr_signer {
        outln!("  MRSIGNER  {value}")?;
    }
    if all || matches!(v.tee, Some(Tee::Tdx | Tee::SevSnp)) {
        let width = v.measurements.keys().map(|k| k.len()).max().unwrap_or(0);
        let mut listed: Vec<(&&str, &String)> = v.measurements.iter().collect();
        let rank = |name: &str| {
            mse_attest::hardware::MEASUREMENT_NAMES
                .iter()
                .position(|n| *n == name)
                .unwrap_or(usize::MAX)
        };
        listed.sort_by_key(|(name, _)| rank(name));
        for (name, value) in listed {
            outln!("  {name:<width$}  {value}")?;
        }
    }
    if let Some(status) = &v.tcb_status {
        let advisories = if v.advisories.is_empty() {
            "none".to_string()
        } else {
            v.advisories.join(", ")
        };
        outln!("  TCB       {status} (advisories: {advisories})")?;
    }
    if let Some(components) = &v.tcb_components {
        outln!("  TCB components {components}")?;
    }
    if v.emulated {
        eprintln!(
            "{} EMULATED — the evidence chains to a test root, not to Intel's or AMD's: no \
             hardware protection",
            render::warning_prefix()
        );
    }
    Ok(())
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
    print_checks(&Verification {
        checks: shown.to_vec(),
        ..v.clone()
    })?;
    if !no_quote {
        print_measurements(v, false)?;
    }
    let skipped = v
        .checks
        .iter()
        .any(|c| matches!(c.name, "mr_enclave" | "fingerprint") && c.status == Status::Skipped);
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
        Some(Tee::Tdx) => "an Intel TDX trust domain",
        Some(Tee::SevSnp) => "an AMD SEV-SNP confidential VM",
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
    if v.verified && args.offline.is_some() {
        outln!("{verified}, offline: the saved evidence shows the app running in {tee}.")?;
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
