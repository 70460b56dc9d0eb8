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

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use mse_api::apps::AppStatus;
use mse_api::keys::{
    Hello, KeyServiceLaunch, PendingRelease, ProvisionAnswer, ProvisionRequest, Released,
    SealedRecord, TicketInfo, MAX_PROVISION_BODY, SERVICE,
};
use mse_keys::record::{record_name, KeptRecord};
use mse_keys::{AppName, RootKey, Rule, SignedPolicy};
use mse_run::status::{emit, Event};
use rustls::ServerConfig;

use crate::config_server::{from_an_app, Connections};
use crate::node::{create_private_dir, Failure};

/// The root key's file in the service's folder (32 bytes, mode 0600).
const ROOT_KEY: &str = "root.key";
/// How long a client may take to finish its TLS handshake, and its request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What the service holds while it runs.
struct Service {
    measurement: [u8; 32],
    root: RootKey,
    /// The platform's API, where it keeps its sealed records.
    api: Option<Api>,
}

/// The platform's API, as the service calls it.
struct Api {
    url: String,
    credential: zeroize::Zeroizing<String>,
    http: reqwest::Client,
}

/// Why an API call failed: the API's answer, or no answer.
struct ApiFailure {
    status: Option<u16>,
    message: String,
}

impl Api {
    fn new(access: &mse_api::keys::ApiAccess) -> Result<Api, Failure> {
        let credential = std::fs::read_to_string(&access.credential).map_err(|e| {
            Failure::Invalid(format!(
                "cannot read the API credential {}: {e}",
                access.credential.display()
            ))
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent("mse key service")
            .build()
            .map_err(|e| Failure::Error(format!("cannot build the HTTP client: {e}")))?;
        Ok(Api {
            url: access.url.trim_end_matches('/').to_string(),
            credential: zeroize::Zeroizing::new(credential.trim().to_string()),
            http,
        })
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiFailure> {
        let response = request
            .bearer_auth(self.credential.as_str())
            .send()
            .await
            .map_err(|e| ApiFailure {
                status: None,
                message: format!("the platform's API does not answer: {e}"),
            })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let message = response
            .json::<mse_api::error::ErrorBody>()
            .await
            .map(|b| b.error)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        Err(ApiFailure {
            status: Some(status),
            message,
        })
    }

    /// The JSON answer to `request`.
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ApiFailure> {
        self.send(request)
            .await?
            .json()
            .await
            .map_err(|e| ApiFailure {
                status: None,
                message: e.to_string(),
            })
    }

    async fn redeem(&self, ticket: &str) -> Result<TicketInfo, ApiFailure> {
        let request = self
            .http
            .post(format!("{}/keys/tickets/redeem", self.url))
            .json(&serde_json::json!({ "ticket": ticket }));
        self.json(request).await
    }

    async fn record(&self, name: &str) -> Result<Option<Vec<u8>>, ApiFailure> {
        let request = self
            .http
            .get(format!("{}/keys/record", self.url))
            .query(&[("name", name)]);
        match self.json::<SealedRecord>(request).await {
            Ok(record) => B64.decode(record.sealed).map(Some).map_err(|_| ApiFailure {
                status: None,
                message: format!("the stored record {name} is not base64"),
            }),
            Err(ApiFailure {
                status: Some(404), ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn pending(&self) -> Result<Vec<PendingRelease>, ApiFailure> {
        self.json(self.http.get(format!("{}/keys/pending", self.url)))
            .await
    }

    async fn released(&self, app_id: &str, reason: Option<String>) -> Result<(), ApiFailure> {
        let request = self
            .http
            .post(format!("{}/keys/released", self.url))
            .json(&Released {
                app_id: app_id.to_string(),
                released: reason.is_none(),
                reason,
            });
        self.send(request).await.map(|_| ())
    }

    /// A public document of the platform (`/signer`, `/simulation-ca`, …).
    async fn public(&self, path: &str) -> Result<Vec<u8>, ApiFailure> {
        let response = self
            .send(self.http.get(format!("{}{path}", self.url)))
            .await?;
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ApiFailure {
                status: None,
                message: e.to_string(),
            })
    }

    async fn put_record(&self, name: &str, sealed: &[u8]) -> Result<(), ApiFailure> {
        let request = self
            .http
            .put(format!("{}/keys/record", self.url))
            .json(&SealedRecord {
                name: name.to_string(),
                sealed: B64.encode(sealed),
            });
        self.send(request).await.map(|_| ())
    }
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
        Err(failure) => return failure.exit(),
    };
    let (listener, tls, service) = started;
    let releasing = tokio::spawn(release_loop(service.clone()));
    let reason = tokio::select! {
        () = serve(listener, tls, service) => "the listener closed",
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    releasing.abort();
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
    let api = launch.api.as_ref().map(Api::new).transpose()?;
    Ok((
        listener,
        Arc::new(tls),
        Arc::new(Service {
            measurement,
            root,
            api,
        }),
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
        (&Method::POST, "/provision") => match provision(req, &service).await {
            Ok(answer) => json(StatusCode::OK, &answer),
            Err((status, message)) => {
                eprintln!("key service: provisioning refused ({status}): {message}");
                json(status, &mse_api::error::ErrorBody::new(message))
            }
        },
        _ => json(
            StatusCode::NOT_FOUND,
            &mse_api::error::ErrorBody::new("not found; use GET / or POST /provision"),
        ),
    })
}

type Refused = (StatusCode, String);

fn bad(message: impl Into<String>) -> Refused {
    (StatusCode::BAD_REQUEST, message.into())
}

/// `POST /provision`: an owner's keys and signed policy for an app name,
/// kept sealed in the platform's store once the ticket says whose app it
/// is, the policy is that owner's for that app, and it may replace the one
/// held (same owner key, higher version).
async fn provision(req: Request<Incoming>, service: &Service) -> Result<ProvisionAnswer, Refused> {
    let body = Limited::new(req.into_body(), MAX_PROVISION_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a provisioning is at most {MAX_PROVISION_BODY} bytes"),
                )
            } else {
                bad("the request's body could not be read")
            }
        })?
        .to_bytes();
    let request: ProvisionRequest =
        serde_json::from_slice(&body).map_err(|e| bad(format!("not a provisioning: {e}")))?;
    let Some(api) = &service.api else {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "this key service keeps nothing: no platform API runs beside its node".into(),
        ));
    };
    let signed: SignedPolicy =
        serde_json::from_value(request.policy.clone()).map_err(|e| bad(format!("policy: {e}")))?;
    let policy = signed.verify().map_err(|e| bad(e.to_string()))?;
    mse_package::CodeKey::from_hex(&request.code_secret_key)
        .map_err(|e| bad(format!("code_secret_key: {e}")))?;
    let info = api.redeem(&request.ticket).await.map_err(|e| {
        (
            StatusCode::from_u16(e.status.unwrap_or(502)).unwrap_or(StatusCode::BAD_GATEWAY),
            format!("the ticket: {}", e.message),
        )
    })?;
    let app = AppName {
        owner: info.owner.clone(),
        project: info.project.clone(),
        name: info.name.clone(),
    };
    if policy.app != app {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "the policy is for {}, the ticket for {app}: sign a policy for this app",
                policy.app
            ),
        ));
    }
    let fingerprints: Vec<&str> = policy
        .admit
        .iter()
        .filter_map(|rule| match rule {
            Rule::Fingerprint { fingerprint } => Some(fingerprint.as_str()),
            Rule::Inputs { .. } => None,
        })
        .collect();
    if let Some(running) = &info.fingerprint {
        let only_fingerprints = fingerprints.len() == policy.admit.len();
        if only_fingerprints && !fingerprints.iter().any(|f| f.eq_ignore_ascii_case(running)) {
            return Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the policy does not admit the app it comes with (fingerprint {running}):                      it could never be released"
                ),
            ));
        }
    }
    let name = record_name(&app);
    let unavailable = |e: ApiFailure| (StatusCode::BAD_GATEWAY, e.message);
    if let Some(sealed) = api.record(&name).await.map_err(unavailable)? {
        let held = KeptRecord::open(&service.root, &name, &sealed).map_err(|e| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{e}: the store's record was changed"),
            )
        })?;
        if held.policy != signed {
            signed
                .succeeds(&held.policy)
                .map_err(|e| (StatusCode::CONFLICT, e.to_string()))?;
        }
    }
    let record = KeptRecord {
        policy: signed,
        app_id: info.app_id.clone(),
        code_secret_key: request.code_secret_key.clone(),
        ssl_private_key: request.ssl_private_key.clone(),
        app_secrets: request.app_secrets.clone(),
    };
    api.put_record(&name, &record.seal(&service.root, &name))
        .await
        .map_err(unavailable)?;
    eprintln!(
        "key service: keeping the keys of {app} (app {}, policy version {})",
        info.app_id, policy.version
    );
    Ok(ProvisionAnswer {
        app: app.to_string(),
        policy_version: policy.version,
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

/// How often the service asks the platform for apps waiting for their keys.
const RELEASE_POLL: Duration = Duration::from_secs(1);
/// The longest pause between two attempts for one app.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// While the service runs: releases the keys of the apps the platform
/// restarted on another node, each attempt after a pause that grows (1 s,
/// 2 s, … 30 s) while it is refused; the owner's `mse status` says what
/// happened.
async fn release_loop(service: Arc<Service>) {
    let Some(api) = &service.api else {
        return;
    };
    let mut attempts: std::collections::HashMap<String, (tokio::time::Instant, u32)> =
        std::collections::HashMap::new();
    loop {
        tokio::time::sleep(RELEASE_POLL).await;
        let pending = match api.pending().await {
            Ok(pending) => pending,
            Err(e) => {
                eprintln!(
                    "key service: cannot ask for pending releases: {}",
                    e.message
                );
                continue;
            }
        };
        attempts.retain(|id, _| pending.iter().any(|p| &p.app_id == id));
        for app in &pending {
            let tried = attempts.get(&app.app_id).copied();
            if let Some((last, n)) = tried {
                let wait = Duration::from_secs(1u64 << n.min(5)).min(MAX_RETRY);
                if last.elapsed() < wait {
                    continue;
                }
            }
            let n = tried.map_or(0, |(_, n)| n) + 1;
            attempts.insert(app.app_id.clone(), (tokio::time::Instant::now(), n));
            match release(&service, api, app).await {
                Ok(version) => {
                    eprintln!(
                        "key service: released the keys of app {} to node {} (policy version \
                         {version})",
                        app.app_id, app.node
                    );
                    let _ = api.released(&app.app_id, None).await;
                }
                Err(why) => {
                    eprintln!(
                        "key service: refused the keys of app {} to node {}: {why}",
                        app.app_id, app.node
                    );
                    // Said once, then every tenth attempt.
                    if n == 1 || n % 10 == 0 {
                        let _ = api.released(&app.app_id, Some(why)).await;
                    }
                }
            }
        }
    }
}

/// Releases the keys kept for `app`'s name to its node once the node's
/// evidence verifies and the owner's policy admits it; the policy version
/// that did, or why not.
async fn release(service: &Service, api: &Api, app: &PendingRelease) -> Result<u64, String> {
    let name = record_name(&AppName {
        owner: app.owner.clone(),
        project: app.project.clone(),
        name: app.name.clone(),
    });
    let sealed = api
        .record(&name)
        .await
        .map_err(|e| e.message)?
        .ok_or("the key service keeps no keys for this app name")?;
    let record = KeptRecord::open(&service.root, &name, &sealed)
        .map_err(|e| format!("{e}: the store's record was changed"))?;
    if record.app_id != app.app_id {
        return Err(format!(
            "the keys kept for this name are app {}'s, not this app's",
            record.app_id
        ));
    }
    let policy = record.policy.verify().map_err(|e| e.to_string())?;
    let addr: std::net::SocketAddr = app
        .node_addr
        .parse()
        .map_err(|_| format!("the node's address `{}` is not IP:port", app.node_addr))?;
    let cert_der = node_certificate(addr, &app.config_domain).await?;
    let public = |path: &'static str| async move {
        api.public(path)
            .await
            .map_err(|e| format!("{path}: {}", e.message))
    };
    let signer = String::from_utf8(public("/signer").await?).map_err(|_| "/signer is not PEM")?;
    let simulation_ca = mse_attest::ratls::pem_to_der(&public("/simulation-ca").await?)
        .map_err(|e| format!("/simulation-ca: {e}"))?;
    let revoked = mse_attest::verify::parse_revoked(&public("/simulation-revoked").await?)
        .map_err(|e| format!("/simulation-revoked: {e}"))?;
    let mr_signer = mse_attest::signer::mr_signer_from_pem(&signer).map_err(|e| e.to_string())?;
    let now = Utc::now();
    let endorsements = endorsements(&cert_der, now);
    let mut failures = Vec::new();
    for rule in &policy.admit {
        let Rule::Fingerprint { fingerprint } = rule else {
            continue;
        };
        let Some(fingerprint) = mse_keys::policy::parse_fingerprint(fingerprint) else {
            continue;
        };
        let checks = mse_attest::verify::Policy {
            mr_signer: Some(mr_signer),
            mr_enclave: Some(fingerprint),
            accepted_tcb: policy.tcb_statuses.clone(),
            // Simulated evidence is checked like any (the platform's CA,
            // its revoked keys); whether the policy admits it is `admit`'s.
            allow_simulation: true,
            simulation_ca: Some(simulation_ca.clone()),
            simulation_revoked: Some(revoked.clone()),
            ..Default::default()
        };
        let verification = mse_attest::verify::verify_certificate_with(
            &cert_der,
            &checks,
            endorsements.as_ref().map_err(String::as_str),
            now,
        );
        if !verification.verified {
            failures.push(verification.failures().join("; "));
            continue;
        }
        mse_keys::admit(
            &policy,
            &mse_keys::Candidate {
                verification: &verification,
                fingerprint,
                inputs: None,
                host: &app.node,
            },
            &app.revoked_hosts,
        )
        .map_err(|refusal| refusal.to_string())?;
        configure(addr, &app.config_domain, &cert_der, &app.app_id, &record).await?;
        return Ok(policy.version);
    }
    Err(format!(
        "the node's evidence verifies for no fingerprint policy version {} admits: {}",
        policy.version,
        if failures.is_empty() {
            "the policy names no fingerprint".to_string()
        } else {
            failures.join(" | ")
        }
    ))
}

/// What certifies the evidence of `cert_der`: what the node serves beside
/// its quote (Intel's collateral, an SEV-SNP chain), if anything.
fn endorsements(
    cert_der: &[u8],
    now: chrono::DateTime<Utc>,
) -> Result<mse_attest::verify::Endorsements, String> {
    let no = || mse_attest::verify::NO_COLLATERAL.to_string();
    let inspected = mse_attest::ratls::inspect(cert_der).map_err(|e| e.to_string())?;
    let aux = inspected.aux.ok_or_else(no)?;
    match mse_attest::hardware::kind(&inspected.quote_bytes) {
        Ok(mse_api::tee::Tee::SevSnp) => mse_attest::verify::Endorsements::from_aux(&aux),
        _ => mse_attest::collateral::served(&aux, now)
            .map(|c| mse_attest::verify::Endorsements::Dcap(Box::new(c)))
            .ok_or_else(no),
    }
}

/// The certificate the node at `addr` serves for `domain`.
async fn node_certificate(addr: std::net::SocketAddr, domain: &str) -> Result<Vec<u8>, String> {
    let (config, seen) = mse_attest::pin::capture_config(mse_attest::tls::HTTP1);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(domain.to_string())
        .map_err(|_| format!("`{domain}` is not a server name"))?;
    let handshake = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        connector.connect(name, stream).await
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| format!("the node at {addr} did not finish a TLS handshake in time"))?
        .map_err(|e| format!("cannot reach the node at {addr}: {e}"))?;
    seen.seen()
        .ok_or_else(|| format!("the node at {addr} showed no certificate"))
}

