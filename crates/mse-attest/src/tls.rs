//! The TLS configurations of the system, chosen once: the ring provider,
//! rustls's safe default protocol versions (TLS 1.2 and 1.3) and the ALPN
//! each caller names. Servers present one chain or pick a certificate per
//! connection; clients trust CA roots here, or exactly one certificate (or
//! capture the first one) with [`crate::pin`].

use std::sync::Arc;

use rustls::client::WantsClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ResolvesServerCert, WantsServerCert};
use rustls::{ClientConfig, ConfigBuilder, RootCertStore, ServerConfig, WantsVerifier};

/// ALPN of the HTTP/1.1 servers and clients: the node's, the proxy's.
pub const HTTP1: &[&[u8]] = &[b"http/1.1"];

/// The crypto provider of every configuration: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn alpn_list(alpn: &[&[u8]]) -> Vec<Vec<u8>> {
    alpn.iter().map(|p| p.to_vec()).collect()
}

fn server_builder() -> ConfigBuilder<ServerConfig, WantsServerCert> {
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the safe default protocol versions")
        .with_no_client_auth()
}

/// A server configuration presenting `chain` (leaf first), whose key is
/// `key`, offering `alpn`. Fails when the key does not fit the leaf.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<ServerConfig, rustls::Error> {
    let mut config = server_builder().with_single_cert(chain, key)?;
    config.alpn_protocols = alpn_list(alpn);
    Ok(config)
}

/// A server configuration whose certificate `resolver` picks per
/// connection (by SNI), offering `alpn`.
pub fn resolving_server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    alpn: &[&[u8]],
) -> ServerConfig {
    let mut config = server_builder().with_cert_resolver(resolver);
    config.alpn_protocols = alpn_list(alpn);
    config
}

/// The first steps of every client configuration: the provider and the
/// protocol versions.
pub(crate) fn client_builder(
    provider: Arc<CryptoProvider>,
) -> ConfigBuilder<ClientConfig, WantsVerifier> {
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the safe default protocol versions")
}

/// Completes a client configuration with `alpn`.
pub(crate) fn with_alpn(
    builder: ConfigBuilder<ClientConfig, WantsClientCert>,
    alpn: &[&[u8]],
) -> ClientConfig {
    let mut config = builder.with_no_client_auth();
    config.alpn_protocols = alpn_list(alpn);
    config
}

/// A client configuration trusting the CAs `roots` (names and dates
/// checked, as for any web PKI server), offering `alpn`.
pub fn ca_client_config(roots: RootCertStore, alpn: &[&[u8]]) -> ClientConfig {
    with_alpn(
        client_builder(provider()).with_root_certificates(roots),
        alpn,
    )
}

/// A client configuration trusting exactly the CA whose certificate's
/// SHA-256 (DER) is `ca_sha256`, offering `alpn`: the server's chain must
/// hold that CA, and the server's certificate must chain to it and name
/// the server dialled (as `kubeadm join` pins its CA by hash). What a node
/// host trusts of the platform, from its join token.
pub fn pinned_ca_client_config(ca_sha256: [u8; 32], alpn: &[&[u8]]) -> ClientConfig {
    let verifier = PinnedCa {
        sha256: ca_sha256,
        provider: provider(),
    };
    with_alpn(
        client_builder(provider())
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier)),
        alpn,
    )
}

/// The verifier of [`pinned_ca_client_config`].
#[derive(Debug)]
struct PinnedCa {
    sha256: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use sha2::Digest as _;
        let ca = intermediates
            .iter()
            .find(|c| <[u8; 32]>::from(sha2::Sha256::digest(c.as_ref())) == self.sha256)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the server's certificate chain does not hold the pinned CA".into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, ServerConnection};

    fn self_signed(name: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    }

