//! Verifying an RA-TLS certificate, or a certificate without a quote with the
//! node's evidence ([`crate::evidence`]): every check is run and reported,
//! and the certificate is verified only when all of them pass. Pure:
//! certificate bytes, expectations, collateral and "now" in; a report out.

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use crate::hardware::Endorsements;
use crate::quote::Quote;
use crate::ratls;
use crate::simulation;

/// Which trusted execution environment produced the evidence that verified:
/// the kinds every part of the platform names the same way.
pub use mse_api::tee::Tee;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The check passed.
    Passed,
    /// The check failed or could not be run.
    Failed,
    /// The check was not asked for.
    Skipped,
}

/// One named check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `quote_present`, `report_data_binding`, `evidence_inputs` (evidence
    /// only), `debug_disabled`, then for SGX `mr_signer` and `mr_enclave`,
    /// for TDX and SEV-SNP `runtime_measurements` and `fingerprint`, then
    /// `quote_signature` and `tcb`.
    pub name: &'static str,
    /// Its outcome.
    pub status: Status,
    /// What was found, or why it failed.
    pub detail: String,
}

/// What the verifier expects and accepts.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// MRSIGNER of the platform's enclave-signing key.
    pub mr_signer: Option<[u8; 32]>,
    /// The expected fingerprint (MRENCLAVE); `None` skips that check.
    pub mr_enclave: Option<[u8; 32]>,
    /// TCB statuses accepted besides `UpToDate`.
    pub accepted_tcb: Vec<String>,
    /// Whether a simulated quote may pass.
    pub allow_simulation: bool,
    /// The platform's simulation CA (DER), needed to verify simulated quotes.
    pub simulation_ca: Option<Vec<u8>>,
    /// The quote keys the platform revoked (SHA-256 of each PCK's
    /// SubjectPublicKeyInfo DER, see [`simulation::quote_key_id`]), as its
    /// `GET /simulation-revoked` lists them; `None` (the list is unknown)
    /// refuses every simulated quote.
    pub simulation_revoked: Option<Vec<[u8; 32]>>,
    /// The roots hardware evidence must chain to: the vendors' unless test
    /// roots are named, and then every verdict is marked emulated.
    pub trust: crate::hardware::Trust,
    /// The trusted runtimes' reference measurements for TDX and SEV-SNP
    /// evidence (`docs/attestation.md`), as the catalog publishes them: the
    /// evidence passes `runtime_measurements` when it has every measurement
    /// of one reference of its TEE.
    pub references: Vec<Reference>,
    /// Why the catalog's references could not be used (their signature is
    /// missing or not the platform's), said by `runtime_measurements`.
    pub references_refused: Option<String>,
    /// SEV-SNP: the lowest TCB components accepted as `UpToDate`.
    pub snp_min_tcb: Option<crate::snp::Tcb>,
    /// SGX hardware: the enclaves the catalog publishes for the app's image
    /// (manifest template and layout per enclave size); MRENCLAVE must be
    /// the one of the enclave built for the expected fingerprint.
    pub sgx_enclaves: Vec<EnclaveReference>,
}

/// An image's SGX enclave of one size, as the catalog publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveReference {
    /// What names it in reports (`sgx reference of IMAGE (4G)`).
    pub name: String,
    /// The manifest template and the layout around it.
    pub enclave: crate::enclave::SgxEnclave,
    /// A replay already made, kept by the caller: (fingerprint, MRENCLAVE).
    /// A replay reads every page of the enclave (about 12 ms a GiB), so a
    /// verifier that checks an app again need not redo it.
    pub replayed: Option<([u8; 32], [u8; 32])>,
}

impl EnclaveReference {
    /// MRENCLAVE of the enclave built for `fingerprint`: the kept replay
    /// when it is for that fingerprint, else a new one.
    pub fn mr_enclave(
        &self,
        fingerprint: &[u8; 32],
    ) -> Result<[u8; 32], crate::enclave::LayoutError> {
        match self.replayed {
            Some((kept_for, mr_enclave)) if kept_for == *fingerprint => Ok(mr_enclave),
            _ => self.enclave.mr_enclave(fingerprint),
        }
    }
}

/// The measurements a trusted runtime has on one TEE, by their usual names
/// (`mr_td`, `rtmr0`, … for TDX; `measurement`, `policy` for SEV-SNP), hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The TEE these measurements are of.
    pub tee: Tee,
    /// What names this reference in reports (`tdx reference of IMAGE`).
    pub name: String,
    /// Name and expected value of each measurement.
    pub measurements: Vec<(String, String)>,
}

