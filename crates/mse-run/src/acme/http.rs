//! The ACME client's network edge: a small HTTPS client that opens one
//! connection per exchange and bounds each one in time and size.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::ServerName;
use serde_json::Value;

use super::AcmeError;

/// The most bytes read of one ACME response.
const MAX_RESPONSE: usize = 1 << 20;
/// The longest one HTTP exchange with the ACME server may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// One HTTP answer.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    headers: HeaderMap,
    pub(super) body: Bytes,
}

impl Answer {
    pub(super) fn header(&self, name: impl hyper::header::AsHeaderName) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub(super) fn json<T: serde::de::DeserializeOwned>(
        &self,
        step: &'static str,
    ) -> Result<T, AcmeError> {
        serde_json::from_slice(&self.body).map_err(|e| AcmeError::Protocol {
            step,
            why: format!("not the expected JSON: {e}"),
        })
    }
}

/// A TLS failure in words, with what to do about the one operators meet
/// most: a self-signed CA certificate as the ACME server's own.
fn tls_failure(e: &std::io::Error) -> String {
    let text = e.to_string();
    if text.contains("CaUsedAsEndEntity") {
        format!(
            "TLS: the ACME server's HTTPS certificate is a CA certificate (basicConstraints \
             CA:TRUE, as `openssl req -x509` makes by default), which TLS clients refuse as a \
             server's own. Give the server a certificate with CA:FALSE signed by a CA (for a \
             single self-signed one: `openssl req -x509 … -addext \
             basicConstraints=critical,CA:FALSE`), and that CA (or certificate) to \
             --acme-ca-bundle ({text})"
        )
    } else {
        format!("TLS: {text}")
    }
}

/// A small HTTPS client: one connection per exchange, each bounded.
pub(super) struct Http {
    tls: Arc<rustls::ClientConfig>,
}

impl Http {
    pub(super) fn new(ca_bundle: Option<&Path>) -> Result<Http, AcmeError> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_bundle {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    AcmeError::Local(format!(
                        "cannot read the ACME CA bundle {}: {e}",
                        path.display()
                    ))
                })?;
                for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| {
                        AcmeError::Local(format!("the ACME CA bundle {}: {e}", path.display()))
                    })?;
                    roots.add(cert).map_err(|e| {
                        AcmeError::Local(format!("the ACME CA bundle {}: {e}", path.display()))
                    })?;
                }
            }
            None => {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        if roots.is_empty() {
            return Err(AcmeError::Local(
                "no CA certificate to trust the ACME server's HTTPS with (give --acme-ca-bundle)"
                    .into(),
            ));
        }
        Ok(Http {
            tls: Arc::new(mse_attest::tls::ca_client_config(
                roots,
                mse_attest::tls::HTTP1,
            )),
        })
    }

    pub(super) async fn exchange(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Answer, AcmeError> {
        let unreachable = |why: String| AcmeError::Unreachable {
            url: url.to_string(),
            why,
        };
        let uri: hyper::Uri = url.parse().map_err(|e| unreachable(format!("{e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(unreachable(
                "the ACME server must be reached over https".into(),
            ));
        }
        let host = uri
            .host()
            .ok_or_else(|| unreachable("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let exchange = async {
            let stream = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let name =
                ServerName::try_from(host.clone()).map_err(|e| unreachable(e.to_string()))?;
            let stream = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, stream)
                .await
                .map_err(|e| unreachable(tls_failure(&e)))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
            tokio::spawn(connection);
            let authority = match uri.port_u16() {
                Some(port) => format!("{}:{port}", uri.host().unwrap_or_default()),
                None => uri.host().unwrap_or_default().to_string(),
            };
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, authority)
                .header(
                    hyper::header::USER_AGENT,
                    concat!("mse-run/", env!("CARGO_PKG_VERSION")),
                );
            let body = match body {
                Some(body) => {
                    request = request.header(CONTENT_TYPE, "application/jose+json");
                    Bytes::from(body.to_string())
                }
                None => Bytes::new(),
            };
            let request = request
                .body(Full::new(body))
                .map_err(|e| unreachable(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                unreachable(format!("no answer within {} s", EXCHANGE_TIMEOUT.as_secs()))
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTPS server on loopback whose certificate is `cert`, answering
    /// nothing: the handshake is what is tested.
    async fn server(cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> u16 {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = acceptor.accept(stream).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn a_self_signed_ca_certificate_as_the_servers_own_is_refused_saying_what_to_do() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let port = server(&cert, &key).await;
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("ca.pem");
        std::fs::write(&bundle, cert.pem()).unwrap();
        let http = Http::new(Some(&bundle)).unwrap();
        let url = format!("https://localhost:{port}/dir");
        let Err(e) = http.exchange(Method::GET, &url, None).await else {
            panic!("a CA certificate was accepted as the server's");
        };
        let text = e.to_string();
        assert!(
            text.contains("CA:FALSE") && text.contains("--acme-ca-bundle"),
            "{text}"
        );
    }
}
