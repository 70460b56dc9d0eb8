//! The configuration server: over TLS with the RA-TLS certificate, it waits
//! for the owner's [`ConfigRequest`], checks it, decrypts the code, and hands
//! the rest of the configuration to the runtime. See [`mse_api::config`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use mse_api::config::{
    ConfigAnswer, ConfigRequest, MAX_BODY, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE,
    MAX_REFUSAL_NOTES, STATUS_HEADER, WAITING,
};
use mse_package::snapshot::StorageKey;
use mse_package::CodeKey;
use mse_run::logs::LogSink;
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex, Notify};
use zeroize::Zeroizing;

/// How long a client may take to finish its TLS handshake, and its request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What a node waiting for its configuration knows.
pub struct Waiting {
    /// The app's uuid.
    pub uuid: String,
    /// The encrypted code tarball.
    pub code: PathBuf,
    /// Where the code is decrypted (must not exist yet).
    pub app_dir: PathBuf,
    /// The owner's certificate, when the app is served with it.
    pub owner: Option<mse_config::tls::Leaf>,
    /// The app's log.
    pub log: Arc<LogSink>,
    /// Whether the app keeps persistent storage, so that a configuration
    /// must bring its storage key.
    keeps_storage: bool,
    accepted: Mutex<Option<Accepted>>,
    done: Notify,
    refusals: AtomicU32,
}

impl Waiting {
    /// A node waiting for the configuration of `uuid`.
    pub fn new(
        uuid: String,
        code: PathBuf,
        app_dir: PathBuf,
        owner: Option<mse_config::tls::Leaf>,
        log: Arc<LogSink>,
    ) -> Self {
        Waiting {
            uuid,
            code,
            app_dir,
            owner,
            log,
            keeps_storage: false,
            accepted: Mutex::new(None),
            done: Notify::new(),
            refusals: AtomicU32::new(0),
        }
    }

    /// The same, for an app that keeps persistent storage (`keeps`): its
    /// configuration is refused without a storage key.
    pub fn keeping_storage(mut self, keeps: bool) -> Self {
        self.keeps_storage = keeps;
        self
    }
}

/// The accepted configuration, the code being decrypted already.
pub struct Accepted {
    /// The owner certificate's private key (PEM), owner mode only.
    pub ssl_private_key: Option<Zeroizing<String>>,
    /// The app's secrets (a JSON object).
    pub app_secrets: Option<serde_json::Value>,
    /// The key of the app's persistent home, when it keeps one.
    pub storage_key: Option<StorageKey>,
    /// The storage key it replaced, when the owner rotated it: a snapshot
    /// sealed under it is still restored.
    pub previous_storage_key: Option<StorageKey>,
}

/// How waiting ended.
pub enum Outcome {
    /// Configured.
    Accepted(Accepted),
    /// Stopped, for this reason, before any configuration came.
    Stopped(String),
    /// No configuration came in time.
    TimedOut,
}

/// Serves the configuration protocol on `listener` until a configuration is
/// accepted, `stop` says why to stop, or `timeout` passes.
pub async fn serve(
    listener: &TcpListener,
    tls: Arc<rustls::ServerConfig>,
    waiting: Arc<Waiting>,
    stop: &mut watch::Receiver<Option<String>>,
    timeout: Option<Duration>,
) -> Outcome {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let deadline = async {
        match timeout {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let local = listener.local_addr().ok();
    let open = Arc::new(std::sync::Mutex::new(Connections::default()));
    loop {
        tokio::select! {
            _ = waiting.done.notified() => {
                if let Some(accepted) = waiting.accepted.lock().await.take() {
                    return Outcome::Accepted(accepted);
                }
            }
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let Some(slot) = Connections::take(&open, peer.ip()) else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let waiting = waiting.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    // Another tenant's app on this host is no client of the
                    // configuration protocol: only the proxy, the owner and
                    // the platform are.
                    if local.is_some_and(|local| from_an_app(peer, local)) {
                        return;
                    }
                    let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| handle(req, waiting.clone()));
                    let connection = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .timer(TokioTimer::new())
                        .header_read_timeout(HANDSHAKE_TIMEOUT)
                        .serve_connection(TokioIo::new(tls), service);
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, connection).await;
                });
            }
            changed = stop.changed() => {
                if changed.is_ok() {
                    if let Some(reason) = stop.borrow().clone() {
                        return Outcome::Stopped(reason);
                    }
                }
            }
            _ = &mut deadline => return Outcome::TimedOut,
        }
    }
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, body: &ConfigAnswer) -> Answer {
    let json = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(json)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Until a configuration is accepted, the node is still waiting.
    if body.status.as_deref() != Some(ACCEPTED) {
        response
            .headers_mut()
            .insert(STATUS_HEADER, HeaderValue::from_static(WAITING));
    }
    response
}