impl Verification {
    /// What hardware evidence says of itself: its debug attribute and every
    /// measurement by name (MRENCLAVE and MRSIGNER in their own fields).
    fn record(&mut self, parsed: &crate::hardware::Parsed) {
        self.debug = Some(parsed.debug);
        for (name, value) in &parsed.measurements {
            match *name {
                "mr_enclave" => self.mr_enclave = Some(value.clone()),
                "mr_signer" => self.mr_signer = Some(value.clone()),
                _ => {
                    self.measurements.insert(name, value.clone());
                }
            }
        }
    }

    /// The checks that failed, each as `name: detail`.
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Failed)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }
}

impl Policy {
    /// True when a TCB status passes: `UpToDate`, or one the user named.
    pub fn accepts(&self, status: &str) -> bool {
        status == "UpToDate" || self.accepted_tcb.iter().any(|s| s == status)
    }
}

/// The verification report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// True exactly when every check passed (or was skipped) and a TEE verified.
    pub verified: bool,
    /// The TEE whose signature verified.
    pub tee: Option<Tee>,
    /// MRENCLAVE, hex.
    pub mr_enclave: Option<String>,
    /// MRSIGNER, hex.
    pub mr_signer: Option<String>,
    /// The DEBUG attribute.
    pub debug: Option<bool>,
    /// TCB status from the collateral (`Simulation` for the simulation TEE).
    pub tcb_status: Option<String>,
    /// Intel security advisories that apply.
    pub advisories: Vec<String>,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// The evidence verified under a test root: emulated hardware, no
    /// protection.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub emulated: bool,
    /// SEV-SNP: the reported TCB's components.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcb_components: Option<String>,
    /// Every other measurement of the evidence by its usual name (`mr_td`,
    /// `rtmr0`…`rtmr3`, `measurement`, `host_data`, `report_data`, …).
    #[serde(flatten)]
    pub measurements: std::collections::BTreeMap<&'static str, String>,
}

/// Collateral for SGX quotes, as dcap-qvl reads it.
pub type Collateral = dcap_qvl::QuoteCollateralV3;

struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            status,
            detail: detail.into(),
        });
    }
    /// Both `quote_signature` and `tcb` failed for the same reason.
    fn unverified(&mut self, why: &str) {
        self.push("quote_signature", Status::Failed, why);
        self.push("tcb", Status::Failed, why);
    }
    /// The signature failed, so the TCB was not evaluated.
    fn signature_failed(&mut self, why: String) {
        self.push("quote_signature", Status::Failed, why);
        self.push(
            "tcb",
            Status::Failed,
            "not evaluated: the quote signature failed",
        );
    }
    /// The report's checks in `out`, verified exactly when a TEE verified
    /// and no check failed.
    fn finish(self, mut out: Verification) -> Verification {
        out.checks = self.checks;
        out.verified = out.tee.is_some() && out.checks.iter().all(|c| c.status != Status::Failed);
        out
    }
    fn result(&mut self, name: &'static str, result: Result<String, String>) {
        match result {
            Ok(detail) => self.push(name, Status::Passed, detail),
            Err(detail) => self.push(name, Status::Failed, detail),
        }
    }

    /// `result` when there is one, skipped saying `why` otherwise.
    fn push_result(
        &mut self,
        name: &'static str,
        result: Option<Result<String, String>>,
        why: &str,
    ) {
        match result {
            Some(result) => self.result(name, result),
            None => self.push(name, Status::Skipped, why),
        }
    }
}

/// What the checks of a piece of evidence read of it, whatever its TEE.
#[derive(Debug, Clone)]
pub(crate) struct Claims {
    /// The 64 bytes of REPORTDATA (REPORT_DATA on SEV-SNP).
    pub report_data: [u8; 64],
    /// The app's fingerprint as the evidence carries it: MRENCLAVE on SGX
    /// (and in simulation), REPORTDATA[32..64] on TDX and SEV-SNP.
    pub fingerprint: [u8; 32],
    /// Where the fingerprint is: `MRENCLAVE` or `REPORTDATA[32..64]`.
    pub fingerprint_at: &'static str,
    /// SGX hardware: `fingerprint` is MRENCLAVE, the measurement of the
    /// enclave built around the app's manifest, not the fingerprint itself
    /// (see [`enclave_mr_enclave`]).
    pub measured_enclave: bool,
}

