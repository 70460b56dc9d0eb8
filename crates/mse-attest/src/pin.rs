//! TLS clients that trust exactly one certificate: the RA-TLS certificate
//! that was verified, or the certificate a node was given to serve; and the
//! first contact, which only captures the server's certificate for checking.

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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
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
