//! Certificates made on the spot, and a small blocking HTTPS client.
//!
//! [`TestCa`] is a throwaway certificate authority: it signs Pebble's own
//! HTTPS certificate and the certificates of the servers a test starts, so a
//! test can choose what a client trusts. [`https_get`] reads one resource
//! over HTTPS trusting only a given bundle, enough to talk to Pebble's
//! directory and management interface without an HTTP client crate.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

/// A certificate authority that lives as long as the test.
pub struct TestCa {
    key: rcgen::KeyPair,
    params: rcgen::CertificateParams,
    cert_pem: String,
}

/// A certificate issued by a [`TestCa`], with its private key.
pub struct IssuedCert {
    /// The leaf certificate followed by nothing else (the CA is the trust
    /// anchor and need not be sent).
    pub cert_pem: String,
    /// The leaf's private key (PKCS#8).
    pub key_pem: String,
}

impl TestCa {
    /// A new self-signed root whose common name is `name`.
    pub fn new(name: &str) -> anyhow::Result<TestCa> {
        let key = rcgen::KeyPair::generate().context("cannot generate a CA key")?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .context("cannot sign the CA certificate")?;
        Ok(TestCa {
            cert_pem: cert.pem(),
            key,
            params,
        })
    }

    /// The root certificate (PEM), for a client's trust store.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `names`: DNS names, or IP addresses written
    /// as such (`127.0.0.1`).
    pub fn issue(&self, names: &[&str]) -> anyhow::Result<IssuedCert> {
        let key = rcgen::KeyPair::generate().context("cannot generate a server key")?;
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone())
            .with_context(|| format!("invalid certificate names {names:?}"))?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, first.as_str());
        }
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = rcgen::Issuer::new(self.params.clone(), &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .context("cannot sign the server certificate")?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The answer to an [`https_get`].
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

/// `GET path` from `addr` over HTTPS, checking the server's certificate for
/// `server_name` against the certificates of `ca_pem` only.
///
/// Speaks HTTP/1.0 so the server answers with a plain body and closes the
/// connection; connecting, reading and writing each give up after 10 s.
pub fn https_get(
    addr: SocketAddr,
    server_name: &str,
    path: &str,
    ca_pem: &str,
) -> anyhow::Result<HttpResponse> {
    const TIMEOUT: Duration = Duration::from_secs(10);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.context("the CA bundle is not valid PEM")?)
            .context("the CA bundle holds an unusable certificate")?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string())
        .with_context(|| format!("{server_name:?} is not a server name"))?;
    let connection = rustls::ClientConnection::new(Arc::new(config), name)?;
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {server_name}:{}\r\n\r\n",
        addr.port()
    );
    stream
        .write_all(request.as_bytes())
        .with_context(|| format!("cannot send a request to https://{addr}{path}"))?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // A server that closes without a TLS close_notify still sent a
        // complete HTTP/1.0 answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => bail!("cannot read the answer of https://{addr}{path}: {e}"),
    }
    parse_response(&raw).with_context(|| format!("bad answer from https://{addr}{path}"))
}

fn parse_response(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no end of headers in {} bytes", raw.len());
    };
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status code in {status_line:?}"))?;
    Ok(HttpResponse {
        status,
        body: body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_splits_into_status_and_body() {
        let response =
            parse_response(b"HTTP/1.1 404 Not Found\r\nA: b\r\n\r\nno such page").unwrap();
        assert_eq!(response.status, 404);
        assert_eq!(response.body, "no such page");
    }

    #[test]
    fn a_response_without_headers_end_is_an_error() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