const ACCEPTED: &str = "accepted";

fn refuse(status: StatusCode, error: impl Into<String>) -> (StatusCode, ConfigAnswer) {
    (
        status,
        ConfigAnswer {
            status: None,
            error: Some(error.into()),
        },
    )
}

async fn handle(req: Request<Incoming>, waiting: Arc<Waiting>) -> Result<Answer, Infallible> {
    if req.uri().path() != "/" {
        let (status, body) = refuse(StatusCode::NOT_FOUND, "not found; use GET / or POST /");
        return Ok(answer(status, &body));
    }
    let (status, body) = match *req.method() {
        Method::GET | Method::HEAD => (
            StatusCode::OK,
            ConfigAnswer {
                status: Some(WAITING.to_string()),
                error: None,
            },
        ),
        Method::POST => {
            let (status, body) = configure(req, &waiting).await;
            match &body.error {
                // A fixed reason: the request's own words never reach the
                // log (the client gets them in the answer).
                Some(_) => {
                    let n = waiting.refusals.fetch_add(1, Ordering::Relaxed);
                    if n < MAX_REFUSAL_NOTES {
                        waiting.log.note(&format!(
                            "configuration refused ({status}): {}",
                            refusal_reason(status)
                        ));
                    } else if n == MAX_REFUSAL_NOTES {
                        waiting
                            .log
                            .note("further refused configurations are not noted");
                    }
                }
                None => waiting.log.note("configuration accepted"),
            }
            (status, body)
        }
        _ => refuse(StatusCode::METHOD_NOT_ALLOWED, "use GET / or POST /"),
    };
    Ok(answer(status, &body))
}

/// What the log says of a refused configuration, by status.
fn refusal_reason(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "malformed request",
        StatusCode::UNAUTHORIZED => "uuid mismatch",
        StatusCode::CONFLICT => "configured already",
        StatusCode::PAYLOAD_TOO_LARGE => "request too large",
        StatusCode::UNPROCESSABLE_ENTITY => {
            "the key or the owner's private key does not fit, or the storage key is missing"
        }
        _ => "refused",
    }
}

/// The connections open now, in total and by source address.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    total: u32,
    by_source: HashMap<IpAddr, u32>,
}

/// One open connection's place, given back when dropped.
pub(crate) struct Slot {
    open: Arc<std::sync::Mutex<Connections>>,
    source: IpAddr,
}

