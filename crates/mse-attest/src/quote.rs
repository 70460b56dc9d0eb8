//! Intel SGX DCAP quote, version 3 (ECDSA P-256): parsing and building.
//!
//! Layout: a 48-byte header, the 384-byte ISV enclave report body, a 4-byte
//! signature-data length, then the signature data: quote signature (64),
//! attestation public key (64), QE report body (384), QE report signature (64),
//! QE authentication data (2-byte length + bytes), certification data (2-byte
//! type, 4-byte length, bytes; type 5 is the PCK certificate chain in PEM).

use crate::AttestError;

/// Bytes of the quote header.
pub const HEADER_LEN: usize = 48;
/// Bytes of an SGX report body.
pub const REPORT_BODY_LEN: usize = 384;
/// Quote version this parser reads.
pub const QUOTE_VERSION: u16 = 3;
/// Attestation key type ECDSA-256-with-P-256.
pub const ATT_KEY_ECDSA_P256: u16 = 2;
/// TEE type of SGX.
pub const TEE_SGX: u32 = 0;
/// Certification data type: PCK certificate chain, PEM.
pub const CERT_DATA_PCK_CHAIN: u16 = 5;
/// Largest quote accepted (real ones are a few kB).
pub const MAX_QUOTE_LEN: usize = 64 * 1024;

/// The 384-byte report body of an enclave (or of the quoting enclave).
#[derive(Clone, PartialEq, Eq)]
pub struct ReportBody(pub [u8; REPORT_BODY_LEN]);

impl std::fmt::Debug for ReportBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportBody")
            .field("mr_enclave", &hex::encode(self.mr_enclave()))
            .field("mr_signer", &hex::encode(self.mr_signer()))
            .field("debug", &self.debug())
            .field("isv_prod_id", &self.isv_prod_id())
            .field("isv_svn", &self.isv_svn())
            .finish()
    }
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

impl ReportBody {
    /// An all-zero body, to fill in.
    pub fn zeroed() -> Self {
        ReportBody([0u8; REPORT_BODY_LEN])
    }
    /// The 16-byte attributes field.
    pub fn attributes(&self) -> [u8; 16] {
        array(&self.0, 48)
    }
    /// True when the enclave runs in debug mode (attributes bit 1): no protection.
    pub fn debug(&self) -> bool {
        self.0[48] & 0x02 != 0
    }
    /// The enclave measurement.
    pub fn mr_enclave(&self) -> [u8; 32] {
        array(&self.0, 64)
    }
    /// The enclave signer's measurement.
    pub fn mr_signer(&self) -> [u8; 32] {
        array(&self.0, 128)
    }
    /// ISV product id.
    pub fn isv_prod_id(&self) -> u16 {
        u16::from_le_bytes(array(&self.0, 256))
    }
    /// ISV security version.
    pub fn isv_svn(&self) -> u16 {
        u16::from_le_bytes(array(&self.0, 258))
    }
    /// The 64 bytes of data the enclave bound into its report.
    pub fn report_data(&self) -> [u8; 64] {
        array(&self.0, 320)
    }
    /// Sets MRENCLAVE.
    pub fn set_mr_enclave(&mut self, value: &[u8; 32]) {
        self.0[64..96].copy_from_slice(value);
    }
    /// Sets MRSIGNER.
    pub fn set_mr_signer(&mut self, value: &[u8; 32]) {
        self.0[128..160].copy_from_slice(value);
    }
    /// Sets or clears the DEBUG attribute.
    pub fn set_debug(&mut self, debug: bool) {
        if debug {
            self.0[48] |= 0x02;
        } else {
            self.0[48] &= !0x02;
        }
    }
    /// Sets ISVPRODID and ISVSVN.
    pub fn set_isv(&mut self, prod_id: u16, svn: u16) {
        self.0[256..258].copy_from_slice(&prod_id.to_le_bytes());
        self.0[258..260].copy_from_slice(&svn.to_le_bytes());
    }
    /// Sets REPORTDATA.
    pub fn set_report_data(&mut self, value: &[u8; 64]) {
        self.0[320..384].copy_from_slice(value);
    }
}

