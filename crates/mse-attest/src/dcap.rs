//! SGX and TDX quotes, verified with the `dcap-qvl` crate under a chosen
//! root: Intel's, or a test root that only the tests trust.
//!
//! Pure: quote bytes, collateral and "now" in, an [`Outcome`] out. The
//! collateral comes from a file or a PCCS ([`crate::collateral`]).
//!
//! What each kind of quote carries (Intel's `sgx_quote_3.h`, `sgx_quote_4.h`
//! and `sgx_quote_5.h`): an SGX quote has header version 3 and TEE type 0,
//! and its body is a 384-byte enclave report; a TDX quote has version 4 (a
//! TD 1.0 report of 584 bytes) or 5 (a 6-byte body descriptor, then a TD 1.0,
//! TD 1.5 or TD 1.5 "ex" report) and TEE type `0x81`. Anything else is
//! refused by [`inspect`] before any signature is looked at.

use chrono::{DateTime, Utc};
use dcap_qvl::quote::Report;

use crate::quote::MAX_QUOTE_LEN;
use crate::AttestError;

/// The root a quote's certificate chains (PCK, TCB signing) must end at.
#[derive(Clone, PartialEq, Eq)]
pub enum Root {
    /// Intel's SGX Provisioning Certification Root CA, as dcap-qvl ships it.
    Intel,
    /// Another root (DER): an emulated Intel PKI in tests. Outcomes under it
    /// are marked [`Outcome::emulated`].
    Test(Vec<u8>),
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Root::Intel => f.write_str("Intel"),
            Root::Test(der) => write!(f, "Test({} bytes of DER)", der.len()),
        }
    }
}

/// Which TEE produced a DCAP quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DcapTee {
    /// An SGX enclave (quote v3, TEE type 0).
    Sgx,
    /// A TDX trust domain (quote v4 or v5, TEE type `0x81`).
    Tdx,
}

/// TEE type of SGX in the quote header.
pub const TEE_TYPE_SGX: u32 = 0;
/// TEE type of TDX in the quote header.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Attestation key type ECDSA-256-with-P-256, the only one Intel's QEs use.
pub const ATT_KEY_ECDSA_P256: u16 = 2;
/// Bytes of a quote header.
pub const HEADER_LEN: usize = 48;
/// Bytes of an SGX enclave report.
pub const SGX_REPORT_LEN: usize = 384;
/// Bytes of a TD 1.0 report.
pub const TD10_REPORT_LEN: usize = 584;
/// Bytes of a TD 1.5 report.
pub const TD15_REPORT_LEN: usize = 648;
/// Bytes of a TD 1.5 report with the extensions of quote v5 body type 4.
pub const TD15_EX_REPORT_LEN: usize = 885;

/// What a quote's body says about the code it attests. Fields of the other
/// TEE are `None`; `mr_service_td` is set for TD 1.5 reports only.
#[derive(Clone, PartialEq, Eq)]
pub struct Measurements {
    /// REPORTDATA: the 64 bytes the enclave or TD bound into its report.
    pub report_data: [u8; 64],
    /// Debug mode (SGX: attribute bit 1; TDX: TD attribute bit 0): the host
    /// can read the TEE's memory.
    pub debug: bool,
    /// SGX: the enclave measurement.
    pub mr_enclave: Option<[u8; 32]>,
    /// SGX: the hash of the enclave signer's key.
    pub mr_signer: Option<[u8; 32]>,
    /// SGX: the ISV product id.
    pub isv_prod_id: Option<u16>,
    /// SGX: the ISV security version.
    pub isv_svn: Option<u16>,
    /// TDX: the measurement of the TD's initial contents (the firmware).
    pub mr_td: Option<[u8; 48]>,
    /// TDX: run-time measurement register 0 (firmware configuration).
    pub rtmr0: Option<[u8; 48]>,
    /// TDX: run-time measurement register 1 (kernel, boot loader).
    pub rtmr1: Option<[u8; 48]>,
    /// TDX: run-time measurement register 2 (command line, initrd).
    pub rtmr2: Option<[u8; 48]>,
    /// TDX: run-time measurement register 3 (left for an event log).
    pub rtmr3: Option<[u8; 48]>,
    /// TDX: the host's configuration id for the TD.
    pub mr_config_id: Option<[u8; 48]>,
    /// TDX: the TD owner's id.
    pub mr_owner: Option<[u8; 48]>,
    /// TDX: the owner's configuration.
    pub mr_owner_config: Option<[u8; 48]>,
    /// TDX: the TD attributes (bit 0: debug).
    pub td_attributes: Option<[u8; 8]>,
    /// TDX: the TDX module's and the platform's security versions.
    pub tee_tcb_svn: Option<[u8; 16]>,
    /// TD 1.5: the hash of the service TDs bound to the TD (zero if none).
    pub mr_service_td: Option<[u8; 48]>,
}

