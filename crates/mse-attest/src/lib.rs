//! Attestation: SGX DCAP quotes, RA-TLS certificates in the MSE format,
//! MRSIGNER, app fingerprints, the simulation TEE, SEV-SNP reports ([`snp`])
//! and certificate verification.
//!
//! The core is pure: verification takes certificate bytes, collateral and
//! "now" and returns a [`verify::Verification`]. Files, devices and the
//! network stay in [`collateral`] and [`provider`]. A certificate that
//! carries no quote (ACME, the owner's) is verified with the node's
//! [`evidence`].
//!
//! Collateral for genuine SGX quotes is read from a file, or with the `pccs`
//! feature (on by default) fetched from a PCCS by [`collateral::fetch_pccs`];
//! without that feature the crate has no HTTP client and no async runtime.
//!
//! # Example
//!
//! A node in the simulation TEE makes an RA-TLS certificate whose quote binds
//! its key; a verifier that pins the platform's simulation CA and expects
//! the app's measurements accepts it, and refuses it for another app:
//!
//! ```
//! use chrono::Utc;
//! use mse_attest::simulation::{SimulationCa, SimulationProvider};
//! use mse_attest::verify::{verify_certificate, Policy, Tee, NO_COLLATERAL};
//!
//! let now = Utc::now();
//! let ca = SimulationCa::generate(now)?;
//! let (mr_enclave, mr_signer) = ([7; 32], [9; 32]);
//! let node = SimulationProvider::new(ca.issue_pck("host-1", now)?, mr_enclave, mr_signer);
//! let cert = mse_attest::ratls::create("app.localhost", now + chrono::Duration::hours(4), None, &node, now)?;
//!
//! let policy = Policy {
//!     mr_signer: Some(mr_signer),
//!     mr_enclave: Some(mr_enclave),
//!     accepted_tcb: Vec::new(),
//!     allow_simulation: true,
//!     simulation_ca: Some(ca.cert_der().to_vec()),
//!     simulation_revoked: Some(Vec::new()),
//!     ..Policy::default()
//! };
//! let verification = verify_certificate(&cert.cert_der, &policy, Err(NO_COLLATERAL), now);
//! assert!(verification.verified, "{:?}", verification.failures());
//! assert_eq!(verification.tee, Some(Tee::Simulation));
//!
//! // Another app's fingerprint: the quote does not match it.
//! let other = Policy { mr_enclave: Some([8; 32]), ..policy };
//! let verification = verify_certificate(&cert.cert_der, &other, Err(NO_COLLATERAL), now);
//! assert!(!verification.verified);
//! assert!(verification.failures()[0].starts_with("mr_enclave"));
//! # Ok::<(), mse_attest::AttestError>(())
//! ```

use std::path::PathBuf;

pub mod bundle;
pub mod collateral;
pub mod dcap;
pub mod enclave;
pub mod evidence;
pub mod fingerprint;
pub mod hardware;
pub mod pin;
pub mod provider;
pub mod quote;
pub mod ratls;
pub mod signer;
pub mod simulation;
pub mod snp;
pub mod tls;
pub mod verify;

/// Errors of the attestation layer. Where an underlying error caused it,
/// it is the [`std::error::Error::source`], and its text ends the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The quote is malformed.
    #[error("malformed quote: {0}")]
    Quote(String),
    /// The bytes are not an SEV-SNP attestation report.
    #[error("malformed SEV-SNP report: {0}")]
    SnpReport(String),
    /// The SEV-SNP certificate chain (PEM or certificate table) is malformed.
    #[error("SEV-SNP certificate chain: {0}")]
    SnpChain(String),
    /// The certificate is malformed or not an RA-TLS certificate.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The certificate is well formed but carries no quote: it is not an
    /// RA-TLS certificate (an owner's certificate, or not an MSE app's).
    #[error(
        "certificate: no quote extension {}: not an RA-TLS certificate",
        ratls::QUOTE_OID_STR
    )]
    NoQuote,
    /// A certificate or its key could not be generated or signed.
    #[error("certificate: {}{source}", prefix(context))]
    CertificateBuild {
        /// What was being done, if more than the error says.
        context: Option<String>,
        /// The generator's error.
        #[source]
        source: rcgen::Error,
    },
    /// The bytes are not a DER X.509 certificate.
    #[error("certificate: not an X.509 certificate: {source}")]
    NotX509 {
        /// The parser's error.
        #[source]
        source: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
    /// The text is not valid PEM.
    #[error("certificate: invalid PEM: {source}")]
    Pem {
        /// The parser's error.
        #[source]
        source: x509_parser::error::PEMError,
    },
    /// A date cannot be written in a certificate.
    #[error("certificate: date out of range: {source}")]
    DateOutOfRange {
        /// The conversion's error.
        #[source]
        source: time::error::ComponentRange,
    },
    /// The evidence a node publishes is malformed or unsupported.
    #[error("evidence: {0}")]
    Evidence(String),
    /// The evidence is not JSON of the expected shape.
    #[error(
        "evidence: not the JSON a node serves at {}: {source}",
        evidence::EVIDENCE_PATH
    )]
    EvidenceJson {
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// REPORTDATA does not bind the certificate's key.
    #[error("REPORTDATA does not bind the certificate's public key")]
    Binding,
    /// The signer key is unusable.
    #[error("signer key: {0}")]
    SignerKey(String),
    /// A quote provider failed.
    #[error("quote provider: {0}")]
    Provider(String),
    /// A file of the quote provider could not be read or written.
    #[error("quote provider: cannot {action} {}: {source}", path.display())]
    ProviderIo {
        /// `read`, `write` or `create`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Collateral could not be read or fetched.
    #[error("collateral: {0}")]
    Collateral(String),
    /// A collateral file or folder could not be read or written.
    #[error("collateral: {}: {source}", path.display())]
    CollateralIo {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Collateral is not (or cannot be written as) the JSON form.
    #[error("collateral: {}{source}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    CollateralJson {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// `"context: "`, or nothing.
fn prefix(context: &Option<String>) -> String {
    context
        .as_ref()
        .map(|c| format!("{c}: "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::path::Path;

    use super::AttestError;

    #[test]
    fn an_unreadable_collateral_file_names_it_and_keeps_the_io_error() {
        let path = Path::new("/nonexistent/collateral.json");
        let error = crate::collateral::from_file(path).unwrap_err();
        assert!(
            matches!(error, AttestError::CollateralIo { .. }),
            "{error:?}"
        );
        let io = error
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("the I/O error is the source");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(
            error.to_string(),
            format!("collateral: {}: {io}", path.display())
        );
    }

    #[test]
    fn bytes_that_are_not_a_certificate_keep_the_parsers_error() {
        let error = crate::ratls::inspect(b"not DER").unwrap_err();
        let source = error.source().expect("the parser's error is the source");
        assert_eq!(
            error.to_string(),
            format!("certificate: not an X.509 certificate: {source}")
        );
    }
}
