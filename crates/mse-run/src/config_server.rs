//! The configuration server: over TLS with the RA-TLS certificate, it waits
//! for the owner's [`ConfigRequest`], checks it, decrypts the code, and hands
//! the rest of the configuration to the runtime. See [`mse_run::protocol`].

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use mse_package::CodeKey;
use mse_run::logs::LogSink;
use mse_run::protocol::{ConfigAnswer, ConfigRequest, MAX_BODY, STATUS_HEADER, WAITING};
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
    accepted: Mutex<Option<Accepted>>,
    done: Notify,
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
            accepted: Mutex::new(None),
            done: Notify::new(),
        }
    }
}

/// The accepted configuration, the code being decrypted already.
pub struct Accepted {
    /// The owner certificate's private key (PEM), owner mode only.
    pub ssl_private_key: Option<Zeroizing<String>>,
    /// The app's secrets (a JSON object).
    pub app_secrets: Option<serde_json::Value>,
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
    loop {
        tokio::select! {
            _ = waiting.done.notified() => {
                if let Some(accepted) = waiting.accepted.lock().await.take() {
                    return Outcome::Accepted(accepted);
                }
            }
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let acceptor = acceptor.clone();
                let waiting = waiting.clone();
                tokio::spawn(async move {
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
                Some(error) => waiting
                    .log
                    .note(&format!("configuration refused ({status}): {error}")),
                None => waiting.log.note("configuration accepted"),
            }
            (status, body)
        }
        _ => refuse(StatusCode::METHOD_NOT_ALLOWED, "use GET / or POST /"),
    };
    Ok(answer(status, &body))
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
                     code_secret_key and optionally ssl_private_key and app_secrets"
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