/// Sends the kept configuration to the node, over TLS pinned to the
/// certificate that verified.
async fn configure(
    addr: std::net::SocketAddr,
    domain: &str,
    cert_der: &[u8],
    app_id: &str,
    record: &KeptRecord,
) -> Result<(), String> {
    let tls = mse_attest::pin::client_config(cert_der, mse_attest::tls::HTTP1);
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve(domain, addr)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| format!("cannot build the TLS client: {e}"))?;
    let request = mse_api::config::ConfigRequest {
        uuid: app_id.to_string(),
        code_secret_key: record.code_secret_key.clone(),
        ssl_private_key: record.ssl_private_key.clone(),
        app_secrets: record.app_secrets.clone(),
    };
    let url = format!("https://{domain}:{}/", addr.port());
    let response = http
        .post(&url)
        .json(&request)
        .send()
        .await
        .map_err(|e| format!("cannot reach the node's configuration server: {e}"))?;
    if response.status().is_success() {
        return Ok(());
    }
    let status = response.status();
    let why = response
        .json::<mse_api::config::ConfigAnswer>()
        .await
        .ok()
        .and_then(|a| a.error)
        .unwrap_or_else(|| format!("HTTP {status}"));
    Err(format!(
        "the node refused the configuration ({status}): {why}"
    ))
}
