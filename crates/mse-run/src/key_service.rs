//! The key service (docs/keys.md), the other program this runtime runs:
//! attested like a node (its RA-TLS certificate binds its measurement, the
//! hash of this binary), holding a root key only it reads, answering on
//! TLS with that certificate. The platform starts it by itself on a node
//! (`mse-run --key-service FILE`) and publishes its measurement; owners
//! verify it (`mse keys verify`) before they trust it with anything.

use std::convert::Infallible;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use mse_api::apps::AppStatus;
use mse_api::keys::{Hello, KeyServiceLaunch, SERVICE};
use mse_keys::RootKey;
use mse_run::status::{emit, Event};
use rustls::ServerConfig;

use crate::config_server::{from_an_app, Connections};
use crate::node::{create_private_dir, Failure, INVALID};

/// The root key's file in the service's folder (32 bytes, mode 0600).
const ROOT_KEY: &str = "root.key";
/// How long a client may take to finish its TLS handshake, and its request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What the service holds while it runs.
struct Service {
    measurement: [u8; 32],
    /// Read by the endpoints to come (provisioning, releases).
    #[allow(dead_code)]
    root: RootKey,
}

/// `mse-run --key-service FILE`.
pub async fn run(launch: KeyServiceLaunch) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("error: cannot handle signals");
        return ExitCode::FAILURE;
    };
    let started = match start(&launch).await {
        Ok(started) => started,
        Err(Failure::Invalid(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(INVALID);
        }
        Err(Failure::Error(message)) => {
            eprintln!("error: {message}");
            emit(&Event::new(AppStatus::OnError, Utc::now()).because(message));
            return ExitCode::FAILURE;
        }
    };
    let (listener, tls, service) = started;
    let reason = tokio::select! {
        () = serve(listener, tls, service) => "the listener closed",
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    emit(&Event::new(AppStatus::Stopped, Utc::now()).because(reason));
    ExitCode::SUCCESS
}

/// The measurement of the service this binary serves.
fn own_measurement() -> Result<[u8; 32], Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::Error(format!("cannot find this binary: {e}")))?;
    mse_keys::service::measurement_of(&exe)
        .map_err(|e| Failure::Error(format!("cannot read {}: {e}", exe.display())))
}

/// The root key kept in `dir`, made on the first start.
fn root_key(dir: &Path) -> Result<RootKey, Failure> {
    let path = dir.join(ROOT_KEY);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
                Failure::Invalid(format!(
                    "{} is not a root key (32 bytes): restore it, or recover it from its shares",
                    path.display()
                ))
            })?;
            Ok(RootKey::from_bytes(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let root = RootKey::generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options
                .open(&path)
                .and_then(|mut f| f.write_all(root.as_bytes()))
                .map_err(|e| Failure::Error(format!("cannot write {}: {e}", path.display())))?;
            Ok(root)
        }
        Err(e) => Err(Failure::Error(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

async fn start(
    launch: &KeyServiceLaunch,
) -> Result<(tokio::net::TcpListener, Arc<ServerConfig>, Arc<Service>), Failure> {
    create_private_dir(&launch.work_dir).map_err(|e| {
        Failure::Invalid(format!("cannot create {}: {e}", launch.work_dir.display()))
    })?;
    let root = root_key(&launch.work_dir)?;
    let measurement = own_measurement()?;
    let provider = crate::node::prepare::quote_provider(&launch.quotes, measurement)?;
    let ratls = mse_attest::ratls::create(
        &launch.domain,
        launch.expires_at,
        None,
        provider.as_ref(),
        Utc::now(),
    )
    .map_err(|e| Failure::Error(format!("cannot create the RA-TLS certificate: {e}")))?;
    let tls = crate::node::handover::server_config(&ratls.cert_der, &ratls.key_pem)
        .map_err(|e| Failure::Error(format!("{e:#}")))?;
    let listener = tokio::net::TcpListener::bind(launch.listen)
        .await
        .map_err(|e| Failure::Error(format!("cannot listen on {}: {e}", launch.listen)))?;
    let listen = listener
        .local_addr()
        .map_err(|e| Failure::Error(format!("cannot read the listening address: {e}")))?;
    let mut event = Event::new(AppStatus::Running, Utc::now());
    event.fingerprint = Some(hex::encode(measurement));
    event.listen = Some(listen.to_string());
    emit(&event);
    Ok((
        listener,
        Arc::new(tls),
        Arc::new(Service { measurement, root }),
    ))
}

/// Serves connections until the listener fails: at most 64 at once and 8
/// per source, none from an app of this host, each bounded in time.
async fn serve(listener: tokio::net::TcpListener, tls: Arc<ServerConfig>, service: Arc<Service>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let local = listener.local_addr().ok();
    let open = Arc::new(std::sync::Mutex::new(Connections::default()));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            return;
        };
        let Some(slot) = Connections::take(&open, peer.ip()) else {
            continue;
        };
        let acceptor = acceptor.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if local.is_some_and(|local| from_an_app(peer, local)) {
                return;
            }
            let Ok(Ok(tls)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            let handler = hyper::service::service_fn(move |req| handle(req, service.clone()));
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(TokioIo::new(tls), handler);
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, connection).await;
        });
    }
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(body).unwrap_or_default(),
    )));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn handle(
    req: Request<Incoming>,
    service: Arc<Service>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/") => json(
            StatusCode::OK,
            &Hello {
                service: SERVICE.into(),
                measurement: hex::encode(service.measurement),
            },
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            &mse_api::error::ErrorBody::new("not found; use GET /"),
        ),
    })
}

/// Reads the key service's launch file.
pub fn read_launch(path: &Path) -> Result<KeyServiceLaunch, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the key service's launch {}: {e}",
            path.display()
        )
    })?;
    KeyServiceLaunch::from_json(&text)
        .map_err(|e| format!("the key service's launch {}: {e}", path.display()))
}
