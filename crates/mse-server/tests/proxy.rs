//! The SNI proxy, over real sockets and real TLS: a tokio-rustls echo server
//! stands for a node serving its own TLS, a plain TCP HTTP-ish server for an
//! `--untrusted-ssl` node; clients are rustls clients. Then the ClientHello
//! parser on its own, with hellos captured from rustls clients.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mse_server::domain::routing::{Route, RouteMode};
use mse_server::roles::proxy::{self, ProxyLimits};
use mse_server::state::Routes;
use mse_testkit::wait;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The bound on every wait of these tests.
const WAIT: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    mse_attest::tls::provider()
}

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A certificate and its key, DER and PEM.
struct Issued {
    der: CertificateDer<'static>,
    pem: String,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn issue(&self, names: &[&str]) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            der: cert.der().clone(),
            pem: cert.pem(),
            key,
        }
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        roots
    }
}

/// A node serving TLS itself: echoes what it reads.
struct Node {
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    /// TCP connections it accepted.
    accepted: Arc<AtomicUsize>,
}

async fn tls_echo_node(ca: &Ca, names: &[&str]) -> Node {
    let issued = ca.issue(names);
    let key = PrivateKeyDer::Pkcs8(issued.key.serialize_der().into());
    let config = mse_attest::tls::server_config(vec![issued.der.clone()], key, &[]).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    let (mut r, mut w) = tokio::io::split(tls);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    Node {
        addr,
        cert: issued.der,
        accepted,
    }
}

/// A node behind the proxy in terminate mode: plain TCP; answers one
/// HTTP-ish request with its own first line and closes.
struct PlainBackend {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
}

async fn plain_backend() -> PlainBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let seen = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                seen.lock().unwrap().extend_from_slice(&request);
                let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
                let body = [b"plain backend saw: ".as_slice(), line].concat();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    PlainBackend { addr, received }
}

/// A running proxy; dropping `stop` (or sending on it) shuts it down.
struct Proxy {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

async fn start_proxy(
    routes: Arc<Routes>,
    terminate: Option<Arc<ServerConfig>>,
    limits: ProxyLimits,
) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(proxy::serve(listener, routes, terminate, limits, async {
        let _ = stopped.await;
    }));
    Proxy {
        addr,
        stop: Some(stop),
        task,
    }
}

impl Proxy {
    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A TLS echo node for `a.apps.test`, and routes passing that name through
/// to it.
async fn echo_behind_a_apps_test(ca: &Ca) -> (Node, Arc<Routes>) {
    let node = tls_echo_node(ca, &["a.apps.test"]).await;
    let routes = Arc::new(Routes::default());
    routes.set("a.apps.test", route(node.addr, RouteMode::Passthrough, "a"));
    (node, routes)
}

fn route(addr: SocketAddr, mode: RouteMode, app_id: &str) -> Route {
    Route {
        addr,
        mode,
        app_id: app_id.to_string(),
        remote: false,
    }
}

fn client_config(roots: RootCertStore) -> ClientConfig {
    mse_attest::tls::ca_client_config(roots, &[])
}

async fn tls_connect(
    addr: SocketAddr,
    config: ClientConfig,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    tokio::time::timeout(WAIT, async {
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    })
    .await
    .expect("the TLS handshake ends in time")
}

/// Writes `message` and reads it back.
async fn echo(tls: &mut TlsStream<TcpStream>, message: &[u8]) -> Vec<u8> {
    tokio::time::timeout(WAIT, async {
        tls.write_all(message).await.unwrap();
        let mut back = vec![0u8; message.len()];
        tls.read_exact(&mut back).await.unwrap();
        back
    })
    .await
    .expect("the echo comes back in time")
}

/// The alert a handshake error reports having received.
fn alert_received(error: &std::io::Error) -> Option<AlertDescription> {
    match error.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

/// Reads until the peer closes (or resets); fails if it takes longer than
/// `WAIT`. Returns what was read.
async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut got))
        .await
        .expect("the proxy closes the connection in time");
    got
}

