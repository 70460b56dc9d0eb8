//! Evidence of a hardware TEE on its own: an SGX quote (v3), a TDX quote
//! (v4 or v5) or an SEV-SNP attestation report. [`parse`] tells the kind
//! from the bytes and reads every measurement by its usual name; [`verify`]
//! checks that the vendor's hardware signed it (Intel's chain and
//! collateral with dcap-qvl, or AMD's VCEK → ASK → ARK) and evaluates its
//! TCB. Pure: bytes, endorsements, trust and "now" in.
//!
//! Which roots are trusted is [`Trust`]: the vendors' real roots, or test
//! roots named explicitly, whose verdicts are marked emulated.

use chrono::{DateTime, Utc};

use crate::dcap::{self, DcapTee};
use crate::snp;
use crate::verify::Tee;

/// What a piece of evidence says, read without verifying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// SGX, TDX or SEV-SNP.
    pub tee: Tee,
    /// The quote's header version, or the report's version.
    pub version: u32,
    /// The 64 bytes the TEE's software bound into the evidence.
    pub report_data: [u8; 64],
    /// The host can read the TEE's memory: SGX and TDX debug attributes,
    /// the SNP guest policy's debug bit.
    pub debug: bool,
    /// SEV-SNP: the VMPL the report was requested at (0 is the guest's most
    /// privileged level).
    pub vmpl: Option<u32>,
    /// TD 1.5: the TD is bound to service TDs (a non-zero MRSERVICETD).
    pub service_td_bound: bool,
    /// Every measurement by its usual name, hex (numbers in decimal), in the
    /// order the TEE's documentation lists them; `report_data` last.
    pub measurements: Vec<(&'static str, String)>,
}

/// Every measurement name, in the order reports list them.
pub const MEASUREMENT_NAMES: [&str; 27] = [
    "mr_enclave",
    "mr_signer",
    "isv_prod_id",
    "isv_svn",
    "mr_td",
    "rtmr0",
    "rtmr1",
    "rtmr2",
    "rtmr3",
    "mr_config_id",
    "mr_owner",
    "mr_owner_config",
    "mr_service_td",
    "td_attributes",
    "tee_tcb_svn",
    "measurement",
    "host_data",
    "policy",
    "vmpl",
    "guest_svn",
    "family_id",
    "image_id",
    "id_key_digest",
    "author_key_digest",
    "reported_tcb",
    "chip_id",
    "report_data",
];

impl Parsed {
    /// The measurement called `name`, if the evidence has one.
    pub fn measurement(&self, name: &str) -> Option<&str> {
        self.measurements
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value.as_str())
    }

    /// The `debug_disabled` check: nothing lets the host read the TEE's
    /// memory (SGX and TDX debug attributes, the SNP policy's debug bit),
    /// an SNP report comes from VMPL 0, a TD is bound to no service TD.
    pub fn debug_off(&self) -> Result<String, String> {
        if self.debug {
            return Err(match self.tee {
                Tee::SevSnp => {
                    "the guest policy lets the host debug the VM: its memory is readable"
                }
                Tee::Tdx => "the TD runs in DEBUG mode: its memory is readable by the host",
                _ => "the enclave runs in DEBUG mode: its memory is readable by the host",
            }
            .to_string());
        }
        if let Some(vmpl) = self.vmpl.filter(|vmpl| *vmpl != 0) {
            return Err(format!(
                "the report was requested at VMPL {vmpl}, not at the guest's most privileged \
                 level (0)"
            ));
        }
        if self.service_td_bound {
            return Err("the TD is bound to service TDs (MRSERVICETD is not zero)".to_string());
        }
        Ok(match self.tee {
            Tee::SevSnp => "the guest policy forbids debugging; VMPL 0",
            Tee::Tdx => "the TD is not in debug mode",
            _ => "the enclave is not in debug mode",
        }
        .to_string())
    }

    /// A one-line name of the evidence: `TDX quote v4`.
    pub fn describe(&self) -> String {
        match self.tee {
            Tee::SevSnp => format!("SEV-SNP report v{}", self.version),
            Tee::Tdx => format!("TDX quote v{}", self.version),
            _ => format!("SGX quote v{}", self.version),
        }
    }
}

/// Evidence given as a file or a body: binary as is, or hex text
/// (whitespace ignored, an optional `0x`).
pub fn decode(input: &[u8]) -> Vec<u8> {
    let text: Vec<u8> = input
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let text = text.strip_prefix(b"0x").unwrap_or(&text);
    if !text.is_empty() && text.len() % 2 == 0 && text.iter().all(u8::is_ascii_hexdigit) {
        if let Ok(bytes) = hex::decode(text) {
            return bytes;
        }
    }
    input.to_vec()
}