impl std::fmt::Debug for Measurements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn field(out: &mut std::fmt::DebugStruct<'_, '_>, name: &str, value: Option<&[u8]>) {
            if let Some(value) = value {
                out.field(name, &hex::encode(value));
            }
        }
        let mut out = f.debug_struct("Measurements");
        out.field("report_data", &hex::encode(self.report_data));
        out.field("debug", &self.debug);
        field(
            &mut out,
            "mr_enclave",
            self.mr_enclave.as_ref().map(|v| &v[..]),
        );
        field(
            &mut out,
            "mr_signer",
            self.mr_signer.as_ref().map(|v| &v[..]),
        );
        if let (Some(prod_id), Some(svn)) = (self.isv_prod_id, self.isv_svn) {
            out.field("isv_prod_id", &prod_id).field("isv_svn", &svn);
        }
        for (name, value) in [
            ("mr_td", &self.mr_td),
            ("rtmr0", &self.rtmr0),
            ("rtmr1", &self.rtmr1),
            ("rtmr2", &self.rtmr2),
            ("rtmr3", &self.rtmr3),
            ("mr_config_id", &self.mr_config_id),
            ("mr_owner", &self.mr_owner),
            ("mr_owner_config", &self.mr_owner_config),
            ("mr_service_td", &self.mr_service_td),
        ] {
            field(&mut out, name, value.as_ref().map(|v| &v[..]));
        }
        field(
            &mut out,
            "td_attributes",
            self.td_attributes.as_ref().map(|v| &v[..]),
        );
        field(
            &mut out,
            "tee_tcb_svn",
            self.tee_tcb_svn.as_ref().map(|v| &v[..]),
        );
        out.finish()
    }
}

/// What the collateral says about a genuine quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The TEE that produced the quote.
    pub tee: DcapTee,
    /// The quote's header version (3, 4 or 5).
    pub version: u16,
    /// TCB status (`UpToDate`, `SWHardeningNeeded`, `OutOfDate`, ...).
    pub status: String,
    /// Intel security advisory IDs that apply to the platform or the QE.
    pub advisories: Vec<String>,
    /// What the quote's body carries.
    pub measurements: Measurements,
    /// True when the chains verified under [`Root::Test`], not Intel's root:
    /// no hardware proved anything.
    pub emulated: bool,
}

fn malformed(why: impl Into<String>) -> AttestError {
    AttestError::Quote(why.into())
}