/// A check of the evidence: its detail when it passes, why when it fails.
pub(crate) type QuoteCheck<'a> = &'a dyn Fn(&Claims) -> Result<String, String>;

/// Evidence parsed for verification.
enum Parsed {
    /// An SGX quote: Intel's or the simulation's.
    Sgx(Box<Quote>),
    /// A TDX quote or an SEV-SNP report.
    Vm(crate::hardware::Parsed),
}

impl Parsed {
    fn read(bytes: &[u8]) -> Result<Parsed, String> {
        match crate::hardware::kind(bytes)? {
            Tee::Sgx => Quote::parse(bytes)
                .map(|quote| Parsed::Sgx(Box::new(quote)))
                .map_err(|e| e.to_string()),
            _ => crate::hardware::parse(bytes).map(Parsed::Vm),
        }
    }

    fn claims(&self) -> Claims {
        match self {
            Parsed::Sgx(quote) => Claims {
                report_data: quote.body.report_data(),
                fingerprint: quote.body.mr_enclave(),
                fingerprint_at: "MRENCLAVE",
                measured_enclave: !simulation::looks_simulated(quote),
            },
            Parsed::Vm(parsed) => {
                let mut fingerprint = [0; 32];
                fingerprint.copy_from_slice(&parsed.report_data[32..]);
                Claims {
                    report_data: parsed.report_data,
                    fingerprint,
                    fingerprint_at: "REPORTDATA[32..64]",
                    measured_enclave: false,
                }
            }
        }
    }
}

/// Parses the list of revoked quote keys/// Parses the list of revoked quote keys (`{"revoked": ["<hex>", …]}`, as
/// `GET /simulation-revoked` answers).
pub fn parse_revoked(json: &[u8]) -> Result<Vec<[u8; 32]>, String> {
    #[derive(serde::Deserialize)]
    struct Revoked {
        revoked: Vec<String>,
    }
    let list: Revoked = serde_json::from_slice(json).map_err(|e| {
        format!("not a list of revoked quote keys ({{\"revoked\": [HEX, …]}}): {e}")
    })?;
    list.revoked
        .iter()
        .map(|text| {
            let mut id = [0u8; 32];
            hex::decode_to_slice(text, &mut id)
                .map_err(|_| format!("revoked quote key `{text}` is not 64 hex digits"))?;
            Ok(id)
        })
        .collect()
}

/// Why collateral is missing, when the caller was given none.
pub const NO_COLLATERAL: &str = "no collateral: give a PCCS URL or a collateral file";

/// Verifies an RA-TLS certificate (DER). `collateral` is the collateral for
/// SGX and TDX quotes, or why there is none (reported in the checks that
/// need it); [`verify_certificate_with`] takes an SEV-SNP chain too.
pub fn verify_certificate(
    cert_der: &[u8],
    policy: &Policy,
    collateral: Result<&Collateral, &str>,
    now: DateTime<Utc>,
) -> Verification {
    let endorsements = collateral.map(|c| Endorsements::Dcap(Box::new(c.clone())));
    verify_certificate_with(cert_der, policy, endorsements.as_ref().map_err(|e| *e), now)
}

/// Verifies an RA-TLS certificate (DER) whose quote (SGX, TDX) or report
/// (SEV-SNP) is certified by `endorsements`, or why there are none. The
/// checks, in order: `quote_present`, `report_data_binding`,
/// `debug_disabled`, then for SGX `mr_signer` and `mr_enclave`, for TDX and
/// SEV-SNP `runtime_measurements` and `fingerprint`, then `quote_signature`
/// and `tcb`.
pub fn verify_certificate_with(
    cert_der: &[u8],
    policy: &Policy,
    endorsements: Result<&Endorsements, &str>,
    now: DateTime<Utc>,
) -> Verification {
    let inspected = ratls::inspect(cert_der).map_err(|e| e.to_string());
    let binding = |claims: &Claims| match &inspected {
        Ok(inspected) => ratls::check_binding(&claims.report_data, &inspected.public_key)
            .map(|_| "REPORTDATA binds the certificate's public key".to_string())
            .map_err(|e| e.to_string()),
        Err(why) => Err(why.clone()),
    };
    verify_quote(
        inspected
            .as_ref()
            .map(|i| &i.quote_bytes[..])
            .map_err(Clone::clone),
        &binding,
        &[],
        policy,
        endorsements,
        now,
    )
}

/// The checks of an SGX quote after its binding and the extra ones (a TDX
/// quote or an SEV-SNP report has `runtime_measurements` and `fingerprint`
/// in place of `mr_signer` and `mr_enclave`).
const SGX_CHECKS: [&str; 5] = [
    "debug_disabled",
    "mr_signer",
    "mr_enclave",
    "quote_signature",
    "tcb",
];