/// The kind of evidence, from its first bytes: a DCAP quote starts with its
/// version (u16: 3 for SGX, 4 or 5 for TDX) and attestation key type 2; an
/// SEV-SNP report with its version (u32: 2, 3 or 5) and is 1184 bytes.
pub fn kind(bytes: &[u8]) -> Result<Tee, String> {
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    match (u16_at(0), u16_at(2)) {
        (Some(3), Some(2)) => Ok(Tee::Sgx),
        (Some(4 | 5), Some(2)) => Ok(Tee::Tdx),
        (Some(2 | 3 | 5), Some(0)) if bytes.len() == snp::REPORT_LEN => Ok(Tee::SevSnp),
        _ if bytes.is_empty() => Err("the evidence is empty".into()),
        _ => Err(format!(
            "{} bytes that are neither an SGX quote (version 3), a TDX quote (version 4 or 5) \
             nor an SEV-SNP report ({} bytes, version 2, 3 or 5)",
            bytes.len(),
            snp::REPORT_LEN
        )),
    }
}

/// Parses SGX, TDX or SEV-SNP evidence without verifying it.
pub fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    match kind(bytes)? {
        Tee::SevSnp => snp::Report::parse(bytes)
            .map(|report| parsed_snp(&report))
            .map_err(|e| e.to_string()),
        _ => {
            let (tee, version, m) = dcap::inspect(bytes).map_err(|e| e.to_string())?;
            Ok(parsed_dcap(tee, version, &m))
        }
    }
}

fn parsed_dcap(tee: DcapTee, version: u16, m: &dcap::Measurements) -> Parsed {
    let mut measurements = Vec::new();
    let mut put = |name: &'static str, value: Option<&[u8]>| {
        if let Some(value) = value {
            measurements.push((name, hex::encode(value)));
        }
    };
    put("mr_enclave", m.mr_enclave.as_ref().map(|v| &v[..]));
    put("mr_signer", m.mr_signer.as_ref().map(|v| &v[..]));
    put("mr_td", m.mr_td.as_ref().map(|v| &v[..]));
    put("rtmr0", m.rtmr0.as_ref().map(|v| &v[..]));
    put("rtmr1", m.rtmr1.as_ref().map(|v| &v[..]));
    put("rtmr2", m.rtmr2.as_ref().map(|v| &v[..]));
    put("rtmr3", m.rtmr3.as_ref().map(|v| &v[..]));
    put("mr_config_id", m.mr_config_id.as_ref().map(|v| &v[..]));
    put("mr_owner", m.mr_owner.as_ref().map(|v| &v[..]));
    put(
        "mr_owner_config",
        m.mr_owner_config.as_ref().map(|v| &v[..]),
    );
    put("mr_service_td", m.mr_service_td.as_ref().map(|v| &v[..]));
    put("td_attributes", m.td_attributes.as_ref().map(|v| &v[..]));
    put("tee_tcb_svn", m.tee_tcb_svn.as_ref().map(|v| &v[..]));
    if let (Some(prod_id), Some(svn)) = (m.isv_prod_id, m.isv_svn) {
        measurements.insert(2, ("isv_prod_id", prod_id.to_string()));
        measurements.insert(3, ("isv_svn", svn.to_string()));
    }
    measurements.push(("report_data", hex::encode(m.report_data)));
    Parsed {
        tee: match tee {
            DcapTee::Sgx => Tee::Sgx,
            DcapTee::Tdx => Tee::Tdx,
        },
        version: u32::from(version),
        report_data: m.report_data,
        debug: m.debug,
        vmpl: None,
        service_td_bound: m.mr_service_td.is_some_and(|v| v.iter().any(|b| *b != 0)),
        measurements,
    }
}

fn parsed_snp(report: &snp::Report) -> Parsed {
    let measurements = vec![
        ("measurement", hex::encode(report.measurement())),
        ("host_data", hex::encode(report.host_data())),
        ("policy", format!("{:#x}", report.policy())),
        ("vmpl", report.vmpl().to_string()),
        ("guest_svn", report.guest_svn().to_string()),
        ("family_id", hex::encode(report.family_id())),
        ("image_id", hex::encode(report.image_id())),
        ("id_key_digest", hex::encode(report.id_key_digest())),
        ("author_key_digest", hex::encode(report.author_key_digest())),
        ("reported_tcb", report.reported_tcb().to_string()),
        ("chip_id", hex::encode(report.chip_id())),
        ("report_data", hex::encode(report.report_data())),
    ];
    Parsed {
        tee: Tee::SevSnp,
        version: report.version(),
        report_data: report.report_data(),
        debug: report.debug_allowed(),
        vmpl: Some(report.vmpl()),
        service_td_bound: false,
        measurements,
    }
}

