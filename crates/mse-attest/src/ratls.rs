//! RA-TLS certificates in the MSE format: a self-signed P-256 certificate whose
//! extension `1.2.840.113741.1337.6` carries an SGX quote binding the
//! certificate's public key.
//!
//! REPORTDATA[0..32] = SHA-256 of the public key as the 65-byte uncompressed
//! point (`04 ‖ X ‖ Y`, not the SPKI DER); REPORTDATA[32..64] = what the
//! provider binds there (the app's fingerprint on TDX and SEV-SNP, see
//! [`QuoteProvider::app_binding`]), else the node's X25519 public key, or
//! zeros.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::provider::QuoteProvider;
use crate::AttestError;

/// OID of the extension holding the raw quote.
pub const QUOTE_OID: &[u64] = &[1, 2, 840, 113741, 1337, 6];
/// The same OID, dotted.
pub const QUOTE_OID_STR: &str = "1.2.840.113741.1337.6";

/// OID of the extension holding what endorses the evidence, served beside
/// it: on SEV-SNP the certificate table of configfs-tsm's `auxblob` (VCEK
/// or VLEK, ASK, ARK); for SGX and TDX quotes Intel's collateral (JSON),
/// when the node fetched it. A verifier then needs nothing else to check
/// the evidence. Under the quote extension's arc; absent when there is
/// nothing.
pub const AUX_OID: &[u64] = &[1, 2, 840, 113741, 1337, 6, 1];
/// The same OID, dotted.
pub const AUX_OID_STR: &str = "1.2.840.113741.1337.6.1";

/// A freshly made RA-TLS certificate and its private key.
pub struct RaTls {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 PEM. Never logged.
    pub key_pem: String,
    /// The quote in its extension, which binds its key.
    pub quote: Vec<u8>,
    /// What the TEE gave beside the quote ([`AUX_OID`]), if anything.
    pub aux: Option<Vec<u8>>,
}

impl std::fmt::Debug for RaTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaTls")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// REPORTDATA for a public key point and an optional X25519 key.
pub fn report_data(point: &[u8], x25519: Option<&[u8; 32]>) -> [u8; 64] {
    let mut data = [0u8; 64];
    data[..32].copy_from_slice(&Sha256::digest(point));
    if let Some(key) = x25519 {
        data[32..].copy_from_slice(key);
    }
    data
}

/// Creates an RA-TLS certificate for `domain`, valid until `not_after`, with a
/// quote from `provider` over the new key (and over the provider's app
/// binding, when it has one, instead of `x25519`).
pub fn create(
    domain: &str,
    not_after: DateTime<Utc>,
    x25519: Option<&[u8; 32]>,
    provider: &dyn QuoteProvider,
    now: DateTime<Utc>,
) -> Result<RaTls, AttestError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| {
        AttestError::CertificateBuild {
            context: Some("cannot generate a key".into()),
            source,
        }
    })?;
    let binding = provider.app_binding();
    let data = report_data(key.public_key_raw(), binding.as_ref().or(x25519));
    let attested = provider.attest(&data)?;
    let quote = attested.evidence;
    let aux = attested.aux.filter(|aux| !aux.is_empty());
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|source| {
        AttestError::CertificateBuild {
            context: Some(format!("invalid domain `{domain}`")),
            source,
        }
    })?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, domain);
    params.not_before = to_offset(now - chrono::Duration::minutes(1))?;
    params.not_after = to_offset(not_after)?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        QUOTE_OID,
        quote.clone(),
    )];
    if let Some(aux) = &aux {
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                AUX_OID,
                aux.clone(),
            ));
    }
    let cert = params
        .self_signed(&key)
        .map_err(|source| AttestError::CertificateBuild {
            context: Some("cannot sign the certificate".into()),
            source,
        })?;
    Ok(RaTls {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: key.serialize_pem(),
        quote,
        aux,
    })
}

pub(crate) fn to_offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime, AttestError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|source| AttestError::DateOutOfRange { source })
}

/// What a certificate says about itself.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// The raw quote from the extension.
    pub quote_bytes: Vec<u8>,
    /// What the TEE gave beside it ([`AUX_OID`]), if the certificate has it.
    pub aux: Option<Vec<u8>>,
    /// The certificate's public key point.
    pub public_key: Vec<u8>,
    /// DNS names of the certificate.
    pub dns_names: Vec<String>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
}

/// Parses one DER certificate, with nothing after it.
pub(crate) fn parse_der(cert_der: &[u8]) -> Result<X509Certificate<'_>, AttestError> {
    let (rest, cert) =
        X509Certificate::from_der(cert_der).map_err(|source| AttestError::NotX509 { source })?;
    if !rest.is_empty() {
        return Err(AttestError::Certificate(
            "trailing bytes after the certificate".into(),
        ));
    }
    Ok(cert)
}

/// The issuer of a certificate (DER), as a distinguished name.
pub fn issuer(cert_der: &[u8]) -> Result<String, AttestError> {
    Ok(parse_der(cert_der)?.issuer().to_string())
}

/// Extracts the quote and public key of a certificate (DER).
pub fn inspect(cert_der: &[u8]) -> Result<Inspected, AttestError> {
    let cert = parse_der(cert_der)?;
    let quote_bytes = cert
        .extensions()
        .iter()
        .find(|ext| ext.oid.to_id_string() == QUOTE_OID_STR)
        .map(|ext| ext.value.to_vec())
        .ok_or(AttestError::NoQuote)?;
    let aux = cert
        .extensions()
        .iter()
        .find(|ext| ext.oid.to_id_string() == AUX_OID_STR)
        .map(|ext| ext.value.to_vec());
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Inspected {
        quote_bytes,
        aux,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        dns_names,
        not_after: DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
            .ok_or_else(|| AttestError::Certificate("notAfter out of range".into()))?,
    })
}

/// Checks that `quote` binds `public_key` (REPORTDATA[0..32]).
pub fn check_binding(report_data: &[u8; 64], public_key: &[u8]) -> Result<(), AttestError> {
    let expected = Sha256::digest(public_key);
    if report_data[..32] == expected[..] {
        Ok(())
    } else {
        Err(AttestError::Binding)
    }
}

/// A certificate (DER) as PEM: 64-character lines, LF line endings.
pub fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Converts PEM to DER for the first certificate of a PEM text.
pub fn pem_to_der(pem: &[u8]) -> Result<Vec<u8>, AttestError> {
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|source| AttestError::Pem { source })?;
        if block.label == "CERTIFICATE" {
            return Ok(block.contents);
        }
    }
    Err(AttestError::Certificate(
        "no `BEGIN CERTIFICATE` block".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_is_standard_with_short_lines_and_reads_back() {
        assert_eq!(
            der_to_pem(b"Man"),
            "-----BEGIN CERTIFICATE-----\nTWFu\n-----END CERTIFICATE-----\n"
        );
        let long = der_to_pem(&[7u8; 100]);
        assert!(long.lines().all(|l| l.len() <= 64));
        assert_eq!(pem_to_der(long.as_bytes()).unwrap(), vec![7u8; 100]);
    }
}