/// Every check of a piece of evidence, each reported: `quote_present`
/// (`quote_bytes` is there and parses), `report_data_binding` (`binding`),
/// the `extra` checks in order, then those of its TEE ([`SGX_CHECKS`]). When
/// there is no evidence, every check after `quote_present` fails with "no
/// quote to check".
pub(crate) fn verify_quote(
    quote_bytes: Result<&[u8], String>,
    binding: QuoteCheck<'_>,
    extra: &[(&'static str, QuoteCheck<'_>)],
    policy: &Policy,
    endorsements: Result<&Endorsements, &str>,
    now: DateTime<Utc>,
) -> Verification {
    let mut report = Report { checks: Vec::new() };
    let mut out = Verification::default();
    let parsed = quote_bytes.and_then(|bytes| Parsed::read(bytes).map(|parsed| (bytes, parsed)));
    let (quote_bytes, parsed) = match parsed {
        Ok(parsed) => parsed,
        Err(why) => {
            report.push("quote_present", Status::Failed, why);
            let names = std::iter::once("report_data_binding")
                .chain(extra.iter().map(|(name, _)| *name))
                .chain(SGX_CHECKS);
            for name in names {
                report.push(name, Status::Failed, "no quote to check");
            }
            out.checks = report.checks;
            return out;
        }
    };
    let claims = parsed.claims();
    let described = match &parsed {
        Parsed::Sgx(_) => "SGX quote v3".to_string(),
        Parsed::Vm(vm) => vm.describe(),
    };
    report.push(
        "quote_present",
        Status::Passed,
        format!("{described}, {} bytes", quote_bytes.len()),
    );
    report.result("report_data_binding", binding(&claims));
    for (name, check) in extra {
        report.result(name, check(&claims));
    }
    match &parsed {
        Parsed::Sgx(quote) => {
            sgx_checks(quote, policy, &mut out, &mut report);
            signature_and_tcb(
                quote,
                quote_bytes,
                policy,
                endorsements,
                now,
                &mut out,
                &mut report,
            );
        }
        Parsed::Vm(vm) => {
            vm_checks(vm, &claims, policy, &mut out, &mut report);
            hardware_checks(
                quote_bytes,
                vm,
                policy,
                endorsements,
                now,
                &mut out,
                &mut report,
            );
        }
    }
    report.finish(out)
}

/// `debug_disabled`, `mr_signer` and `mr_enclave` of an SGX quote.
fn sgx_checks(quote: &Quote, policy: &Policy, out: &mut Verification, report: &mut Report) {
    let body = &quote.body;
    out.mr_enclave = Some(hex::encode(body.mr_enclave()));
    out.mr_signer = Some(hex::encode(body.mr_signer()));
    out.debug = Some(body.debug());
    out.measurements
        .insert("isv_prod_id", body.isv_prod_id().to_string());
    out.measurements
        .insert("isv_svn", body.isv_svn().to_string());
    out.measurements
        .insert("report_data", hex::encode(body.report_data()));
    report.result(
        "debug_disabled",
        if body.debug() {
            Err("the enclave runs in DEBUG mode: its memory is readable by the host".into())
        } else {
            Ok("the enclave is not in debug mode".into())
        },
    );
    report.result(
        "mr_signer",
        match policy.mr_signer {
            None => Err("no expected MRSIGNER: give the platform's signer key".into()),
            Some(expected) if expected == body.mr_signer() => {
                Ok(format!("MRSIGNER {}", hex::encode(expected)))
            }
            Some(expected) => Err(format!(
                "MRSIGNER {} is not the platform's {}",
                hex::encode(body.mr_signer()),
                hex::encode(expected)
            )),
        },
    );
    report.push_result(
        "mr_enclave",
        policy.mr_enclave.map(|expected| {
            if simulation::looks_simulated(quote) {
                simulated_mr_enclave(body.mr_enclave(), expected)
            } else {
                enclave_mr_enclave(body.mr_enclave(), expected, policy)
            }
        }),
        "no fingerprint given: the code the enclave runs is not checked",
    );
}

/// In simulation MRENCLAVE is the fingerprint itself.
fn simulated_mr_enclave(found: [u8; 32], expected: [u8; 32]) -> Result<String, String> {
    if expected == found {
        Ok(format!(
            "MRENCLAVE {} is the expected fingerprint",
            hex::encode(expected)
        ))
    } else {
        Err(format!(
            "MRENCLAVE {} is not the expected fingerprint {}",
            hex::encode(found),
            hex::encode(expected)
        ))
    }
}