/// What certifies a piece of evidence: Intel's collateral for a DCAP quote
/// (dcap-qvl's `QuoteCollateralV3`), the VCEK chain for an SEV-SNP report.
#[derive(Debug, Clone)]
pub enum Endorsements {
    /// PCK CRL, TCB info, QE identity and their signers' chain.
    Dcap(Box<dcap_qvl::QuoteCollateralV3>),
    /// VCEK (or VLEK), ASK (or ASVK), ARK.
    Snp(snp::Chain),
}

impl Endorsements {
    /// The SEV-SNP chain of a certificate table (configfs-tsm's `auxblob`,
    /// as a node's certificate or evidence carries it).
    pub fn from_aux(table: &[u8]) -> Result<Endorsements, String> {
        snp::Chain::from_auxblob(table)
            .map(Endorsements::Snp)
            .map_err(|e| format!("the VCEK chain: {e}"))
    }

    /// Reads the endorsements of `tee` evidence: JSON for SGX and TDX, three
    /// PEM certificates (leaf first) for SEV-SNP.
    pub fn read(tee: Tee, bytes: &[u8]) -> Result<Endorsements, String> {
        match tee {
            Tee::SevSnp => {
                let text = std::str::from_utf8(bytes).map_err(|_| {
                    "an SEV-SNP chain is PEM text: the VCEK (or VLEK), the ASK, the ARK".to_string()
                })?;
                snp::Chain::from_pem(text)
                    .map(Endorsements::Snp)
                    .map_err(|e| e.to_string())
            }
            _ => serde_json::from_slice(bytes)
                .map(|c| Endorsements::Dcap(Box::new(c)))
                .map_err(|e| {
                    format!(
                        "not collateral in dcap-qvl's QuoteCollateralV3 JSON (pck_crl_issuer_chain, \
                         root_ca_crl, pck_crl, tcb_info_issuer_chain, tcb_info, …): {e}"
                    )
                }),
        }
    }
}

/// The roots a verification trusts.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// Intel's SGX Root CA and AMD's ARKs of Milan, Genoa and Turin: the
    /// only roots that prove hardware.
    #[default]
    Vendors,
    /// Test roots only: emulated hardware. Every verdict under them is
    /// marked emulated; real evidence fails under them.
    Test {
        /// The emulated Intel root CA (DER).
        intel_root_der: Option<Vec<u8>>,
        /// The emulated ARKs (DER).
        amd_ark_ders: Vec<Vec<u8>>,
    },
}

impl Trust {
    /// Test roots from PEM certificates: an EC root is the emulated Intel
    /// root CA (at most one), RSA roots are emulated ARKs.
    pub fn test_from_pem(text: &str) -> Result<Trust, String> {
        use x509_parser::prelude::FromDer as _;
        let mut intel_root_der = None;
        let mut amd_ark_ders = Vec::new();
        for pem in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
            let pem = pem.map_err(|e| format!("not PEM: {e}"))?;
            if pem.label != "CERTIFICATE" {
                return Err(format!(
                    "a PEM block labelled {:?}, not CERTIFICATE",
                    pem.label
                ));
            }
            let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&pem.contents)
                .map_err(|e| format!("not an X.509 certificate: {e}"))?;
            let algorithm = cert.public_key().algorithm.algorithm.to_id_string();
            match algorithm.as_str() {
                // id-ecPublicKey: Intel's roots are P-256.
                "1.2.840.10045.2.1" if intel_root_der.is_none() => {
                    intel_root_der = Some(pem.contents.clone());
                }
                "1.2.840.10045.2.1" => {
                    return Err("two EC roots: give one emulated Intel root CA".into())
                }
                // rsaEncryption and RSASSA-PSS: AMD's ARKs are RSA-4096.
                "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => {
                    amd_ark_ders.push(pem.contents.clone());
                }
                other => return Err(format!("a root with a key of algorithm {other}")),
            }
        }
        if intel_root_der.is_none() && amd_ark_ders.is_empty() {
            return Err("no certificate".into());
        }
        Ok(Trust::Test {
            intel_root_der,
            amd_ark_ders,
        })
    }
}

/// The statuses of a TCB a verification accepts.
pub trait TcbPolicy {
    /// True when `status` passes.
    fn accepts(&self, status: &str) -> bool;
}

