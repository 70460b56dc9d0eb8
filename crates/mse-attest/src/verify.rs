//! Verifying an RA-TLS certificate, or a certificate without a quote with the
//! node's evidence ([`crate::evidence`]): every check is run and reported,
//! and the certificate is verified only when all of them pass. Pure:
//! certificate bytes, expectations, collateral and "now" in; a report out.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::quote::Quote;
use crate::ratls;
use crate::simulation;

/// Which trusted execution environment produced a quote that verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tee {
    /// Intel SGX hardware, verified against Intel's collateral.
    Sgx,
    /// The simulation TEE: no hardware protection.
    Simulation,
}

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
    /// only), `debug_disabled`, `mr_signer`, `mr_enclave`, `quote_signature`
    /// or `tcb`.
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
}

impl Verification {
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
#[derive(Debug, Clone, Serialize)]
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
    fn result(&mut self, name: &'static str, result: Result<String, String>) {
        match result {
            Ok(detail) => self.push(name, Status::Passed, detail),
            Err(detail) => self.push(name, Status::Failed, detail),
        }
    }
}

/// The checks every quote gets after its binding (and any extra checks).
const QUOTE_CHECKS: [&str; 5] = [
    "debug_disabled",
    "mr_signer",
    "mr_enclave",
    "quote_signature",
    "tcb",
];

/// A check of the parsed quote: its detail when it passes, why when it fails.
pub(crate) type QuoteCheck<'a> = &'a dyn Fn(&Quote) -> Result<String, String>;

/// Parses the list of revoked quote keys (`{"revoked": ["<hex>", …]}`, as
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
/// SGX quotes, or why there is none (reported in the checks that need it).
/// The checks, in order: `quote_present`, `report_data_binding`,
/// `debug_disabled`, `mr_signer`, `mr_enclave`, `quote_signature`, `tcb`.
pub fn verify_certificate(
    cert_der: &[u8],
    policy: &Policy,
    collateral: Result<&Collateral, &str>,
    now: DateTime<Utc>,
) -> Verification {
    let inspected = ratls::inspect(cert_der).map_err(|e| e.to_string());
    let binding = |quote: &Quote| match &inspected {
        Ok(inspected) => ratls::check_binding(quote, &inspected.public_key)
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
        collateral,
        now,
    )
}

/// Every check of a quote, each reported: `quote_present` (`quote_bytes` is
/// there and parses), `report_data_binding` (`binding`), the `extra` checks
/// in order, then [`QUOTE_CHECKS`]. When there is no quote, every check after
/// `quote_present` fails with "no quote to check".
pub(crate) fn verify_quote(
    quote_bytes: Result<&[u8], String>,
    binding: QuoteCheck<'_>,
    extra: &[(&'static str, QuoteCheck<'_>)],
    policy: &Policy,
    collateral: Result<&Collateral, &str>,
    now: DateTime<Utc>,
) -> Verification {
    let mut report = Report { checks: Vec::new() };
    let mut out = Verification {
        verified: false,
        tee: None,
        mr_enclave: None,
        mr_signer: None,
        debug: None,
        tcb_status: None,
        advisories: Vec::new(),
        checks: Vec::new(),
    };
    let parsed = quote_bytes.and_then(|bytes| {
        Quote::parse(bytes)
            .map(|quote| (bytes, quote))
            .map_err(|e| e.to_string())
    });
    let (quote_bytes, quote) = match parsed {
        Ok(parsed) => parsed,
        Err(why) => {
            report.push("quote_present", Status::Failed, why);
            let names = std::iter::once("report_data_binding")
                .chain(extra.iter().map(|(name, _)| *name))
                .chain(QUOTE_CHECKS);
            for name in names {
                report.push(name, Status::Failed, "no quote to check");
            }
            out.checks = report.checks;
            return out;
        }
    };
    report.push(
        "quote_present",
        Status::Passed,
        format!("SGX quote v3, {} bytes", quote_bytes.len()),
    );
    report.result("report_data_binding", binding(&quote));
    for (name, check) in extra {
        report.result(name, check(&quote));
    }
    let body = &quote.body;
    out.mr_enclave = Some(hex::encode(body.mr_enclave()));
    out.mr_signer = Some(hex::encode(body.mr_signer()));
    out.debug = Some(body.debug());
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
    match policy.mr_enclave {
        None => report.push(
            "mr_enclave",
            Status::Skipped,
            "no fingerprint given: the code the enclave runs is not checked",
        ),
        Some(expected) => report.result(
            "mr_enclave",
            if expected == body.mr_enclave() {
                Ok(format!(
                    "MRENCLAVE {} is the expected fingerprint",
                    hex::encode(expected)
                ))
            } else {
                Err(format!(
                    "MRENCLAVE {} is not the expected fingerprint {}",
                    hex::encode(body.mr_enclave()),
                    hex::encode(expected)
                ))
            },
        ),
    }

    signature_and_tcb(
        &quote,
        quote_bytes,
        policy,
        collateral,
        now,
        &mut out,
        &mut report,
    );
    out.checks = report.checks;
    out.verified = out.tee.is_some() && out.checks.iter().all(|c| c.status != Status::Failed);
    out
}

/// The `quote_signature` and `tcb` checks: the simulation CA for simulated
/// quotes (when allowed), Intel's chain and collateral otherwise.
fn signature_and_tcb(
    quote: &Quote,
    quote_bytes: &[u8],
    policy: &Policy,
    collateral: Result<&Collateral, &str>,
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
    let collateral = match collateral {
        Ok(collateral) => collateral,
        Err(why) => return report.unverified(why),
    };
    let outcome = match crate::dcap::verify(quote_bytes, collateral, &crate::dcap::Root::Intel, now)
    {
        Ok(outcome) => outcome,
        Err(why) => return report.signature_failed(why),
    };
    out.tee = Some(Tee::Sgx);
    report.push(
        "quote_signature",
        Status::Passed,
        "the quote's signature chain verifies up to Intel's SGX root CA",
    );
    let advisories = if outcome.advisories.is_empty() {
        "no advisories".to_string()
    } else {
        format!("advisories {}", outcome.advisories.join(", "))
    };
    report.result(
        "tcb",
        if policy.accepts(&outcome.status) {
            Ok(format!(
                "TCB status {} accepted; {advisories}",
                outcome.status
            ))
        } else {
            Err(format!(
                "TCB status {} is not accepted (only UpToDate unless named); {advisories}",
                outcome.status
            ))
        },
    );
    out.tcb_status = Some(outcome.status);
    out.advisories = outcome.advisories;
}