fn le_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The TEE, the body's length and where it starts, from the header (and
/// for v5 the body descriptor); errors name what is wrong.
fn layout(quote: &[u8]) -> Result<(DcapTee, u16, usize, usize), AttestError> {
    if quote.len() > MAX_QUOTE_LEN {
        return Err(malformed(format!(
            "{} bytes is too large for a quote (at most {MAX_QUOTE_LEN})",
            quote.len()
        )));
    }
    if quote.len() < HEADER_LEN {
        return Err(malformed(format!(
            "truncated: {} bytes, shorter than the {HEADER_LEN}-byte header",
            quote.len()
        )));
    }
    let version = le_u16(quote, 0).unwrap_or_default();
    let key_type = le_u16(quote, 2).unwrap_or_default();
    let tee_type = le_u32(quote, 4).unwrap_or_default();
    let tee = match (version, tee_type) {
        (3, TEE_TYPE_SGX) => DcapTee::Sgx,
        (4 | 5, TEE_TYPE_TDX) => DcapTee::Tdx,
        (3, other) => {
            return Err(malformed(format!(
                "TEE type {other:#x} in a version 3 quote (SGX quotes have TEE type 0)"
            )))
        }
        (4 | 5, other) => {
            return Err(malformed(format!(
                "TEE type {other:#x} in a version {version} quote \
                 (TDX quotes have TEE type 0x81; SGX quotes are version 3)"
            )))
        }
        (other, _) => {
            return Err(malformed(format!(
                "quote version {other} (expected 3 for SGX, 4 or 5 for TDX)"
            )))
        }
    };
    if key_type != ATT_KEY_ECDSA_P256 {
        return Err(malformed(format!(
            "attestation key type {key_type} (expected 2, ECDSA P-256)"
        )));
    }
    let (body_at, body_len) = match (tee, version) {
        (DcapTee::Sgx, _) => (HEADER_LEN, SGX_REPORT_LEN),
        (DcapTee::Tdx, 4) => (HEADER_LEN, TD10_REPORT_LEN),
        (DcapTee::Tdx, _) => {
            let (Some(body_type), Some(size)) = (le_u16(quote, 48), le_u32(quote, 50)) else {
                return Err(malformed(format!(
                    "truncated: {} bytes, shorter than the header and body descriptor of a v5 quote",
                    quote.len()
                )));
            };
            let len = match body_type {
                2 => TD10_REPORT_LEN,
                3 => TD15_REPORT_LEN,
                4 => TD15_EX_REPORT_LEN,
                other => {
                    return Err(malformed(format!(
                        "v5 body type {other} is not a TD report \
                         (2: TD 1.0, 3: TD 1.5, 4: TD 1.5 with extensions)"
                    )))
                }
            };
            if size as usize != len {
                return Err(malformed(format!(
                    "v5 body of type {body_type} says {size} bytes (a TD report of that type has {len})"
                )));
            }
            (HEADER_LEN + 6, len)
        }
    };
    Ok((tee, version, body_at, body_len))
}