impl<F: Fn(&str) -> bool> TcbPolicy for F {
    fn accepts(&self, status: &str) -> bool {
        self(status)
    }
}

/// The outcome of [`verify`]: the `quote_signature` and `tcb` checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The signature chain: what verified, or why not.
    pub signature: Result<String, String>,
    /// The TCB: the accepted status, or why it is not accepted.
    pub tcb: Result<String, String>,
    /// The TCB status (`UpToDate`, `OutOfDate`, …) once the signature verified.
    pub tcb_status: Option<String>,
    /// Intel's advisory ids that apply.
    pub advisories: Vec<String>,
    /// SEV-SNP: the TCB components (`bl=… tee=… snp=… ucode=…`).
    pub tcb_components: Option<String>,
    /// The chain ended at a test root: no hardware proved anything.
    pub emulated: bool,
}

impl Verdict {
    fn failed(why: impl Into<String>) -> Verdict {
        let why = why.into();
        Verdict {
            signature: Err(why.clone()),
            tcb: Err(why),
            tcb_status: None,
            advisories: Vec::new(),
            tcb_components: None,
            emulated: false,
        }
    }

    fn signature_failed(why: impl Into<String>) -> Verdict {
        Verdict {
            tcb: Err("not evaluated: the quote signature failed".into()),
            ..Verdict::failed(why)
        }
    }
}

/// Verifies that the vendor's hardware signed `bytes` (evidence of the kind
/// `parsed` says) and evaluates its TCB: for SGX and TDX, the PCK chain and
/// the collateral's signers up to Intel's root, the CRLs, the QE report
/// and the quote's signature (dcap-qvl); for SEV-SNP, VCEK → ASK → ARK of
/// AMD, the report's signature, and the TCB the VCEK certifies. Only
/// `UpToDate` passes unless `accepts` names another status; an SEV-SNP
/// report has `UpToDate` when `snp_min_tcb` is met, `NoMinimum` without one.
pub fn verify(
    bytes: &[u8],
    parsed: &Parsed,
    endorsements: Result<&Endorsements, &str>,
    trust: &Trust,
    accepts: &dyn TcbPolicy,
    snp_min_tcb: Option<&snp::Tcb>,
    now: DateTime<Utc>,
) -> Verdict {
    let endorsements = match endorsements {
        Ok(endorsements) => endorsements,
        Err(why) => return Verdict::failed(why),
    };
    match (parsed.tee, endorsements) {
        (Tee::SevSnp, Endorsements::Snp(chain)) => {
            verify_snp(bytes, chain, trust, accepts, snp_min_tcb, now)
        }
        (Tee::Sgx | Tee::Tdx, Endorsements::Dcap(collateral)) => {
            verify_dcap(bytes, parsed, collateral, trust, accepts, now)
        }
        (tee, Endorsements::Snp(_)) => Verdict::failed(format!(
            "a {tee} quote is certified by Intel's collateral (JSON), not by an SEV-SNP chain"
        )),
        (tee, Endorsements::Dcap(_)) => Verdict::failed(format!(
            "{tee} evidence is certified by its VCEK chain (PEM), not by Intel's collateral"
        )),
    }
}

fn tcb_verdict(status: &str, accepts: &dyn TcbPolicy, details: String) -> Result<String, String> {
    if accepts.accepts(status) {
        Ok(format!("TCB status {status} accepted; {details}"))
    } else {
        Err(format!(
            "TCB status {status} is not accepted (only UpToDate unless named); {details}"
        ))
    }
}

fn verify_dcap(
    bytes: &[u8],
    parsed: &Parsed,
    collateral: &dcap_qvl::QuoteCollateralV3,
    trust: &Trust,
    accepts: &dyn TcbPolicy,
    now: DateTime<Utc>,
) -> Verdict {
    let root = match trust {
        Trust::Vendors => dcap::Root::Intel,
        Trust::Test {
            intel_root_der: Some(der),
            ..
        } => dcap::Root::Test(der.clone()),
        Trust::Test { .. } => {
            return Verdict::signature_failed(
                "no Intel root is trusted: the test roots name none for SGX and TDX",
            )
        }
    };
    let outcome = match dcap::verify(bytes, collateral, &root, now) {
        Ok(outcome) => outcome,
        Err(why) => return Verdict::signature_failed(why),
    };
    let root_name = if outcome.emulated {
        "a test root (emulated hardware, no protection)"
    } else {
        "Intel's SGX root CA"
    };
    let advisories = if outcome.advisories.is_empty() {
        "no advisories".to_string()
    } else {
        format!("advisories {}", outcome.advisories.join(", "))
    };
    Verdict {
        signature: Ok(format!(
            "the {}'s signature chain verifies up to {root_name}",
            parsed.describe()
        )),
        tcb: tcb_verdict(&outcome.status, accepts, advisories),
        tcb_status: Some(outcome.status),
        advisories: outcome.advisories,
        tcb_components: None,
        emulated: outcome.emulated,
    }
}

