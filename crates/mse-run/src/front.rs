//! The node's TLS front, for apps whose certificate the node holds apart
//! from the app: a browser-trusted ACME certificate (renewed in place) or
//! the owner's certificate (`[ssl]`).
//!
//! It ends TLS on the app's port with the current certificate, answers the
//! CA's `acme-tls/1` validation handshakes with the challenge certificate
//! ([`crate::acme::Challenges`]), serves the node's evidence at
//! [`mse_attest::evidence::EVIDENCE_PATH`], and forwards every other
//! request to the app server, which listens on a loopback port of its own
//! (the only one its sandbox lets it bind) and serves TLS with the node's
//! RA-TLS certificate, so the app sees HTTPS requests as it would behind
//! any other front. (A Unix socket would be private to the node, but
//! hypercorn's WSGI adapter fails on connections without a peer address.)
//! Each
//! client connection gets its own connection to the app; upgrades
//! (WebSocket) are spliced both ways.

use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Mutex, Semaphore};

use crate::acme::{Challenges, ACME_TLS_ALPN};

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers (the first and
/// each next one on a kept-alive connection).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to the app server may take.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The most client connections served at once.
const MAX_CONNECTIONS: usize = 1024;

/// The certificate the front presents, swapped in place on renewal.
#[derive(Debug)]
pub struct Presented {
    current: RwLock<Arc<CertifiedKey>>,
    challenges: Arc<Challenges>,
}

impl Presented {
    /// Presents `first`, and the challenges of `challenges` to `acme-tls/1`
    /// clients.
    pub fn new(first: CertifiedKey, challenges: Arc<Challenges>) -> Self {
        Presented {
            current: RwLock::new(Arc::new(first)),
            challenges,
        }
    }

    /// Presents `next` to every connection from now on.
    pub fn replace(&self, next: CertifiedKey) {
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(next);
        }
    }
}

impl ResolvesServerCert for Presented {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let validation = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        if validation {
            // Only the challenge certificate answers a validation
            // handshake (RFC 8737 §3); none is offered otherwise.
            return hello
                .server_name()
                .and_then(|name| self.challenges.get(name));
        }
        self.current.read().ok().map(|c| c.clone())
    }
}

/// The server configuration of the front: HTTP/1.1, and `acme-tls/1` for
/// the CA's validation.
pub fn server_config(presented: Arc<Presented>) -> rustls::ServerConfig {
    mse_attest::tls::resolving_server_config(presented, &[b"http/1.1", ACME_TLS_ALPN])
}

/// Where the app server listens, and how to reach it.
#[derive(Debug, Clone)]
pub struct Backend {
    /// The app server's loopback address.
    pub addr: std::net::SocketAddr,
    /// TLS to the app server, pinned to the node's RA-TLS certificate.
    pub tls: Arc<rustls::ClientConfig>,
    /// The app's domain (the SNI sent to the app server).
    pub domain: String,
}

impl Backend {
    /// A new HTTP/1.1 connection to the app server.
    pub async fn connect(&self) -> std::io::Result<SendRequest<Incoming>> {
        let attempt = async {
            let stream = TcpStream::connect(self.addr).await?;
            let name = ServerName::try_from(self.domain.clone())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let stream = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, stream)
                .await?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(connection.with_upgrades());
            Ok(sender)
        };
        tokio::time::timeout(BACKEND_TIMEOUT, attempt)
            .await
            .map_err(|_| std::io::Error::other("the app server did not answer in time"))?
    }
}

/// What the front serves.
pub struct Front {
    /// The TLS configuration (see [`server_config`]).
    pub tls: Arc<rustls::ServerConfig>,
    /// The app server.
    pub backend: Backend,
    /// The evidence document (JSON).
    pub evidence: Bytes,
}

type Body = BoxBody<Bytes, hyper::Error>;

fn full(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Serves `front` on `listener` until `stop` says why to stop.
pub async fn serve(
    listener: &TcpListener,
    front: Arc<Front>,
    stop: &mut watch::Receiver<Option<String>>,
) -> String {
    let acceptor = tokio_rustls::TlsAcceptor::from(front.tls.clone());
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
                let acceptor = acceptor.clone();
                let front = front.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    if tls.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
                        // A validation handshake: done once it completed.
                        return;
                    }
                    let backend: Arc<Mutex<Option<SendRequest<Incoming>>>> = Arc::default();
                    let service = hyper::service::service_fn(move |req| {
                        handle(req, front.clone(), backend.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(tls), service)
                        .with_upgrades()
                        .await;
                });
            }
            changed = stop.changed() => {
                if changed.is_ok() {
                    if let Some(reason) = stop.borrow().clone() {
                        return reason;
                    }
                }
            }
        }
    }
}

async fn handle(
    mut req: Request<Incoming>,
    front: Arc<Front>,
    backend: Arc<Mutex<Option<SendRequest<Incoming>>>>,
) -> Result<Response<Body>, Infallible> {
    if req.uri().path() == mse_attest::evidence::EVIDENCE_PATH {
        return Ok(match *req.method() {
            Method::GET | Method::HEAD => {
                let mut response = full(StatusCode::OK, "application/json", front.evidence.clone());
                response
                    .headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            _ => {
                let mut response = full(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "text/plain; charset=utf-8",
                    Bytes::from_static(b"the evidence is read with GET\n"),
                );
                response
                    .headers_mut()
                    .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                response
            }
        });
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut held = backend.lock().await;
    let usable = match held.as_mut() {
        Some(sender) => sender.ready().await.is_ok(),
        None => false,
    };
    if !usable {
        *held = front.backend.connect().await.ok();
    }
    let Some(sender) = held.as_mut() else {
        return Ok(unavailable());
    };
    let Ok(mut response) = sender.send_request(req).await else {
        *held = None;
        return Ok(unavailable());
    };
    drop(held);
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let app_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            if let (Ok(client), Ok(app)) = tokio::join!(client_upgrade, app_upgrade) {
                let _ = tokio::io::copy_bidirectional(
                    &mut TokioIo::new(client),
                    &mut TokioIo::new(app),
                )
                .await;
            }
        });
    }
    Ok(response.map(BodyExt::boxed))
}

fn unavailable() -> Response<Body> {
    full(
        StatusCode::BAD_GATEWAY,
        "text/plain; charset=utf-8",
        Bytes::from_static(b"the app server does not answer\n"),
    )
}