/// On SGX hardware MRENCLAVE measures the enclave Gramine built around
/// the app's manifest, which holds the fingerprint: it must be the
/// measurement replayed from one of the catalog's enclaves of the image.
pub(crate) fn enclave_mr_enclave(
    found: [u8; 32],
    fingerprint: [u8; 32],
    policy: &Policy,
) -> Result<String, String> {
    if policy.sgx_enclaves.is_empty() {
        return Err(policy.references_refused.clone().unwrap_or_else(|| {
            "no SGX enclave of the app's image in the catalog used: an enclave's MRENCLAVE \
             measures its manifest, which the catalog publishes (docs/attestation.md; an app \
             user gives the platform's with `mse verify --catalog`)"
                .into()
        }));
    }
    let mut differences = Vec::new();
    for reference in &policy.sgx_enclaves {
        match reference.mr_enclave(&fingerprint) {
            Ok(expected) if expected == found => {
                return Ok(format!(
                    "MRENCLAVE {} is the enclave of fingerprint {} ({})",
                    hex::encode(found),
                    hex::encode(fingerprint),
                    reference.name
                ))
            }
            Ok(expected) => differences.push(format!(
                "not the {}, whose enclave for this fingerprint is {}",
                reference.name,
                hex::encode(expected)
            )),
            Err(e) => differences.push(format!("the {} cannot be replayed: {e}", reference.name)),
        }
    }
    Err(format!(
        "MRENCLAVE {} is not the enclave of fingerprint {}: {}",
        hex::encode(found),
        hex::encode(fingerprint),
        differences.join(" | ")
    ))
}

/// `debug_disabled`, `runtime_measurements` and `fingerprint` of a TDX
/// quote or an SEV-SNP report.
fn vm_checks(
    vm: &crate::hardware::Parsed,
    claims: &Claims,
    policy: &Policy,
    out: &mut Verification,
    report: &mut Report,
) {
    out.record(vm);
    report.result("debug_disabled", vm.debug_off());
    report.result(
        "runtime_measurements",
        match &policy.references_refused {
            Some(why) if !policy.references.iter().any(|r| r.tee == vm.tee) => Err(why.clone()),
            _ => runtime_measurements(vm, &policy.references),
        },
    );
    match policy.mr_enclave {
        None => report.push(
            "fingerprint",
            Status::Skipped,
            "no fingerprint given: the app the runtime serves is not checked",
        ),
        Some(expected) => report.result(
            "fingerprint",
            if expected == claims.fingerprint {
                Ok(format!(
                    "{} {} is the expected fingerprint",
                    claims.fingerprint_at,
                    hex::encode(expected)
                ))
            } else {
                Err(format!(
                    "{} {} is not the expected fingerprint {}",
                    claims.fingerprint_at,
                    hex::encode(claims.fingerprint),
                    hex::encode(expected)
                ))
            },
        ),
    }
}

/// The `runtime_measurements` check: one reference of the evidence's TEE
/// whose every measurement the evidence has.
fn runtime_measurements(
    vm: &crate::hardware::Parsed,
    references: &[Reference],
) -> Result<String, String> {
    let mut differences = Vec::new();
    for reference in references.iter().filter(|r| r.tee == vm.tee) {
        if reference.measurements.is_empty() {
            differences.push(format!("the {} names no measurement", reference.name));
            continue;
        }
        let differ: Vec<String> = reference
            .measurements
            .iter()
            .filter_map(|(name, expected)| match vm.measurement(name) {
                Some(found) if found.eq_ignore_ascii_case(expected) => None,
                Some(found) => Some(format!("{name} is {found}, expected {expected}")),
                None => Some(format!("{name} is not in the evidence")),
            })
            .collect();
        if differ.is_empty() {
            let names: Vec<&str> = reference
                .measurements
                .iter()
                .map(|(n, _)| n.as_str())
                .collect();
            return Ok(format!("{} equal the {}", names.join(", "), reference.name));
        }
        differences.push(format!("not the {}: {}", reference.name, differ.join("; ")));
    }
    if differences.is_empty() {
        Err(format!(
            "no reference measurements of a runtime on {}: the catalog used publishes none \
             (docs/attestation.md; an app user gives the platform's with `mse verify --catalog`)",
            vm.tee
        ))
    } else {
        Err(differences.join(" | "))
    }
}