/// Parses a quote without verifying it: its TEE, header version and
/// measurements. Refuses anything but an SGX v3 or a TDX v4/v5 ECDSA P-256
/// quote of at most [`MAX_QUOTE_LEN`] bytes, with no byte missing and
/// nothing but zero padding after its signature data.
pub fn inspect(quote: &[u8]) -> Result<(DcapTee, u16, Measurements), AttestError> {
    let (tee, version, body_at, body_len) = layout(quote)?;
    let signed_len = body_at + body_len;
    let Some(auth_len) = le_u32(quote, signed_len) else {
        return Err(malformed(format!(
            "truncated: {} bytes, shorter than the header, the {body_len}-byte report and \
             the signature data's length ({} bytes)",
            quote.len(),
            signed_len + 4
        )));
    };
    let expected = (signed_len + 4).saturating_add(auth_len as usize);
    // A quote read from a fixed-size buffer (configfs-tsm's `outblob` on
    // some kernels) may end with zero padding: accepted, as Intel's QVL
    // ignores it; any other trailing byte is not.
    let padding = quote.get(expected..).unwrap_or_default();
    if quote.len() < expected || padding.iter().any(|b| *b != 0) {
        return Err(malformed(format!(
            "the signature data says {auth_len} bytes, so the quote should have {expected} \
             bytes (then only zero padding); it has {}",
            quote.len()
        )));
    }
    let structural = signature_data_len(tee, &quote[signed_len + 4..expected])?;
    if structural != auth_len as usize {
        return Err(malformed(format!(
            "the signature data says {auth_len} bytes, but what it holds takes {structural}: \
             a length was changed"
        )));
    }
    let parsed = dcap_qvl::quote::Quote::parse(quote)
        .map_err(|e| malformed(format!("signature data: {e:#}")))?;
    let measurements = match (&parsed.report, tee) {
        (Report::SgxEnclave(report), DcapTee::Sgx) => Measurements {
            report_data: report.report_data,
            debug: report.attributes[0] & 0x02 != 0,
            mr_enclave: Some(report.mr_enclave),
            mr_signer: Some(report.mr_signer),
            isv_prod_id: Some(report.isv_prod_id),
            isv_svn: Some(report.isv_svn),
            ..Measurements::none(report.report_data)
        },
        (report, DcapTee::Tdx) => {
            let Some(td) = report.as_td10() else {
                return Err(malformed("a TDX quote without a TD report"));
            };
            Measurements {
                debug: td.td_attributes[0] & 0x01 != 0,
                mr_td: Some(td.mr_td),
                rtmr0: Some(td.rt_mr0),
                rtmr1: Some(td.rt_mr1),
                rtmr2: Some(td.rt_mr2),
                rtmr3: Some(td.rt_mr3),
                mr_config_id: Some(td.mr_config_id),
                mr_owner: Some(td.mr_owner),
                mr_owner_config: Some(td.mr_owner_config),
                td_attributes: Some(td.td_attributes),
                tee_tcb_svn: Some(td.tee_tcb_svn),
                mr_service_td: report.as_td15().map(|td15| td15.mr_service_td),
                ..Measurements::none(td.report_data)
            }
        }
        (_, DcapTee::Sgx) => return Err(malformed("an SGX quote without an enclave report")),
    };
    Ok((tee, version, measurements))
}

/// The length the signature data's own fields give it: for SGX (v3) the
/// signature, attestation key, QE report and its signature, QE
/// authentication data and certification data; for TDX (v4, v5) the
/// signature, attestation key and certification data (which wraps the
/// rest). A signature data length that says more or less than this was
/// changed: it is not signed, so nothing else would notice.
fn signature_data_len(tee: DcapTee, data: &[u8]) -> Result<usize, AttestError> {
    let short = || malformed("the signature data is truncated inside its own fields");
    let certification_at = match tee {
        DcapTee::Sgx => {
            // Signature, key, QE report, its signature, then the QE
            // authentication data's length and bytes.
            let auth_at = 64 + 64 + SGX_REPORT_LEN + 64;
            let auth_len = le_u16(data, auth_at).ok_or_else(short)?;
            auth_at + 2 + usize::from(auth_len)
        }
        DcapTee::Tdx => 64 + 64,
    };
    let size = le_u32(data, certification_at + 2).ok_or_else(short)?;
    Ok(certification_at + 6 + size as usize)
}

impl Measurements {
    /// Only REPORTDATA, every other field empty.
    fn none(report_data: [u8; 64]) -> Self {
        Measurements {
            report_data,
            debug: false,
            mr_enclave: None,
            mr_signer: None,
            isv_prod_id: None,
            isv_svn: None,
            mr_td: None,
            rtmr0: None,
            rtmr1: None,
            rtmr2: None,
            rtmr3: None,
            mr_config_id: None,
            mr_owner: None,
            mr_owner_config: None,
            td_attributes: None,
            tee_tcb_svn: None,
            mr_service_td: None,
        }
    }
}

