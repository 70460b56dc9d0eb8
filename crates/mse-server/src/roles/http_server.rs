//! The REST API's HTTP/1.1 server: the accept loop around the router, with
//! a limit at every step — a total and a per-source connection cap
//! ([`ConnectionCaps`]), a deadline for each request's header (which also
//! closes idle keep-alive connections) and for its body, and accept errors
//! (out of descriptors, …) that slow the loop down instead of ending it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

use crate::roles::limits::{at_most_a_year, ConnectionCaps, Refused};
use crate::state::{ApiError, Connection};

/// The API server's timeouts and limits.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// From a connection's start, or the end of its last response, to the
    /// end of the next request's header; then the connection is closed.
    pub header_timeout: Duration,
    /// From a request's header to the end of its body; a body still
    /// arriving then is answered 408.
    pub body_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Connections served at once from one source address (IPv4, or an
    /// IPv6 /64); more from it are answered 503 and closed.
    pub max_connections_per_source: usize,
    /// After shutdown, how long live connections may finish their request.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(600),
            max_connections: 1024,
            max_connections_per_source: 64,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// How long the loop pauses after a failed accept (out of descriptors and
/// the like), so that it neither spins nor gives up.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` resolves: then stops
/// accepting, lets live connections finish their request for
/// `limits.shutdown_grace`, cuts the rest and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    serve_tls(listener, router, limits, None, shutdown).await;
}

/// [`serve`], over TLS when `tls` is given: the handshake must end within
/// the header deadline.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = HttpLimits {
        header_timeout: at_most_a_year(limits.header_timeout),
        body_timeout: at_most_a_year(limits.body_timeout),
        shutdown_grace: at_most_a_year(limits.shutdown_grace),
        ..limits
    };
    let caps = ConnectionCaps::new(limits.max_connections, limits.max_connections_per_source);
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let slot = match caps.admit(peer.ip()) {
                        Ok(slot) => slot,
                        Err(refused) => {
                            if tls.is_none() {
                                refuse(&stream, refused);
                            }
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let Ok(local) = stream.local_addr() else {
                        continue;
                    };
                    let link = Connection { peer, local };
                    let router = router.clone();
                    let limits = limits.clone();
                    let stop = stop.clone();
                    let tls = tls.clone();
                    tasks.spawn(async move {
                        match tls {
                            None => connection(stream, link, router, limits, stop).await,
                            Some(acceptor) => {
                                let handshake = acceptor.accept(stream);
                                if let Ok(Ok(stream)) =
                                    tokio::time::timeout(limits.header_timeout, handshake).await
                                {
                                    connection(stream, link, router, limits, stop).await;
                                }
                            }
                        }
                        drop(slot);
                    });
                }
                Err(e) => {
                    eprintln!("API: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
    drop(listener);
    let _ = stopping.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_grace, drain)
        .await
        .is_err()
    {
        tasks.shutdown().await;
    }
}

/// Serves one connection until it ends, or gracefully once `stop` turns.
async fn connection<S>(
    stream: S,
    link: Connection,
    router: Router,
    limits: HttpLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(link);
        handle(router.clone(), request, limits.body_timeout)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = async { let _ = stop.wait_for(|stop| *stop).await; } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Answers a connection over a cap with a 503 if its socket takes the bytes
/// at once (never waiting on it), then closes it.
fn refuse(stream: &tokio::net::TcpStream, refused: Refused) {
    let body: &[u8] = match refused {
        Refused::Total => {
            b"{\"error\":\"the API serves as many connections as it can; retry later\"}"
        }
        Refused::PerSource => {
            b"{\"error\":\"too many connections from your address; close some and retry\"}"
        }
    };
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let mut reply = head.into_bytes();
    reply.extend_from_slice(body);
    let _ = stream.try_write(&reply);
}

/// One request: its body bounded by `body_timeout`, answered 408 when the
/// body did not arrive in time.
async fn handle(
    router: Router,
    request: Request<Incoming>,
    body_timeout: Duration,
) -> Result<axum::response::Response, std::convert::Infallible> {
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + body_timeout)),
            expired: expired.clone(),
        })
    });
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if expired.load(Ordering::Relaxed) {
        return Ok(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s; send it faster or in smaller parts",
                body_timeout.as_secs()
            ),
        )
        .into_response());
    }
    Ok(response)
}

/// A request body that fails once its deadline passes.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

/// The error of a request body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

impl hyper::body::Body for DeadlineBody {
    type Data = hyper::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
