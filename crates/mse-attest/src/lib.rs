//! Attestation: SGX DCAP quotes, RA-TLS certificates in the MSE format,
//! MRSIGNER, app fingerprints, the simulation TEE and certificate verification.
//!
//! The core is pure: verification takes certificate bytes, collateral and
//! "now" and returns a [`verify::Verification`]. Files, devices and the
//! network stay in [`collateral`] and [`provider`].

pub mod collateral;
pub mod dcap;
pub mod fingerprint;
pub mod pin;
pub mod provider;
pub mod quote;
pub mod ratls;
pub mod signer;
pub mod simulation;
pub mod tls;
pub mod verify;

/// Errors of the attestation layer.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The quote is malformed.
    #[error("malformed quote: {0}")]
    Quote(String),
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
    /// REPORTDATA does not bind the certificate's key.
    #[error("REPORTDATA does not bind the certificate's public key")]
    Binding,
    /// The signer key is unusable.
    #[error("signer key: {0}")]
    SignerKey(String),
    /// A quote provider failed.
    #[error("quote provider: {0}")]
    Provider(String),
    /// Collateral could not be read or fetched.
    #[error("collateral: {0}")]
    Collateral(String),
}