impl Connections {
    /// A place for a connection from `source`, or `None` over a cap.
    pub(crate) fn take(open: &Arc<std::sync::Mutex<Connections>>, source: IpAddr) -> Option<Slot> {
        let mut connections = open.lock().ok()?;
        let from_source = connections.by_source.get(&source).copied().unwrap_or(0);
        if connections.total >= MAX_CONNECTIONS || from_source >= MAX_CONNECTIONS_PER_SOURCE {
            return None;
        }
        connections.total += 1;
        connections.by_source.insert(source, from_source + 1);
        Some(Slot {
            open: open.clone(),
            source,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut connections) = self.open.lock() {
            connections.total = connections.total.saturating_sub(1);
            if let Some(n) = connections.by_source.get_mut(&self.source) {
                *n -= 1;
                if *n == 0 {
                    connections.by_source.remove(&self.source);
                }
            }
        }
    }
}

/// Whether the connection from `peer` to `local` was opened by an app's
/// process on this host (its socket belongs to an app's or an installer's
/// uid, as the kernel's socket table says).
pub(crate) fn from_an_app(peer: SocketAddr, local: SocketAddr) -> bool {
    let (peer, local) = (unmapped(peer), unmapped(local));
    let file = match peer {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let Ok(table) = std::fs::read_to_string(file) else {
        return false;
    };
    socket_owner(&table, peer, local).is_some_and(|uid| {
        let apps = mse_run::sandbox::APP_UID_BASE
            ..mse_run::sandbox::INSTALLER_UID_BASE + mse_run::sandbox::INSTALLER_UID_SPAN;
        apps.contains(&uid)
    })
}

/// `addr` with an IPv4-mapped IPv6 address as the IPv4 one.
fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// An address as the kernel's socket table writes it: the address's 32-bit
/// words in the host's byte order, then the port, in hexadecimal.
fn table_address(addr: SocketAddr) -> String {
    let words: Vec<[u8; 4]> = match addr.ip() {
        IpAddr::V4(ip) => vec![ip.octets()],
        IpAddr::V6(ip) => ip
            .octets()
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect(),
    };
    let mut text: String = words
        .into_iter()
        .map(|w| format!("{:08X}", u32::from_ne_bytes(w)))
        .collect();
    text.push_str(&format!(":{:04X}", addr.port()));
    text
}

/// The uid owning the socket from `from` to `to` in a `/proc/net/tcp`
/// table (pure).
fn socket_owner(table: &str, from: SocketAddr, to: SocketAddr) -> Option<u32> {
    let (from, to) = (table_address(from), table_address(to));
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, uid) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
        (local.eq_ignore_ascii_case(&from) && remote.eq_ignore_ascii_case(&to))
            .then(|| uid.parse().ok())
            .flatten()
    })
}