fn short_limits() -> ProxyLimits {
    ProxyLimits {
        handshake_timeout: WAIT,
        connect_timeout: WAIT,
        idle_timeout: Duration::from_secs(60),
        max_connections: 1024,
        max_connections_per_source: 1024,
        shutdown_grace: Duration::from_secs(30),
    }
}

// ---------------------------------------------------------------------------
// Passthrough
// ---------------------------------------------------------------------------

#[tokio::test]
async fn passthrough_routes_by_sni_and_the_client_sees_the_node_certificate() {
    let ca = Ca::new("nodes");
    let a = tls_echo_node(&ca, &["a.apps.test"]).await;
    let b = tls_echo_node(&ca, &["b.apps.test"]).await;
    let routes = Arc::new(Routes::default());
    routes.set("a.apps.test", route(a.addr, RouteMode::Passthrough, "a"));
    routes.set("b.apps.test", route(b.addr, RouteMode::Passthrough, "b"));
    let proxy = start_proxy(routes.clone(), None, short_limits()).await;

    for (name, node) in [("a.apps.test", &a), ("B.Apps.Test", &b)] {
        let mut tls = tls_connect(proxy.addr, client_config(ca.roots()), name)
            .await
            .unwrap();
        // The node's own certificate reached the client: the proxy did not
        // terminate TLS.
        let seen = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        assert_eq!(seen, node.cert, "{name}");
        assert_eq!(echo(&mut tls, name.as_bytes()).await, name.as_bytes());
    }
    assert_eq!(a.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);

    // A removed app is no longer reachable.
    routes.remove_app("a");
    let error = tls_connect(proxy.addr, client_config(ca.roots()), "a.apps.test")
        .await
        .unwrap_err();
    assert_eq!(
        alert_received(&error),
        Some(AlertDescription::UnrecognisedName)
    );
}

#[tokio::test]
async fn unknown_server_name_gets_an_alert_and_nothing_is_forwarded() {
    let ca = Ca::new("nodes");
    let (node, routes) = echo_behind_a_apps_test(&ca).await;
    let proxy = start_proxy(routes, None, short_limits()).await;

    let error = tls_connect(proxy.addr, client_config(ca.roots()), "other.apps.test")
        .await
        .unwrap_err();
    assert_eq!(
        alert_received(&error),
        Some(AlertDescription::UnrecognisedName),
        "{error}"
    );
    assert_eq!(node.accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_hello_without_server_name_gets_an_alert_and_nothing_is_forwarded() {
    let ca = Ca::new("nodes");
    let (node, routes) = echo_behind_a_apps_test(&ca).await;
    let proxy = start_proxy(routes, None, short_limits()).await;

    let mut config = client_config(ca.roots());
    config.enable_sni = false;
    let error = tls_connect(proxy.addr, config, "a.apps.test")
        .await
        .unwrap_err();
    assert_eq!(
        alert_received(&error),
        Some(AlertDescription::UnrecognisedName),
        "{error}"
    );
    assert_eq!(node.accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_node_that_does_not_answer_gets_the_client_an_internal_error_alert() {
    let ca = Ca::new("nodes");
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let routes = Arc::new(Routes::default());
    routes.set("gone.apps.test", route(closed, RouteMode::Passthrough, "x"));
    let proxy = start_proxy(routes, None, short_limits()).await;

    let error = tls_connect(proxy.addr, client_config(ca.roots()), "gone.apps.test")
        .await
        .unwrap_err();
    assert_eq!(
        alert_received(&error),
        Some(AlertDescription::InternalError),
        "{error}"
    );
}

#[tokio::test]
async fn a_client_not_speaking_tls_is_closed_without_a_reply() {
    let routes = Arc::new(Routes::default());
    let proxy = start_proxy(routes, None, short_limits()).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: a.apps.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_until_closed(&mut tcp).await, b"");
}

/// A rustls client's first flight, and the client to go on with.
fn capture_hello(config: ClientConfig, name: &str) -> (rustls::ClientConnection, Vec<u8>) {
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    (conn, hello)
}

/// The handshake bytes of a run of handshake records.
fn handshake_payload(records: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        assert_eq!(rest[0], 22, "a handshake record");
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        payload.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    payload
}

/// The same handshake bytes in records of `sizes` bytes (the last size
/// repeats).
fn refragment(records: &[u8], sizes: &[usize]) -> Vec<u8> {
    let payload = handshake_payload(records);
    let mut out = Vec::new();
    let mut rest = payload.as_slice();
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes[i.min(sizes.len() - 1)].min(rest.len());
        let (chunk, tail) = rest.split_at(size);
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&u16::try_from(size).unwrap().to_be_bytes());
        out.extend_from_slice(chunk);
        rest = tail;
        i += 1;
    }
    out
}

#[tokio::test]
async fn a_hello_fragmented_over_records_and_written_byte_by_byte_still_routes() {
    let ca = Ca::new("nodes");
    let (node, routes) = echo_behind_a_apps_test(&ca).await;
    let proxy = start_proxy(routes, None, short_limits()).await;

    let (conn, hello) = capture_hello(client_config(ca.roots()), "a.apps.test");
    let fragmented = refragment(&hello, &[1, 3, 40, 100]);
    assert!(
        fragmented.len() >= hello.len() + 3 * 5,
        "four records or more"
    );
    let addr = proxy.addr;
    let (reply, peer) = tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        for byte in &fragmented {
            tcp.write_all(std::slice::from_ref(byte)).unwrap();
        }
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(b"fragmented").unwrap();
        let mut reply = [0u8; 10];
        tls.read_exact(&mut reply).unwrap();
        let peer = tls.conn.peer_certificates().unwrap()[0].clone();
        (reply, peer)
    })
    .await
    .unwrap();
    assert_eq!(&reply, b"fragmented");
    assert_eq!(peer, node.cert);
}