/// The `quote_signature` and `tcb` checks of hardware evidence, under the
/// policy's roots, accepted statuses and SEV-SNP minimum TCB.
fn hardware_checks(
    bytes: &[u8],
    parsed: &crate::hardware::Parsed,
    policy: &Policy,
    endorsements: Result<&Endorsements, &str>,
    now: DateTime<Utc>,
    out: &mut Verification,
    report: &mut Report,
) {
    let verdict = crate::hardware::verify(
        bytes,
        parsed,
        endorsements,
        &policy.trust,
        &|status: &str| policy.accepts(status),
        policy.snp_min_tcb.as_ref(),
        now,
    );
    record_verdict(parsed.tee, verdict, out, report);
}

/// Records a hardware verdict as the `quote_signature` and `tcb` checks.
fn record_verdict(
    tee: Tee,
    verdict: crate::hardware::Verdict,
    out: &mut Verification,
    report: &mut Report,
) {
    if verdict.signature.is_ok() {
        out.tee = Some(tee);
    }
    out.emulated = verdict.emulated;
    out.tcb_status = verdict.tcb_status;
    out.advisories = verdict.advisories;
    out.tcb_components = verdict.tcb_components;
    report.result("quote_signature", verdict.signature);
    report.result("tcb", verdict.tcb);
}

/// The `quote_signature` and `tcb` checks of an SGX quote: the simulation
/// CA for simulated quotes (when allowed), Intel's chain and collateral
/// otherwise.
fn signature_and_tcb(
    quote: &Quote,
    quote_bytes: &[u8],
    policy: &Policy,
    endorsements: Result<&Endorsements, &str>,
    now: DateTime<Utc>,
    out: &mut Verification,
    report: &mut Report,
) {
    if simulation::looks_simulated(quote) {
        if !policy.allow_simulation {
            return report.unverified(
                "simulated quote (simulation — no hardware protection): refused unless simulation is allowed",
            );
        }
        let Some(ca) = &policy.simulation_ca else {
            return report
                .unverified("simulated quote, but the platform's simulation CA is unknown");
        };
        let Some(revoked) = &policy.simulation_revoked else {
            return report.unverified(
                "simulated quote, but the platform's list of revoked quote keys is unknown \
                 (GET /simulation-revoked)",
            );
        };
        return match simulation::verify_quote(quote, ca, revoked, now) {
            Ok(()) => {
                out.tee = Some(Tee::Simulation);
                out.tcb_status = Some("Simulation".into());
                report.push(
                    "quote_signature",
                    Status::Passed,
                    "simulation — no hardware protection: signed under the platform's simulation CA",
                );
                report.push(
                    "tcb",
                    Status::Passed,
                    "simulation — no hardware protection: no TCB to evaluate",
                );
            }
            Err(why) => report.signature_failed(why),
        };
    }
    let parsed = match crate::hardware::parse(quote_bytes) {
        Ok(parsed) => parsed,
        Err(why) => return report.signature_failed(why),
    };
    hardware_checks(quote_bytes, &parsed, policy, endorsements, now, out, report);
}

/// Verifies a piece of evidence on its own (an SGX or TDX quote, an
/// SEV-SNP report, as [`crate::hardware::decode`] reads it): that the
/// vendor's hardware signed it and its TCB, with no certificate, app or
/// runtime to compare it with. The checks: `quote_present`,
/// `debug_disabled`, `quote_signature`, `tcb`; every measurement is
/// reported by its usual name.
pub fn verify_raw(
    bytes: &[u8],
    policy: &Policy,
    endorsements: Result<&Endorsements, &str>,
    now: DateTime<Utc>,
) -> Verification {
    let mut report = Report { checks: Vec::new() };
    let mut out = Verification::default();
    let parsed = match crate::hardware::parse(bytes) {
        Ok(parsed) => parsed,
        Err(why) => {
            report.push("quote_present", Status::Failed, why);
            for name in ["debug_disabled", "quote_signature", "tcb"] {
                report.push(name, Status::Failed, "no quote to check");
            }
            out.checks = report.checks;
            return out;
        }
    };
    report.push(
        "quote_present",
        Status::Passed,
        format!("{}, {} bytes", parsed.describe(), bytes.len()),
    );
    out.record(&parsed);
    report.result("debug_disabled", parsed.debug_off());
    hardware_checks(
        bytes,
        &parsed,
        policy,
        endorsements,
        now,
        &mut out,
        &mut report,
    );
    report.finish(out)
}