async fn configure(req: Request<Incoming>, waiting: &Waiting) -> (StatusCode, ConfigAnswer) {
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the configuration is larger than {MAX_BODY} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return too_large();
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Err(_) => return refuse(StatusCode::BAD_REQUEST, "cannot read the request body"),
    };
    let request: ConfigRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "malformed configuration: {e}; expected a JSON object with uuid, \
                     code_secret_key and optionally ssl_private_key, app_secrets and \
                     storage_key"
                ),
            )
        }
    };
    if !request.uuid.eq_ignore_ascii_case(&waiting.uuid) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "this node runs another app (uuid mismatch)",
        );
    }
    let Ok(key) = CodeKey::from_hex(&request.code_secret_key) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "code_secret_key must be 64 hexadecimal digits",
        );
    };
    if request.app_secrets.as_ref().is_some_and(|s| !s.is_object()) {
        return refuse(StatusCode::BAD_REQUEST, "app_secrets must be a JSON object");
    }
    // Another app's node has no use for a storage key: it is dropped.
    let storage_key = match (waiting.keeps_storage, request.storage_key.as_deref()) {
        (true, Some(hex)) => match crate::node::storage::storage_key(hex) {
            Some(key) => Some(key),
            None => {
                return refuse(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "storage_key must be 64 hexadecimal digits",
                )
            }
        },
        (true, None) => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this app keeps persistent storage: the configuration has no storage key",
            )
        }
        (false, _) => None,
    };
    let previous_storage_key = match (&storage_key, request.previous_storage_key.as_deref()) {
        (Some(_), Some(hex)) => match crate::node::storage::storage_key(hex) {
            Some(key) => Some(key),
            None => {
                return refuse(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "previous_storage_key must be 64 hexadecimal digits",
                )
            }
        },
        _ => None,
    };
    let ssl_private_key = match (&waiting.owner, &request.ssl_private_key) {
        (Some(leaf), Some(pem)) => match mse_config::tls::parse_private_key(pem.as_bytes()) {
            Ok(private) if private.matches(leaf) => Some(Zeroizing::new(pem.clone())),
            Ok(_) => {
                return refuse(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "ssl_private_key does not match the app's certificate",
                )
            }
            Err(e) => {
                return refuse(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("ssl_private_key: {e}"),
                )
            }
        },
        (Some(_), None) => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this app is served with the owner's certificate: ssl_private_key is required",
            )
        }
        (None, Some(_)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "this app has no owner certificate: do not send ssl_private_key",
            )
        }
        (None, None) => None,
    };

    let mut accepted = waiting.accepted.lock().await;
    if accepted.is_some() || waiting.app_dir.exists() {
        return refuse(StatusCode::CONFLICT, "this node is configured already");
    }
    let code = waiting.code.clone();
    let app_dir = waiting.app_dir.clone();
    let unpacked = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&code)
            .map_err(|e| format!("cannot read the package {}: {e}", code.display()))?;
        mse_package::unpack(
            std::io::BufReader::new(file),
            &key,
            &app_dir,
            mse_package::Limits::default(),
        )
        .map_err(|e| match e {
            // Any key would "decrypt" it: accepting one would prove nothing.
            mse_package::UnpackError::NothingEncrypted => format!(
                "no key is accepted for this app: {e}; deploy a package with the app's code"
            ),
            e => format!("the key does not decrypt the package: {e}"),
        })
    })
    .await;
    match unpacked {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(_) => {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "decryption stopped unexpectedly",
            )
        }
    }
    *accepted = Some(Accepted {
        ssl_private_key,
        app_secrets: request.app_secrets.clone(),
        storage_key,
        previous_storage_key,
    });
    drop(accepted);
    waiting.done.notify_one();
    (
        StatusCode::OK,
        ConfigAnswer {
            status: Some(ACCEPTED.to_string()),
            error: None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0 100 0 0 10 0
   1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000 1610612741        0 101 1 0 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 102 1 0 20 4 30 10 -1
";

    #[test]
    fn the_owner_of_a_loopback_connection_is_read_from_the_socket_table() {
        let server: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let client: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        assert_eq!(socket_owner(TABLE, client, server), Some(1_610_612_741));
        assert_eq!(socket_owner(TABLE, server, client), Some(0));
        let stranger: SocketAddr = "198.18.0.9:54321".parse().unwrap();
        assert_eq!(socket_owner(TABLE, stranger, server), None);
    }

    #[test]
    fn a_real_loopback_connection_of_this_process_is_found_with_its_uid() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        // SAFETY: geteuid cannot fail.
        let uid = unsafe { libc::geteuid() };
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(
            socket_owner(&table, peer, listener.local_addr().unwrap()),
            Some(uid)
        );
        assert!(!from_an_app(peer, listener.local_addr().unwrap()));
    }

    #[test]
    fn connections_are_capped_per_source_and_in_total_and_given_back() {
        let open = Arc::new(std::sync::Mutex::new(Connections::default()));
        let one: IpAddr = "198.18.0.1".parse().unwrap();
        let mut held: Vec<Slot> = (0..MAX_CONNECTIONS_PER_SOURCE)
            .map(|_| Connections::take(&open, one).unwrap())
            .collect();
        assert!(Connections::take(&open, one).is_none(), "per source");
        held.pop();
        assert!(Connections::take(&open, one).is_some(), "given back");
        drop(held);
        let mut all = Vec::new();
        for i in 0..MAX_CONNECTIONS {
            let source = IpAddr::from([198, 18, 1, (i % 250) as u8]);
            all.extend(Connections::take(&open, source));
        }
        assert_eq!(all.len(), MAX_CONNECTIONS as usize);
        assert!(Connections::take(&open, "198.18.2.1".parse().unwrap()).is_none());
        drop(all);
        assert_eq!(open.lock().unwrap().total, 0);
    }

    #[test]
    fn refusals_are_logged_with_a_fixed_reason() {
        for status in [
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::CONFLICT,
            StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNPROCESSABLE_ENTITY,
        ] {
            assert!(refusal_reason(status).chars().all(|c| !c.is_control()));
        }
    }
}