#[tokio::test]
async fn a_client_that_sends_no_complete_hello_is_closed_after_the_handshake_timeout() {
    let ca = Ca::new("nodes");
    let (node, routes) = echo_behind_a_apps_test(&ca).await;
    let timeout = Duration::from_millis(300);
    let limits = ProxyLimits {
        handshake_timeout: timeout,
        ..short_limits()
    };
    let proxy = start_proxy(routes, None, limits).await;
    let (_, hello) = capture_hello(client_config(ca.roots()), "a.apps.test");

    for sent in [&[][..], &hello[..10], &hello[..hello.len() - 1]] {
        let started = tokio::time::Instant::now();
        let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
        tcp.write_all(sent).await.unwrap();
        assert_eq!(read_until_closed(&mut tcp).await, b"");
        assert!(
            started.elapsed() >= timeout - Duration::from_millis(50),
            "closed after {:?}, sent {} bytes",
            started.elapsed(),
            sent.len()
        );
    }
    assert_eq!(node.accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn two_hundred_concurrent_connections_are_all_routed() {
    let ca = Ca::new("nodes");
    let a = tls_echo_node(&ca, &["a.apps.test"]).await;
    let b = tls_echo_node(&ca, &["b.apps.test"]).await;
    let routes = Arc::new(Routes::default());
    routes.set("a.apps.test", route(a.addr, RouteMode::Passthrough, "a"));
    routes.set("b.apps.test", route(b.addr, RouteMode::Passthrough, "b"));
    let proxy = start_proxy(routes, None, short_limits()).await;

    let mut clients = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (addr, roots) = (proxy.addr, ca.roots());
        let (name, cert) = if i % 2 == 0 {
            ("a.apps.test", a.cert.clone())
        } else {
            ("b.apps.test", b.cert.clone())
        };
        clients.spawn(async move {
            let mut tls = tls_connect(addr, client_config(roots), name).await.unwrap();
            assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], cert);
            let message = format!("client {i}");
            assert_eq!(echo(&mut tls, message.as_bytes()).await, message.as_bytes());
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    assert_eq!(a.accepted.load(Ordering::SeqCst), 100);
    assert_eq!(b.accepted.load(Ordering::SeqCst), 100);
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let ca = Ca::new("nodes");
    let (node, routes) = echo_behind_a_apps_test(&ca).await;
    let limits = ProxyLimits {
        max_connections: 2,
        handshake_timeout: Duration::from_secs(120),
        ..short_limits()
    };
    let proxy = start_proxy(routes, None, limits).await;

    // Two silent clients hold both places.
    let first = TcpStream::connect(proxy.addr).await.unwrap();
    let _second = TcpStream::connect(proxy.addr).await.unwrap();
    // A third is closed at once, long before any handshake timeout.
    let mut third = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(read_until_closed(&mut third).await, b"");
    let error = tls_connect(proxy.addr, client_config(ca.roots()), "a.apps.test")
        .await
        .unwrap_err();
    assert!(alert_received(&error).is_none(), "closed, not alerted");
    assert_eq!(node.accepted.load(Ordering::SeqCst), 0);

    // One leaves: a place frees up.
    drop(first);
    let mut tls = wait::until_async("a place frees up", WAIT, async || {
        tls_connect(proxy.addr, client_config(ca.roots()), "a.apps.test").await
    })
    .await;
    assert_eq!(echo(&mut tls, b"in").await, b"in");
}

#[tokio::test]
async fn an_idle_spliced_connection_is_closed() {
    let ca = Ca::new("nodes");
    let (_node, routes) = echo_behind_a_apps_test(&ca).await;
    let idle = Duration::from_millis(300);
    let limits = ProxyLimits {
        idle_timeout: idle,
        ..short_limits()
    };
    let proxy = start_proxy(routes, None, limits).await;

    let mut tls = tls_connect(proxy.addr, client_config(ca.roots()), "a.apps.test")
        .await
        .unwrap();
    assert_eq!(echo(&mut tls, b"once").await, b"once");
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    // Cut without close_notify: an error, or an end of stream.
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed in time");
    assert!(rest.is_empty());
    assert!(started.elapsed() >= idle - Duration::from_millis(50));
}

// ---------------------------------------------------------------------------
// Terminate
// ---------------------------------------------------------------------------

#[tokio::test]
async fn terminate_mode_serves_the_operator_certificate_and_forwards_plain_bytes() {
    let operator = Ca::new("operator");
    let wildcard = operator.issue(&["*.apps.test", "apps.test"]);
    let terminate = proxy::terminate_config(
        wildcard.pem.as_bytes(),
        wildcard.key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let backend = plain_backend().await;
    let routes = Arc::new(Routes::default());
    routes.set(
        "abc.apps.test",
        route(backend.addr, RouteMode::Terminate, "abc"),
    );
    let proxy = start_proxy(routes, Some(terminate), short_limits()).await;

    let mut config = client_config(operator.roots());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut tls = tls_connect(proxy.addr, config, "abc.apps.test")
        .await
        .unwrap();
    let session = tls.get_ref().1;
    assert_eq!(session.peer_certificates().unwrap()[0], wildcard.der);
    assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));

    let request = b"GET /hello HTTP/1.1\r\nhost: abc.apps.test\r\n\r\n";
    tls.write_all(request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.ends_with("plain backend saw: GET /hello HTTP/1.1"),
        "{response}"
    );
    assert_eq!(backend.received.lock().unwrap().as_slice(), request);
}

#[tokio::test]
async fn a_terminate_route_without_operator_certificate_gets_an_alert() {
    let backend = plain_backend().await;
    let routes = Arc::new(Routes::default());
    routes.set(
        "abc.apps.test",
        route(backend.addr, RouteMode::Terminate, "abc"),
    );
    let proxy = start_proxy(routes, None, short_limits()).await;
    let error = tls_connect(
        proxy.addr,
        client_config(Ca::new("operator").roots()),
        "abc.apps.test",
    )
    .await
    .unwrap_err();
    assert_eq!(
        alert_received(&error),
        Some(AlertDescription::HandshakeFailure),
        "{error}"
    );
}

#[test]
fn terminate_config_refuses_a_key_of_another_certificate() {
    let operator = Ca::new("operator");
    let wildcard = operator.issue(&["*.apps.test"]);
    let other = rcgen::KeyPair::generate().unwrap();
    assert!(proxy::terminate_config(wildcard.pem.as_bytes(), b"not a key").is_err());
    assert!(proxy::terminate_config(b"", wildcard.key.serialize_pem().as_bytes()).is_err());
    let mismatch =
        proxy::terminate_config(wildcard.pem.as_bytes(), other.serialize_pem().as_bytes());
    assert!(mismatch.is_err());
}

// ---------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_live_connections_finish() {
    let ca = Ca::new("nodes");
    let (_node, routes) = echo_behind_a_apps_test(&ca).await;
    let mut proxy = start_proxy(routes, None, short_limits()).await;

    let mut live = tls_connect(proxy.addr, client_config(ca.roots()), "a.apps.test")
        .await
        .unwrap();
    assert_eq!(echo(&mut live, b"before").await, b"before");

    proxy.shutdown();
    wait::until_async("the proxy stops accepting", WAIT, async || {
        TcpStream::connect(proxy.addr).await.is_err()
    })
    .await;

    // The live connection goes on, and the proxy waits for it.
    assert_eq!(echo(&mut live, b"after").await, b"after");
    assert!(!proxy.task.is_finished());
    live.shutdown().await.unwrap();
    drop(live);
    tokio::time::timeout(WAIT, proxy.task)
        .await
        .expect("the proxy ends once its connections are done")
        .unwrap();
}