/// A parsed quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The 48-byte header.
    pub header: [u8; HEADER_LEN],
    /// The enclave's report body.
    pub body: ReportBody,
    /// ECDSA signature (r ‖ s) by the attestation key over header ‖ body.
    pub signature: [u8; 64],
    /// The attestation public key (X ‖ Y).
    pub attestation_key: [u8; 64],
    /// The quoting enclave's report body.
    pub qe_report: ReportBody,
    /// ECDSA signature (r ‖ s) by the PCK key over the QE report body.
    pub qe_report_signature: [u8; 64],
    /// QE authentication data.
    pub qe_auth_data: Vec<u8>,
    /// Certification data type (5: PCK chain).
    pub cert_data_type: u16,
    /// Certification data.
    pub cert_data: Vec<u8>,
}

/// A cursor that fails instead of panicking past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], AttestError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                AttestError::Quote(format!(
                    "truncated at {what} (needs {n} bytes at offset {}, quote has {})",
                    self.at,
                    self.bytes.len()
                ))
            })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn fixed<const N: usize>(&mut self, what: &str) -> Result<[u8; N], AttestError> {
        Ok(array(self.take(N, what)?, 0))
    }
    fn u16(&mut self, what: &str) -> Result<u16, AttestError> {
        Ok(u16::from_le_bytes(self.fixed(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32, AttestError> {
        Ok(u32::from_le_bytes(self.fixed(what)?))
    }
}

impl Quote {
    /// Parses a v3 ECDSA P-256 SGX quote; any other input is an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, AttestError> {
        if bytes.len() > MAX_QUOTE_LEN {
            return Err(AttestError::Quote(format!(
                "{} bytes is too large for a quote",
                bytes.len()
            )));
        }
        let mut r = Reader { bytes, at: 0 };
        let header: [u8; HEADER_LEN] = r.fixed("header")?;
        let version = u16::from_le_bytes(array(&header, 0));
        if version != QUOTE_VERSION {
            return Err(AttestError::Quote(format!(
                "quote version {version} (expected 3)"
            )));
        }
        let key_type = u16::from_le_bytes(array(&header, 2));
        if key_type != ATT_KEY_ECDSA_P256 {
            return Err(AttestError::Quote(format!(
                "attestation key type {key_type} (expected 2, ECDSA P-256)"
            )));
        }
        let tee = u32::from_le_bytes(array(&header, 4));
        if tee != TEE_SGX {
            return Err(AttestError::Quote(format!("TEE type {tee:#x} is not SGX")));
        }
        let body = ReportBody(r.fixed("report body")?);
        let signature_len = r.u32("signature data length")? as usize;
        if signature_len != bytes.len() - r.at {
            return Err(AttestError::Quote(format!(
                "signature data length {signature_len} does not match the {} bytes that follow",
                bytes.len() - r.at
            )));
        }
        let signature = r.fixed("quote signature")?;
        let attestation_key = r.fixed("attestation key")?;
        let qe_report = ReportBody(r.fixed("QE report")?);
        let qe_report_signature = r.fixed("QE report signature")?;
        let auth_len = r.u16("QE authentication data length")? as usize;
        let qe_auth_data = r.take(auth_len, "QE authentication data")?.to_vec();
        let cert_data_type = r.u16("certification data type")?;
        let cert_len = r.u32("certification data length")? as usize;
        let cert_data = r.take(cert_len, "certification data")?.to_vec();
        if r.at != bytes.len() {
            return Err(AttestError::Quote(format!(
                "{} unexpected bytes after the certification data",
                bytes.len() - r.at
            )));
        }
        Ok(Quote {
            header,
            body,
            signature,
            attestation_key,
            qe_report,
            qe_report_signature,
            qe_auth_data,
            cert_data_type,
            cert_data,
        })
    }

    /// The quote's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut sig = Vec::new();
        sig.extend_from_slice(&self.signature);
        sig.extend_from_slice(&self.attestation_key);
        sig.extend_from_slice(&self.qe_report.0);
        sig.extend_from_slice(&self.qe_report_signature);
        sig.extend_from_slice(&(self.qe_auth_data.len() as u16).to_le_bytes());
        sig.extend_from_slice(&self.qe_auth_data);
        sig.extend_from_slice(&self.cert_data_type.to_le_bytes());
        sig.extend_from_slice(&(self.cert_data.len() as u32).to_le_bytes());
        sig.extend_from_slice(&self.cert_data);
        let mut out = Vec::with_capacity(HEADER_LEN + REPORT_BODY_LEN + 4 + sig.len());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&self.body.0);
        out.extend_from_slice(&(sig.len() as u32).to_le_bytes());
        out.extend_from_slice(&sig);
        out
    }

    /// The bytes the quote signature covers: header ‖ report body.
    pub fn signed_bytes(&self) -> Vec<u8> {
        [&self.header[..], &self.body.0[..]].concat()
    }

    /// The PCK certificate chain (PEM), when the certification data carries it.
    pub fn pck_chain_pem(&self) -> Option<&[u8]> {
        (self.cert_data_type == CERT_DATA_PCK_CHAIN).then_some(&self.cert_data[..])
    }

    /// A v3 SGX ECDSA header with the given QE and PCE security versions.
    pub fn header_v3(qe_svn: u16, pce_svn: u16) -> [u8; HEADER_LEN] {
        let mut header = [0u8; HEADER_LEN];
        header[0..2].copy_from_slice(&QUOTE_VERSION.to_le_bytes());
        header[2..4].copy_from_slice(&ATT_KEY_ECDSA_P256.to_le_bytes());
        header[4..8].copy_from_slice(&TEE_SGX.to_le_bytes());
        header[8..10].copy_from_slice(&qe_svn.to_le_bytes());
        header[10..12].copy_from_slice(&pce_svn.to_le_bytes());
        // Intel's QE vendor id.
        header[12..28].copy_from_slice(&[
            0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f,
            0x06, 0x07,
        ]);
        header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Quote {
        let mut body = ReportBody::zeroed();
        body.set_mr_enclave(&[1; 32]);
        body.set_mr_signer(&[2; 32]);
        body.set_isv(7, 9);
        body.set_report_data(&[3; 64]);
        Quote {
            header: Quote::header_v3(8, 13),
            body,
            signature: [4; 64],
            attestation_key: [5; 64],
            qe_report: ReportBody::zeroed(),
            qe_report_signature: [6; 64],
            qe_auth_data: vec![7; 32],
            cert_data_type: CERT_DATA_PCK_CHAIN,
            cert_data: b"-----BEGIN CERTIFICATE-----".to_vec(),
        }
    }

    #[test]
    fn fields_sit_at_the_documented_offsets() {
        let bytes = sample().to_bytes();
        assert_eq!(&bytes[48 + 64..48 + 96], &[1; 32]);
        assert_eq!(&bytes[48 + 128..48 + 160], &[2; 32]);
        assert_eq!(&bytes[48 + 256..48 + 258], &7u16.to_le_bytes());
        assert_eq!(&bytes[48 + 320..48 + 384], &[3; 64]);
        let quote = Quote::parse(&bytes).unwrap();
        assert_eq!(quote, sample());
        assert_eq!(quote.body.isv_svn(), 9);
        assert!(!quote.body.debug());
    }

    #[test]
    fn debug_is_bit_one_of_the_first_attribute_byte() {
        let mut body = ReportBody::zeroed();
        body.set_debug(true);
        assert_eq!(body.attributes()[0], 0x02);
        assert!(body.debug());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().to_bytes();
        for len in 0..bytes.len() {
            assert!(Quote::parse(&bytes[..len]).is_err(), "length {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Quote::parse(&longer).is_err());
    }

    #[test]
    fn other_versions_and_tees_are_refused() {
        let mut bytes = sample().to_bytes();
        bytes[0] = 4;
        assert!(Quote::parse(&bytes)
            .unwrap_err()
            .to_string()
            .contains("version 4"));
        let mut bytes = sample().to_bytes();
        bytes[4] = 0x81;
        assert!(Quote::parse(&bytes)
            .unwrap_err()
            .to_string()
            .contains("not SGX"));
    }
}