fn verify_snp(
    bytes: &[u8],
    chain: &snp::Chain,
    trust: &Trust,
    accepts: &dyn TcbPolicy,
    min_tcb: Option<&snp::Tcb>,
    now: DateTime<Utc>,
) -> Verdict {
    let report = match snp::Report::parse(bytes) {
        Ok(report) => report,
        Err(why) => return Verdict::signature_failed(why.to_string()),
    };
    let roots = match trust {
        Trust::Vendors => snp::Roots::Amd,
        Trust::Test { amd_ark_ders, .. } => snp::Roots::Test(amd_ark_ders.clone()),
    };
    match snp::verify(&report, chain, &roots, min_tcb, now) {
        Ok(outcome) => {
            let root_name = if outcome.emulated {
                "a test ARK (emulated hardware, no protection)".to_string()
            } else {
                format!("AMD's ARK of {}", outcome.product)
            };
            let components = outcome.tcb.to_string();
            Verdict {
                signature: Ok(format!(
                    "the report's signature is the {}'s, whose chain verifies up to {root_name}",
                    outcome.signing_key
                )),
                tcb: tcb_verdict(
                    &outcome.status,
                    accepts,
                    format!(
                        "reported TCB {components}, certified by the {}",
                        outcome.signing_key
                    ),
                ),
                tcb_status: Some(outcome.status),
                advisories: Vec::new(),
                tcb_components: Some(components),
                emulated: outcome.emulated,
            }
        }
        Err(failure) if failure.check == snp::CHECK_TCB => Verdict {
            signature: Ok("the report's signature chain verifies".into()),
            tcb: Err(failure.detail),
            tcb_status: None,
            advisories: Vec::new(),
            tcb_components: Some(report.reported_tcb().to_string()),
            emulated: matches!(trust, Trust::Test { .. }),
        },
        Err(failure) => Verdict::signature_failed(failure.detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurements_are_listed_in_the_documented_order() {
        let position = |name: &str| MEASUREMENT_NAMES.iter().position(|n| *n == name).unwrap();
        let snp = parsed_snp(
            &snp::Report::parse(&{
                let mut r = vec![0u8; snp::REPORT_LEN];
                r[0] = 2;
                r[0x34] = 1;
                r
            })
            .unwrap(),
        );
        let sorted =
            |m: &[(&str, String)]| m.windows(2).all(|w| position(w[0].0) < position(w[1].0));
        assert!(sorted(&snp.measurements), "{:?}", snp.measurements);
    }

    #[test]
    fn hex_text_is_decoded_and_binary_kept() {
        assert_eq!(decode(b"0a0B\n ff\n"), vec![0x0a, 0x0b, 0xff]);
        assert_eq!(decode(b"0x0102"), vec![1, 2]);
        assert_eq!(decode(&[3, 0, 2, 0]), vec![3, 0, 2, 0]);
        assert_eq!(decode(b"abc"), b"abc".to_vec(), "odd length is not hex");
    }

    #[test]
    fn the_kind_comes_from_the_header_and_nothing_else_is_taken() {
        let mut sgx = vec![0u8; 100];
        sgx[..4].copy_from_slice(&[3, 0, 2, 0]);
        assert_eq!(kind(&sgx), Ok(Tee::Sgx));
        sgx[0] = 4;
        assert_eq!(kind(&sgx), Ok(Tee::Tdx));
        sgx[0] = 5;
        assert_eq!(kind(&sgx), Ok(Tee::Tdx));
        let mut report = vec![0u8; snp::REPORT_LEN];
        report[0] = 2;
        assert_eq!(kind(&report), Ok(Tee::SevSnp));
        assert!(
            kind(&report[..1000]).is_err(),
            "a short report is no report"
        );
        assert!(kind(&[]).unwrap_err().contains("empty"));
        assert!(kind(b"hello world").is_err());
    }

    #[test]
    fn endorsements_of_the_wrong_kind_are_refused_naming_the_right_one() {
        assert!(Endorsements::read(Tee::SevSnp, &[0xff, 0xfe])
            .unwrap_err()
            .contains("PEM"));
        assert!(Endorsements::read(Tee::Tdx, b"{}")
            .unwrap_err()
            .contains("QuoteCollateralV3"));
    }
}