#[tokio::test]
async fn shutdown_cuts_connections_still_live_after_the_grace_period() {
    let ca = Ca::new("nodes");
    let (_node, routes) = echo_behind_a_apps_test(&ca).await;
    let limits = ProxyLimits {
        shutdown_grace: Duration::from_millis(200),
        ..short_limits()
    };
    let mut proxy = start_proxy(routes, None, limits).await;

    let mut live = tls_connect(proxy.addr, client_config(ca.roots()), "a.apps.test")
        .await
        .unwrap();
    assert_eq!(echo(&mut live, b"before").await, b"before");
    proxy.shutdown();
    tokio::time::timeout(WAIT, proxy.task)
        .await
        .expect("the proxy ends at the grace deadline")
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, live.read_to_end(&mut rest))
        .await
        .expect("the cut connection ends");
    assert!(rest.is_empty());
}

// ---------------------------------------------------------------------------
// The ClientHello parser
// ---------------------------------------------------------------------------

mod parser {
    use super::*;
    use mse_sni::{parse_client_hello, Hello, HelloError, MAX_HELLO_BYTES};

    fn complete(name: Option<&str>) -> Result<Hello, HelloError> {
        Ok(Hello::Complete {
            server_name: name.map(str::to_string),
        })
    }

    fn config(versions: &[&'static rustls::SupportedProtocolVersion]) -> ClientConfig {
        ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth()
    }

    /// ClientHellos of rustls clients, and the server name each carries.
    fn rustls_hellos() -> Vec<(Vec<u8>, Option<&'static str>)> {
        let tls12 = &rustls::version::TLS12;
        let tls13 = &rustls::version::TLS13;
        let mut hellos = Vec::new();
        for versions in [&[tls13, tls12][..], &[tls13][..], &[tls12][..]] {
            let plain = config(versions);
            hellos.push((
                capture_hello(plain.clone(), "app.example.com").1,
                Some("app.example.com"),
            ));
            let mut alpn = plain.clone();
            alpn.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let name = "0b7f5e38-1c2d-4e5f-8a9b-0c1d2e3f4a5b.localhost";
            hellos.push((capture_hello(alpn, name).1, Some(name)));
            let mut no_sni = plain;
            no_sni.enable_sni = false;
            hellos.push((capture_hello(no_sni, "app.example.com").1, None));
        }
        hellos
    }

    #[test]
    fn rustls_client_hellos_parse_to_their_server_name() {
        for (hello, name) in rustls_hellos() {
            assert_eq!(parse_client_hello(&hello), complete(name));
            // Bytes after the hello (early data, the next flight) change nothing.
            let more = [hello.as_slice(), &[23, 3, 3, 0, 1, 0]].concat();
            assert_eq!(parse_client_hello(&more), complete(name));
        }
    }

    #[test]
    fn every_truncation_of_a_hello_needs_more() {
        for (hello, name) in rustls_hellos() {
            for fragmented in [
                hello.clone(),
                refragment(&hello, &[1]),
                refragment(&hello, &[7, 300]),
            ] {
                for len in 0..fragmented.len() {
                    assert_eq!(
                        parse_client_hello(&fragmented[..len]),
                        Ok(Hello::NeedMore),
                        "{len} of {} bytes",
                        fragmented.len()
                    );
                }
                assert_eq!(parse_client_hello(&fragmented), complete(name));
            }
        }
    }

    #[test]
    fn altered_hellos_never_panic() {
        for (hello, _) in rustls_hellos().into_iter().take(2) {
            for at in 0..hello.len() {
                for flip in [0x01, 0x80, 0xff] {
                    let mut altered = hello.clone();
                    altered[at] ^= flip;
                    let _ = parse_client_hello(&altered);
                    let _ = parse_client_hello(&altered[..at]);
                }
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift64*: deterministic, no dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for round in 0..20_000 {
            let len = (next() % 400) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Half of them start like a ClientHello, to reach the deeper fields.
            if round % 2 == 0 && len > 9 {
                let record = ((len - 5) as u16).to_be_bytes();
                let message = ((len - 9) as u16).to_be_bytes();
                let head = [
                    22, 3, 1, record[0], record[1], 1, 0, message[0], message[1], 3,
                ];
                bytes[..10].copy_from_slice(&head);
            }
            let _ = parse_client_hello(&bytes);
        }
    }

    #[test]
    fn what_is_not_a_client_hello_is_refused_early() {
        assert_eq!(
            parse_client_hello(b"GET / HTTP/1.1\r\n"),
            Err(HelloError::NotTls(b'G'))
        );
        assert_eq!(parse_client_hello(b"G"), Err(HelloError::NotTls(b'G')));
        // SSLv2-style hello.
        assert_eq!(
            parse_client_hello(&[0x80, 0x2e, 1]),
            Err(HelloError::NotTls(0x80))
        );
        assert_eq!(
            parse_client_hello(&[22, 2]),
            Err(HelloError::RecordVersion(2))
        );
        assert_eq!(
            parse_client_hello(&[22, 3, 1, 0, 0]),
            Err(HelloError::RecordLength(0))
        );
        assert_eq!(
            parse_client_hello(&[22, 3, 1, 0x40, 0x01]),
            Err(HelloError::RecordLength(16385))
        );
        // A ServerHello is not a ClientHello.
        assert_eq!(
            parse_client_hello(&[22, 3, 3, 0, 4, 2]),
            Err(HelloError::NotClientHello(2))
        );
        // An alert record in the middle of the hello.
        assert_eq!(
            parse_client_hello(&[22, 3, 1, 0, 1, 1, 21, 3, 3, 0, 2, 2, 40]),
            Err(HelloError::UnexpectedRecord(21))
        );
    }

    #[test]
    fn a_hello_too_large_to_buffer_is_refused() {
        // Declared larger than the buffer: refused from its header.
        assert_eq!(
            parse_client_hello(&[22, 3, 1, 0, 4, 1, 0, 0x40, 0]),
            Err(HelloError::TooLarge)
        );
        // Declared small enough, but sent in records so small it never fits.
        let mut bytes = vec![22, 3, 1, 0, 4, 1, 0, 0x3e, 0x80];
        while bytes.len() < MAX_HELLO_BYTES + 10 {
            bytes.extend_from_slice(&[22, 3, 1, 0, 1, 0]);
        }
        assert_eq!(
            parse_client_hello(&bytes[..MAX_HELLO_BYTES - 1]),
            Ok(Hello::NeedMore)
        );
        assert_eq!(
            parse_client_hello(&bytes[..MAX_HELLO_BYTES]),
            Err(HelloError::TooLarge)
        );
    }

    /// A ClientHello record with `extensions` (none at all when `None`).
    fn hello_with(extensions: Option<Vec<u8>>) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        if let Some(extensions) = extensions {
            body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
            body.extend_from_slice(&extensions);
        }
        let mut message = vec![1, 0];
        message.extend_from_slice(&(body.len() as u16).to_be_bytes());
        message.extend_from_slice(&body);
        let mut record = vec![22, 3, 1];
        record.extend_from_slice(&(message.len() as u16).to_be_bytes());
        record.extend_from_slice(&message);
        record
    }

    fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    /// A `server_name` extension listing `(name_type, name)` entries.
    fn sni(entries: &[(u8, &[u8])]) -> Vec<u8> {
        let mut list = Vec::new();
        for (kind, name) in entries {
            list.push(*kind);
            list.extend_from_slice(&(name.len() as u16).to_be_bytes());
            list.extend_from_slice(name);
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        extension(0, &data)
    }

    #[test]
    fn hand_built_hellos() {
        let alpn = extension(
            16,
            &[0, 9, 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1'],
        );
        assert_eq!(parse_client_hello(&hello_with(None)), complete(None));
        assert_eq!(
            parse_client_hello(&hello_with(Some(vec![]))),
            complete(None)
        );
        assert_eq!(
            parse_client_hello(&hello_with(Some(alpn.clone()))),
            complete(None)
        );
        let named = [alpn.clone(), sni(&[(0, b"App.Example.COM")])].concat();
        assert_eq!(
            parse_client_hello(&hello_with(Some(named))),
            complete(Some("app.example.com"))
        );

        let malformed = |extensions: Vec<u8>| parse_client_hello(&hello_with(Some(extensions)));
        let twice = [sni(&[(0, b"a.example")]), sni(&[(0, b"a.example")])].concat();
        assert!(matches!(malformed(twice), Err(HelloError::Malformed(_))));
        let two_names = sni(&[(0, b"a.example"), (0, b"b.example")]);
        assert!(matches!(
            malformed(two_names),
            Err(HelloError::Malformed(_))
        ));
        assert!(matches!(
            malformed(sni(&[(1, b"a.example")])),
            Err(HelloError::Malformed(_))
        ));
        assert!(matches!(
            malformed(extension(0, &[])),
            Err(HelloError::Malformed(_))
        ));
        assert!(matches!(malformed(sni(&[])), Err(HelloError::Malformed(_))));
        // An extension longer than the extensions block.
        let mut overrun = extension(16, &[0; 4]);
        overrun.truncate(6);
        assert!(matches!(malformed(overrun), Err(HelloError::Malformed(_))));
        let long = "a".repeat(64);
        for bad in [
            "a.example.",
            ".example",
            "a..example",
            "ex ample",
            "ex\u{e9}mple",
            "",
            long.as_str(),
        ] {
            assert_eq!(
                malformed(sni(&[(0, bad.as_bytes())])),
                Err(HelloError::ServerName),
                "{bad:?}"
            );
        }
        let too_long = vec!["abcdefghi"; 26].join(".");
        assert_eq!(
            malformed(sni(&[(0, too_long.as_bytes())])),
            Err(HelloError::ServerName)
        );

        // Bytes after the extensions block.
        let mut trailing = hello_with(Some(sni(&[(0, b"a.example")])));
        trailing.push(0);
        trailing[4] += 1;
        trailing[8] += 1;
        assert!(matches!(
            parse_client_hello(&trailing),
            Err(HelloError::Malformed(_))
        ));
    }
}
