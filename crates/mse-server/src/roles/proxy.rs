//! The SNI proxy: routes each TLS connection to the node of the app its
//! ClientHello names.
//!
//! A node normally serves TLS itself (RA-TLS or the owner's certificate), so
//! the proxy only reads the ClientHello's server name and splices bytes both
//! ways without decrypting anything ([`RouteMode::Passthrough`]). Only for
//! `--untrusted-ssl` apps does it terminate TLS with the operator's wildcard
//! certificate and forward the decrypted HTTP/1.1 stream to the node over
//! plain TCP ([`RouteMode::Terminate`]).
//!
//! The ClientHello parser (`mse_sni::parse_client_hello`) is a pure
//! function over the bytes read so far; [`serve`] is the network edge around it, with a
//! timeout or a limit at every step (handshake, connect, idle, connection
//! counts in all and per source address, shutdown).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};

use crate::domain::routing::RouteMode;
use crate::roles::limits::{at_most_a_year, ConnectionCaps};
use crate::state::Routes;
use mse_sni::{parse_client_hello, Hello, HelloError, MAX_HELLO_BYTES};

// ---------------------------------------------------------------------------
// Alerts
// ---------------------------------------------------------------------------

/// TLS `AlertDescription.handshake_failure`.
const ALERT_HANDSHAKE_FAILURE: u8 = 40;
/// TLS `AlertDescription.decode_error`.
const ALERT_DECODE_ERROR: u8 = 50;
/// TLS `AlertDescription.internal_error`.
const ALERT_INTERNAL_ERROR: u8 = 80;
/// TLS `AlertDescription.unrecognized_name`.
const ALERT_UNRECOGNIZED_NAME: u8 = 112;

/// TLS record content type `alert`.
const CONTENT_ALERT: u8 = 21;

/// A plaintext fatal alert record, as sent before any key exchange.
fn alert_record(description: u8) -> [u8; 7] {
    [CONTENT_ALERT, 3, 3, 0, 2, 2, description]
}

// ---------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------