    /// Runs a handshake in memory; the client's connection once done.
    fn handshake(
        client: ClientConfig,
        server: ServerConfig,
        name: &str,
    ) -> Result<ClientConnection, rustls::Error> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut client = ClientConnection::new(Arc::new(client), name)?;
        let mut server = ServerConnection::new(Arc::new(server))?;
        while client.is_handshaking() || server.is_handshaking() {
            let mut bytes = Vec::new();
            client.write_tls(&mut bytes).unwrap();
            server.read_tls(&mut bytes.as_slice()).unwrap();
            server.process_new_packets()?;
            let mut bytes = Vec::new();
            server.write_tls(&mut bytes).unwrap();
            client.read_tls(&mut bytes.as_slice()).unwrap();
            client.process_new_packets()?;
        }
        Ok(client)
    }

    #[test]
    fn a_ca_rooted_client_and_a_server_agree_on_the_alpn_offered() {
        let (cert, key) = self_signed("app.example.test");
        let mut roots = RootCertStore::empty();
        roots.add(cert.clone()).unwrap();
        let server = server_config(vec![cert], key, HTTP1).unwrap();
        let client = handshake(ca_client_config(roots, HTTP1), server, "app.example.test").unwrap();
        assert_eq!(client.alpn_protocol(), Some(&b"http/1.1"[..]));
    }

    #[test]
    fn a_ca_rooted_client_refuses_a_server_outside_its_roots() {
        let (cert, key) = self_signed("app.example.test");
        let (other, _) = self_signed("app.example.test");
        let mut roots = RootCertStore::empty();
        roots.add(other).unwrap();
        let server = server_config(vec![cert], key, HTTP1).unwrap();
        assert!(handshake(ca_client_config(roots, HTTP1), server, "app.example.test").is_err());
    }

    #[test]
    fn pinned_and_capturing_clients_share_the_servers_settings() {
        let (cert, key) = self_signed("node.example.test");
        let server = || server_config(vec![cert.clone()], key.clone_key(), HTTP1).unwrap();
        let pinned = crate::pin::client_config(&cert, HTTP1);
        let client = handshake(pinned, server(), "node.example.test").unwrap();
        assert_eq!(client.alpn_protocol(), Some(&b"http/1.1"[..]));
        let (capture, seen) = crate::pin::capture_config(&[]);
        let client = handshake(capture, server(), "node.example.test").unwrap();
        assert_eq!(client.alpn_protocol(), None, "no ALPN offered, none chosen");
        assert_eq!(seen.seen().as_deref(), Some(cert.as_ref()));
    }

    #[test]
    fn a_key_that_does_not_fit_the_certificate_is_refused() {
        let (cert, _) = self_signed("a.example.test");
        let (_, key) = self_signed("a.example.test");
        assert!(server_config(vec![cert], key, HTTP1).is_err());
    }

    /// A CA and a leaf it issued for `name`: (CA DER, leaf DER, leaf key).
    fn issued(
        name: &str,
    ) -> (
        CertificateDer<'static>,
        CertificateDer<'static>,
        PrivateKeyDer<'static>,
    ) {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (
            ca.der().clone(),
            leaf.der().clone(),
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    }

    #[test]
    fn a_ca_pinned_by_hash_is_trusted_for_its_leaves_and_nothing_else() {
        use sha2::Digest as _;
        let (ca, leaf, key) = issued("198.18.0.1");
        let pin: [u8; 32] = sha2::Sha256::digest(ca.as_ref()).into();
        let server = |chain: Vec<CertificateDer<'static>>| {
            server_config(chain, key.clone_key(), HTTP1).unwrap()
        };
        let full = || vec![leaf.clone(), ca.clone()];
        let client = handshake(
            pinned_ca_client_config(pin, HTTP1),
            server(full()),
            "198.18.0.1",
        );
        assert_eq!(client.unwrap().alpn_protocol(), Some(&b"http/1.1"[..]));
        // Another pin, a chain without the CA, another name: refused.
        let other = pinned_ca_client_config([7; 32], HTTP1);
        assert!(handshake(other, server(full()), "198.18.0.1").is_err());
        let bare = server(vec![leaf.clone()]);
        assert!(handshake(pinned_ca_client_config(pin, HTTP1), bare, "198.18.0.1").is_err());
        let named = handshake(
            pinned_ca_client_config(pin, HTTP1),
            server(full()),
            "198.18.0.9",
        );
        assert!(named.is_err());
        // A server that sends the pinned CA beside a leaf of another CA.
        let (_, stranger, stranger_key) = issued("198.18.0.1");
        let mixed = server_config(vec![stranger, ca.clone()], stranger_key, HTTP1).unwrap();
        assert!(handshake(pinned_ca_client_config(pin, HTTP1), mixed, "198.18.0.1").is_err());
    }
}
