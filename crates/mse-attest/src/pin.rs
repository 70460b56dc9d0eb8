//! TLS clients that trust exactly one certificate: the RA-TLS certificate
//! that was verified, or the certificate a node was given to serve; and the
//! first contact, which only captures the server's certificate for checking;
//! and mutually attested TLS, where each side shows its RA-TLS certificate.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// With a pinned certificate, accepts a server only when its leaf is exactly
/// that one (names and dates are not checked: the certificate itself is the
/// trust anchor). Without, accepts any server and records its leaf, to be
/// verified before anything is sent. Either way the server must prove it
/// holds the certificate's key.
#[derive(Debug)]
pub struct ServerCert {
    pinned: Option<Vec<u8>>,
    seen: Mutex<Option<Vec<u8>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCert {
    /// The leaf certificate (DER) the server presented, if any.
    pub fn seen(&self) -> Option<Vec<u8>> {
        self.seen.lock().ok().and_then(|seen| seen.clone())
    }
}

impl ServerCertVerifier for ServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(end_entity.to_vec());
        }
        if self
            .pinned
            .as_deref()
            .is_none_or(|pinned| pinned == end_entity.as_ref())
        {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate is not the verified one".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.provider, false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.provider, true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Checks that the peer's certificate key signed the handshake (TLS 1.3
/// when `tls13`), with the provider's algorithms: what every verifier here
/// asks, whatever it does of the certificate itself.
fn handshake_signature(
    provider: &CryptoProvider,
    tls13: bool,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let algorithms = &provider.signature_verification_algorithms;
    if tls13 {
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    } else {
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }
}

fn config(pinned: Option<Vec<u8>>, alpn: &[&[u8]]) -> (rustls::ClientConfig, Arc<ServerCert>) {
    let provider = crate::tls::provider();
    let verifier = Arc::new(ServerCert {
        pinned,
        seen: Mutex::new(None),
        provider: provider.clone(),
    });
    let builder = crate::tls::client_builder(provider)
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone());
    (crate::tls::with_alpn(builder, alpn), verifier)
}

/// A client configuration trusting only `cert_der`, offering `alpn`.
pub fn client_config(cert_der: &[u8], alpn: &[&[u8]]) -> rustls::ClientConfig {
    config(Some(cert_der.to_vec()), alpn).0
}

/// A client configuration for the first contact: it accepts any server and
/// records its certificate, which must be verified before anything is sent.
pub fn capture_config(alpn: &[&[u8]]) -> (rustls::ClientConfig, Arc<ServerCert>) {
    config(None, alpn)
}

/// A client configuration trusting only `cert_der` and presenting its own
/// certificate `own_cert_der` (whose key is `own_key`) when the server asks:
/// the mutually attested TLS of two key-service replicas, each showing the
/// other its RA-TLS certificate.
pub fn client_config_with_identity(
    cert_der: &[u8],
    own_cert_der: &[u8],
    own_key: rustls::pki_types::PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = crate::tls::provider();
    let verifier = Arc::new(ServerCert {
        pinned: Some(cert_der.to_vec()),
        seen: Mutex::new(None),
        provider: provider.clone(),
    });
    let mut config = crate::tls::client_builder(provider)
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![CertificateDer::from(own_cert_der.to_vec())], own_key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// On a server: asks every client for a certificate, accepts a client
/// without one, and accepts any one certificate whose key signs the
/// handshake. What it certifies is the server's to verify afterwards (an
/// RA-TLS certificate's evidence): the handshake only proves the client
/// holds the certificate's key.
#[derive(Debug)]
pub struct AnyClientCert {
    provider: Arc<CryptoProvider>,
}

impl rustls::server::danger::ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.provider, false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.provider, true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A server configuration presenting `chain` (leaf first, key `key`),
/// offering `alpn`, that asks clients for a certificate without requiring
/// one ([`AnyClientCert`]): the connection's peer certificate, when there
/// is one, is for the server to verify.
pub fn server_config_asking_client_cert(
    chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = crate::tls::provider();
    let verifier = Arc::new(AnyClientCert {
        provider: provider.clone(),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