/// The proxy's timeouts and limits.
#[derive(Debug, Clone)]
pub struct ProxyLimits {
    /// From accept to a complete ClientHello (and, in terminate mode, the end
    /// of the TLS handshake).
    pub handshake_timeout: Duration,
    /// Connecting to a node.
    pub connect_timeout: Duration,
    /// A spliced connection with no byte moving either way is closed.
    pub idle_timeout: Duration,
    /// Connections handled at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// Connections handled at once from one source address (an IPv4
    /// address or an IPv6 /64); more from it are closed as soon as accepted,
    /// so one client cannot take every place.
    pub max_connections_per_source: usize,
    /// After shutdown, how long live connections may go on.
    pub shutdown_grace: Duration,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            max_connections: 4096,
            max_connections_per_source: 256,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The TLS configuration for terminate mode: the operator's wildcard
/// certificate chain and key (PEM), ALPN `http/1.1` only, ring provider.
pub fn terminate_config(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("the wildcard certificate is not valid PEM")?;
    if chain.is_empty() {
        anyhow::bail!("the wildcard certificate PEM holds no certificate");
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .context("the wildcard key is not a valid PEM private key")?;
    let config = mse_attest::tls::server_config(chain, key, mse_attest::tls::HTTP1)
        .context("the wildcard key does not fit its certificate")?;
    Ok(Arc::new(config))
}

/// The TLS configuration the platform terminates `--untrusted-ssl` apps'
/// connections with: the operator's wildcard where clients accept it, else a
/// certificate per name issued by the operator CA
/// ([`crate::data::operator_tls::OperatorCerts`]), from the data folder. ALPN
/// `http/1.1` only, ring provider.
pub fn load_terminate_config(
    data_dir: &Path,
    base_domain: &str,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = crate::data::operator_tls::OperatorCerts::load(data_dir, base_domain)?;
    Ok(Arc::new(mse_attest::tls::resolving_server_config(
        Arc::new(certs),
        mse_attest::tls::HTTP1,
    )))
}

/// What every connection task shares.
struct Shared {
    routes: Arc<Routes>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    limits: ProxyLimits,
}

/// Runs the proxy on `listener` until `shutdown` resolves: then stops
/// accepting, lets live connections go on for `limits.shutdown_grace`, cuts
/// the rest and returns. `terminate` serves [`RouteMode::Terminate`] routes;
/// without it they get a `handshake_failure` alert.
pub async fn serve(
    listener: TcpListener,
    routes: Arc<Routes>,
    terminate: Option<Arc<rustls::ServerConfig>>,
    limits: ProxyLimits,
    shutdown: impl Future<Output = ()>,
) {
    let limits = ProxyLimits {
        handshake_timeout: at_most_a_year(limits.handshake_timeout),
        connect_timeout: at_most_a_year(limits.connect_timeout),
        idle_timeout: at_most_a_year(limits.idle_timeout),
        max_connections: limits.max_connections.min(Semaphore::MAX_PERMITS),
        max_connections_per_source: limits.max_connections_per_source,
        shutdown_grace: at_most_a_year(limits.shutdown_grace),
    };
    let caps = ConnectionCaps::new(limits.max_connections, limits.max_connections_per_source);
    if let Ok(own) = listener.local_addr() {
        routes.add_platform_listener(own);
    }
    let shared = Arc::new(Shared {
        routes,
        acceptor: terminate.map(tokio_rustls::TlsAcceptor::from),
        limits,
    });
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Over a cap: dropping the stream closes it at once.
                    let Ok(permit) = caps.admit(peer.ip()) else {
                        continue;
                    };
                    let shared = shared.clone();
                    tasks.spawn(async move {
                        handle(stream, &shared).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: back off, don't spin.
                    eprintln!("proxy: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if timeout(shared.limits.shutdown_grace, drain).await.is_err() {
        tasks.shutdown().await;
    }
}

/// The bytes of a complete ClientHello (and whatever came with them) and its
/// server name.
struct ReadHello {
    bytes: Vec<u8>,
    server_name: Option<String>,
}

enum ReadError {
    /// The connection ended or failed.
    Io,
    /// Not a ClientHello.
    Hello(HelloError),
}

/// Reads until the bytes parse as a ClientHello, never more than
/// [`MAX_HELLO_BYTES`].
async fn read_hello<S: AsyncRead + Unpin>(stream: &mut S) -> Result<ReadHello, ReadError> {
    let mut bytes = Vec::with_capacity(2048);
    loop {
        match parse_client_hello(&bytes).map_err(ReadError::Hello)? {
            Hello::Complete { server_name } => return Ok(ReadHello { bytes, server_name }),
            Hello::NeedMore => {}
        }
        // NeedMore implies bytes.len() < MAX_HELLO_BYTES.
        let room = (MAX_HELLO_BYTES - bytes.len()).min(4096);
        bytes.reserve(room);
        let mut limited = (&mut *stream).take(room as u64);
        match limited.read_buf(&mut bytes).await {
            Ok(0) | Err(_) => return Err(ReadError::Io),
            Ok(_) => {}
        }
    }
}

/// One client connection, from accept to close.
async fn handle(mut client: TcpStream, shared: &Shared) {
    let _ = client.set_nodelay(true);
    let deadline = Instant::now() + shared.limits.handshake_timeout;
    let hello = match timeout_at(deadline, read_hello(&mut client)).await {
        Ok(Ok(hello)) => hello,
        // Silent, slow or gone; or not speaking TLS at all.
        Err(_) | Ok(Err(ReadError::Io | ReadError::Hello(HelloError::NotTls(_)))) => return,
        Ok(Err(ReadError::Hello(_))) => {
            return refuse(client, ALERT_DECODE_ERROR).await;
        }
    };
    // A name the table does not know yet may be in the store already (a
    // node in another process): `resolve` looks there too, within the
    // handshake's time.
    let route = match hello.server_name.as_deref() {
        Some(name) => timeout_at(deadline, shared.routes.resolve(name))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let Some(route) = route else {
        return refuse(client, ALERT_UNRECOGNIZED_NAME).await;
    };
    // Defence in depth: whatever a host got into the table, the proxy
    // never connects to a platform listener, nor a remote host's app to
    // this machine or a link-local address.
    if !shared.routes.forwardable(&route) {
        eprintln!(
            "proxy: app {} leads to {}, a platform listener or no host's address: refused",
            route.app_id, route.addr
        );
        return refuse(client, ALERT_INTERNAL_ERROR).await;
    }
    match route.mode {
        RouteMode::Passthrough => {
            let Some(mut node) = connect(route.addr, &shared.limits).await else {
                return refuse(client, ALERT_INTERNAL_ERROR).await;
            };
            let limits = &shared.limits;
            let sent = timeout(limits.idle_timeout, node.write_all(&hello.bytes)).await;
            if matches!(sent, Ok(Ok(()))) {
                splice(client, node, limits.idle_timeout).await;
            }
        }
        RouteMode::Terminate => {
            let Some(acceptor) = &shared.acceptor else {
                return refuse(client, ALERT_HANDSHAKE_FAILURE).await;
            };
            let replay = Replay {
                prefix: hello.bytes,
                pos: 0,
                inner: client,
            };
            let Ok(Ok(mut tls)) = timeout_at(deadline, acceptor.accept(replay)).await else {
                return;
            };
            match connect(route.addr, &shared.limits).await {
                Some(node) => splice(tls, node, shared.limits.idle_timeout).await,
                None => {
                    let reply = b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\n\
                        content-length: 25\r\nconnection: close\r\n\r\nthe app is not reachable\n";
                    let _ = timeout(shared.limits.connect_timeout, async {
                        tls.write_all(reply).await?;
                        tls.shutdown().await
                    })
                    .await;
                }
            }
        }
    }
}

/// Connects to a node within the connect timeout.
async fn connect(addr: SocketAddr, limits: &ProxyLimits) -> Option<TcpStream> {
    let node = timeout(limits.connect_timeout, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let _ = node.set_nodelay(true);
    Some(node)
}

/// Sends a fatal alert and closes, reading (and dropping) what the client
/// still sends for a moment so the close does not reset the connection
/// before the alert is read.
async fn refuse(mut client: TcpStream, description: u8) {
    let _ = timeout(Duration::from_secs(1), async {
        client.write_all(&alert_record(description)).await?;
        client.shutdown().await?;
        let mut sink = [0u8; 1024];
        let mut drained = 0;
        while drained < 64 * 1024 {
            match client.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        io::Result::Ok(())
    })
    .await;
}

/// Copies both ways until both sides are done, or nothing moved for `idle`.
async fn splice<A, B>(a: A, b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let mut a = Tracked {
        inner: a,
        activity: activity.clone(),
    };
    let mut b = Tracked {
        inner: b,
        activity: activity.clone(),
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, 16 * 1024, 16 * 1024) => {}
        () = activity.idle_for(idle) => {}
    }
}

/// Whether a spliced connection moved a byte lately: a counter bumped on
/// every read or write that moved bytes (no clock on the data path), checked
/// by the idle watchdog a few times per idle period.
#[derive(Clone)]
struct Activity {
    moves: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            moves: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        self.moves.fetch_add(1, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `idle` (to within a quarter of it).
    async fn idle_for(&self, idle: Duration) {
        let tick = idle / 4;
        let mut seen = self.moves.load(Ordering::Relaxed);
        let mut quiet = Duration::ZERO;
        loop {
            tokio::time::sleep(tick).await;
            let now = self.moves.load(Ordering::Relaxed);
            if now == seen {
                quiet += tick;
                if quiet >= idle {
                    return;
                }
            } else {
                seen = now;
                quiet = Duration::ZERO;
            }
        }
    }
}

/// A stream that records its activity.
struct Tracked<S> {
    inner: S,
    activity: Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A stream whose first reads replay bytes already read from it (the
/// ClientHello), so a TLS acceptor sees the connection from its start.
struct Replay<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let left = this.prefix.get(this.pos..).unwrap_or_default();
        if left.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = left.len().min(buf.remaining());
        buf.put_slice(&left[..n]);
        this.pos += n;
        if this.pos == this.prefix.len() {
            this.prefix = Vec::new();
            this.pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