/// Verifies an SGX or TDX quote: the PCK chain and the collateral's signers
/// up to `root`, the CRLs, the QE report and the quote's signature, then
/// evaluates its TCB against the collateral at `now`. dcap-qvl also refuses
/// debug enclaves and TDs, and TD 1.5 quotes bound to service TDs.
pub fn verify(
    quote: &[u8],
    collateral: &dcap_qvl::QuoteCollateralV3,
    root: &Root,
    now: DateTime<Utc>,
) -> Result<Outcome, String> {
    let (tee, version, measurements) = inspect(quote).map_err(|e| e.to_string())?;
    let now = u64::try_from(now.timestamp()).map_err(|_| "the clock is before 1970".to_string())?;
    let verifier = match root {
        Root::Intel => dcap_qvl::verify::QuoteVerifier::new_prod(),
        Root::Test(der) => dcap_qvl::verify::QuoteVerifier::new(der.clone()),
    };
    let report = verifier
        .verify(quote, collateral, now)
        .map_err(|e| format!("quote verification failed: {e:#}"))?;
    Ok(Outcome {
        tee,
        version,
        status: report.status,
        advisories: report.advisory_ids,
        measurements,
        emulated: matches!(root, Root::Test(_)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-formed SGX v3 quote whose signatures are garbage: enough for
    /// the parser, not for verification.
    fn sgx_quote() -> Vec<u8> {
        let mut quote = vec![0u8; HEADER_LEN];
        quote[0..2].copy_from_slice(&3u16.to_le_bytes());
        quote[2..4].copy_from_slice(&ATT_KEY_ECDSA_P256.to_le_bytes());
        let mut body = [0u8; SGX_REPORT_LEN];
        body[48] = 0x02; // debug
        body[64..96].copy_from_slice(&[1; 32]);
        body[128..160].copy_from_slice(&[2; 32]);
        body[256..258].copy_from_slice(&7u16.to_le_bytes());
        body[258..260].copy_from_slice(&9u16.to_le_bytes());
        body[320..384].copy_from_slice(&[3; 64]);
        quote.extend_from_slice(&body);
        let mut auth = vec![0u8; 64 + 64 + 384 + 64];
        auth.extend_from_slice(&32u16.to_le_bytes());
        auth.extend_from_slice(&[0; 32]);
        auth.extend_from_slice(&5u16.to_le_bytes());
        auth.extend_from_slice(&3u32.to_le_bytes());
        auth.extend_from_slice(b"PEM");
        quote.extend_from_slice(&(auth.len() as u32).to_le_bytes());
        quote.extend_from_slice(&auth);
        quote
    }

    /// The same for TDX: v4 with a TD 1.0 report, certification data type 6.
    fn tdx_quote() -> Vec<u8> {
        let mut quote = vec![0u8; HEADER_LEN];
        quote[0..2].copy_from_slice(&4u16.to_le_bytes());
        quote[2..4].copy_from_slice(&ATT_KEY_ECDSA_P256.to_le_bytes());
        quote[4..8].copy_from_slice(&TEE_TYPE_TDX.to_le_bytes());
        let mut body = [0u8; TD10_REPORT_LEN];
        body[136..184].copy_from_slice(&[4; 48]);
        body[328..376].copy_from_slice(&[5; 48]);
        body[472..520].copy_from_slice(&[6; 48]);
        body[520..584].copy_from_slice(&[7; 64]);
        quote.extend_from_slice(&body);
        let mut inner = vec![0u8; 384 + 64];
        inner.extend_from_slice(&32u16.to_le_bytes());
        inner.extend_from_slice(&[0; 32]);
        inner.extend_from_slice(&5u16.to_le_bytes());
        inner.extend_from_slice(&3u32.to_le_bytes());
        inner.extend_from_slice(b"PEM");
        let mut auth = vec![0u8; 64 + 64];
        auth.extend_from_slice(&6u16.to_le_bytes());
        auth.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        auth.extend_from_slice(&inner);
        quote.extend_from_slice(&(auth.len() as u32).to_le_bytes());
        quote.extend_from_slice(&auth);
        quote
    }

    fn error(quote: &[u8]) -> String {
        inspect(quote).unwrap_err().to_string()
    }

    #[test]
    fn an_sgx_quote_gives_its_enclave_measurements() {
        let (tee, version, m) = inspect(&sgx_quote()).unwrap();
        assert_eq!((tee, version), (DcapTee::Sgx, 3));
        assert_eq!(m.mr_enclave, Some([1; 32]));
        assert_eq!(m.mr_signer, Some([2; 32]));
        assert_eq!((m.isv_prod_id, m.isv_svn), (Some(7), Some(9)));
        assert_eq!(m.report_data, [3; 64]);
        assert!(m.debug);
        assert_eq!(m.mr_td, None);
    }

    #[test]
    fn a_tdx_quote_gives_its_td_measurements() {
        let (tee, version, m) = inspect(&tdx_quote()).unwrap();
        assert_eq!((tee, version), (DcapTee::Tdx, 4));
        assert_eq!(m.mr_td, Some([4; 48]));
        assert_eq!(m.rtmr0, Some([5; 48]));
        assert_eq!(m.rtmr3, Some([6; 48]));
        assert_eq!(m.report_data, [7; 64]);
        assert!(!m.debug);
        assert_eq!((m.mr_enclave, m.mr_service_td), (None, None));
    }

    #[test]
    fn every_truncation_and_any_nonzero_trailing_byte_is_refused() {
        for quote in [sgx_quote(), tdx_quote()] {
            for len in 0..quote.len() {
                assert!(inspect(&quote[..len]).is_err(), "length {len}");
            }
            let mut padded = quote.clone();
            padded.extend_from_slice(&[0; 70]);
            assert_eq!(inspect(&padded).unwrap(), inspect(&quote).unwrap());
            padded.push(1);
            assert!(
                error(&padded).contains("then only zero padding"),
                "{}",
                error(&padded)
            );
        }
        assert!(error(&sgx_quote()[..10]).contains("shorter than the 48-byte header"));
        assert!(error(&sgx_quote()[..100]).contains("the 384-byte report"));
    }

    #[test]
    fn wrong_versions_tee_types_and_key_types_are_named() {
        let mut quote = sgx_quote();
        quote[0] = 2;
        assert!(error(&quote).contains("quote version 2 (expected 3 for SGX, 4 or 5 for TDX)"));
        let mut quote = sgx_quote();
        quote[4] = 0x81;
        assert!(error(&quote).contains("TEE type 0x81 in a version 3 quote"));
        let mut quote = tdx_quote();
        quote[4] = 0;
        assert!(error(&quote).contains("TEE type 0x0 in a version 4 quote"));
        let mut quote = sgx_quote();
        quote[2] = 3;
        assert!(error(&quote).contains("attestation key type 3"));
    }

    #[test]
    fn a_v5_body_must_be_a_td_report_of_its_stated_size() {
        // v5 framing around the TD 1.0 report of the v4 quote.
        let v4 = tdx_quote();
        let mut v5 = v4[..HEADER_LEN].to_vec();
        v5[0] = 5;
        v5.extend_from_slice(&2u16.to_le_bytes());
        v5.extend_from_slice(&(TD10_REPORT_LEN as u32).to_le_bytes());
        v5.extend_from_slice(&v4[HEADER_LEN..]);
        let (tee, version, m) = inspect(&v5).unwrap();
        assert_eq!((tee, version, m.mr_td), (DcapTee::Tdx, 5, Some([4; 48])));

        let mut sgx_body = v5.clone();
        sgx_body[48] = 1;
        assert!(error(&sgx_body).contains("v5 body type 1 is not a TD report"));
        let mut wrong_size = v5.clone();
        wrong_size[50] ^= 1;
        assert!(error(&wrong_size).contains("says 585 bytes"));
    }

    #[test]
    fn a_quote_larger_than_the_bound_is_refused_unread() {
        let quote = vec![0u8; MAX_QUOTE_LEN + 1];
        assert!(error(&quote).contains("too large"));
    }

    #[test]
    fn malformed_signature_data_is_an_error_not_a_panic() {
        let mut quote = sgx_quote();
        // The QE authentication data claims more bytes than there are.
        let at = HEADER_LEN + SGX_REPORT_LEN + 4 + 64 + 64 + 384 + 64;
        quote[at..at + 2].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(
            error(&quote).contains("signature data"),
            "{}",
            error(&quote)
        );
    }
}
