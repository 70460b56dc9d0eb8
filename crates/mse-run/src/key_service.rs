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
    Handover, Hello, KeyServiceLaunch, PendingRelease, ProvisionAnswer, ProvisionRequest, Released,
    Replica, RootCheck, SealedRecord, TicketInfo, MAX_PROVISION_BODY, SERVICE,
};
use mse_api::tee::Tee;
use mse_keys::record::{record_name, KeptRecord};
use mse_keys::{AppName, RootKey, Rule, SignedPolicy};
use mse_run::status::{emit, Event};
use rustls::pki_types::pem::PemObject as _;
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
    /// The TEE it runs in: a replica hands its root key only to a replica
    /// of the same measurement in the same kind of TEE.
    tee: Tee,
    /// The root key, once this replica made it or a replica handed it over.
    root: std::sync::OnceLock<RootKey>,
    /// Its folder, where the root key is kept.
    dir: std::path::PathBuf,
    /// Its RA-TLS certificate and key: what it shows another replica.
    identity: (Vec<u8>, zeroize::Zeroizing<String>),
    /// The platform's API, where it keeps its sealed records.
    api: Option<Api>,
}

impl Service {
    /// The root key, or the answer of a replica still waiting for it.
    fn root(&self) -> Result<&RootKey, Refused> {
        self.root.get().ok_or_else(|| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "this replica of the key service does not hold the root key yet: try again in a \
                 few seconds"
                    .to_string(),
            )
        })
    }
}

/// The platform's API, as the service calls it.
struct Api {
    /// The URL requests are built with: the first API's.
    url: String,
    /// Every API replica's base URL, the first one's first.
    bases: Vec<reqwest::Url>,
    /// The index in `bases` of the last one that answered.
    answering: std::sync::atomic::AtomicUsize,
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
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent("mse key service");
        if let Some(pin) = &access.ca_sha256 {
            let pin: [u8; 32] = hex::decode(pin)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| Failure::Invalid("ca_sha256: 64 hex digits".into()))?;
            http = http.tls_backend_preconfigured(mse_attest::tls::pinned_ca_client_config(
                pin,
                mse_attest::tls::HTTP1,
            ));
        }
        let http = http
            .build()
            .map_err(|e| Failure::Error(format!("cannot build the HTTP client: {e}")))?;
        let bases = std::iter::once(&access.url)
            .chain(&access.other_urls)
            .map(|url| {
                reqwest::Url::parse(url)
                    .map_err(|e| Failure::Invalid(format!("the API URL `{url}`: {e}")))
            })
            .collect::<Result<Vec<_>, Failure>>()?;
        Ok(Api {
            url: access.url.trim_end_matches('/').to_string(),
            bases,
            answering: std::sync::atomic::AtomicUsize::new(0),
            credential: zeroize::Zeroizing::new(credential.trim().to_string()),
            http,
        })
    }

    /// Sends `request` (built on [`Api::url`]) to the API replica that last
    /// answered, then to each other in turn while none answers.
    async fn execute(&self, request: reqwest::Request) -> Result<reqwest::Response, String> {
        use std::sync::atomic::Ordering;
        let first = self.answering.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for i in 0..self.bases.len() {
            let at = (first + i) % self.bases.len();
            let Some(mut attempt) = request.try_clone() else {
                return Err("the request cannot be sent twice".into());
            };
            let base = &self.bases[at];
            let url = attempt.url_mut();
            if url.set_scheme(base.scheme()).is_err()
                || url.set_host(base.host_str()).is_err()
                || url.set_port(base.port()).is_err()
            {
                failures.push(format!("{base}: not a base URL"));
                continue;
            }
            match self.http.execute(attempt).await {
                Ok(response) => {
                    self.answering.store(at, Ordering::Relaxed);
                    return Ok(response);
                }
                Err(e) => failures.push(format!("{base}: {e}")),
            }
        }
        Err(failures.join("; "))
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiFailure> {
        let unsent = |e: String| ApiFailure {
            status: None,
            message: format!("the platform's API does not answer: {e}"),
        };
        let request = request
            .bearer_auth(self.credential.as_str())
            .build()
            .map_err(|e| unsent(e.to_string()))?;
        let response = self.execute(request).await.map_err(unsent)?;
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

    async fn root_check(&self) -> Result<Option<String>, ApiFailure> {
        let answer: RootCheck = self
            .json(self.http.get(format!("{}/keys/root", self.url)))
            .await?;
        Ok(answer.check)
    }

    async fn claim_root(&self, check: &str, shares: Vec<String>) -> Result<(), ApiFailure> {
        let request = self
            .http
            .post(format!("{}/keys/root", self.url))
            .json(&RootCheck {
                check: Some(check.to_string()),
                shares,
            });
        self.send(request).await.map(|_| ())
    }

    async fn recovery(&self) -> Result<Option<mse_api::keys::RecoveryHolders>, ApiFailure> {
        self.json(self.http.get(format!("{}/keys/recovery", self.url)))
            .await
    }

    async fn replicas(&self) -> Result<Vec<Replica>, ApiFailure> {
        self.json(self.http.get(format!("{}/keys/replicas", self.url)))
            .await
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
    let acquiring = tokio::spawn(acquire_root(service.clone()));
    let releasing = tokio::spawn(release_loop(service.clone()));
    let reason = tokio::select! {
        () = serve(listener, tls, service) => "the listener closed",
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    releasing.abort();
    acquiring.abort();
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

/// The root key kept in `dir`, if there is one.
fn read_root_key(dir: &Path) -> Result<Option<RootKey>, String> {
    let path = dir.join(ROOT_KEY);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
                format!(
                    "{} is not a root key (32 bytes): remove it to get the platform's from a \
                     replica, or recover it from its shares",
                    path.display()
                )
            })?;
            Ok(Some(RootKey::from_bytes(bytes)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Keeps `root` in `dir` (mode 0600), where no root key is yet.
fn write_root_key(dir: &Path, root: &RootKey) -> Result<(), String> {
    let path = dir.join(ROOT_KEY);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&path)
        .and_then(|mut f| f.write_all(root.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Until this replica holds the platform's root key: its own kept one
/// (the platform must know it as its own), a new one when the platform has
/// none yet (the first replica), or the platform's from a replica that
/// holds it, once each attested the other. Without an API, the kept one or
/// a new one.
async fn acquire_root(service: Arc<Service>) {
    let mut said = String::new();
    loop {
        // Recovered from shares meanwhile (`POST /recover`).
        if service.root.get().is_some() {
            return;
        }
        match try_acquire_root(&service).await {
            Ok(root) => {
                let check = mse_keys::recovery::service_id(&root);
                let _ = service.root.set(root);
                eprintln!("key service: holds root key {check}");
                return;
            }
            Err(why) => {
                // Said when it changes, not every second.
                if why != said {
                    eprintln!("key service: waiting for the root key: {why}");
                    said = why;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn try_acquire_root(service: &Service) -> Result<RootKey, String> {
    let kept = read_root_key(&service.dir)?;
    let Some(api) = &service.api else {
        if let Some(root) = kept {
            return Ok(root);
        }
        let root = RootKey::generate();
        write_root_key(&service.dir, &root)?;
        return Ok(root);
    };
    if let Some(root) = kept {
        api.claim_root(&mse_keys::recovery::service_id(&root), Vec::new())
            .await
            .map_err(|e| e.message)?;
        return Ok(root);
    }
    let Some(check) = api.root_check().await.map_err(|e| e.message)? else {
        let root = RootKey::generate();
        // Its recovery shares, each sealed to a holder the operator named.
        let shares = match api.recovery().await.map_err(|e| e.message)? {
            Some(recovery) => {
                mse_keys::holders::split_for(&root, recovery.threshold, &recovery.holders)
                    .map_err(|e| e.to_string())?
            }
            None => Vec::new(),
        };
        match api
            .claim_root(&mse_keys::recovery::service_id(&root), shares)
            .await
        {
            Ok(()) => {
                write_root_key(&service.dir, &root)?;
                return Ok(root);
            }
            // Another replica made it first: get it from that one.
            Err(e) => return Err(e.message),
        }
    };
    let replicas = api.replicas().await.map_err(|e| e.message)?;
    if replicas.is_empty() {
        return Err(format!(
            "the platform's root key is {check} and no live replica holds it: start a replica \
             that does, or recover it from its shares"
        ));
    }
    let mut failures = Vec::new();
    for replica in &replicas {
        match handover_from(service, api, replica).await {
            Ok(root) if mse_keys::recovery::service_id(&root) == check => {
                write_root_key(&service.dir, &root)?;
                api.claim_root(&check, Vec::new())
                    .await
                    .map_err(|e| e.message)?;
                eprintln!(
                    "key service: the root key was handed over by the replica on node {}",
                    replica.node
                );
                return Ok(root);
            }
            Ok(_) => failures.push(format!(
                "node {}: its root key is not the platform's",
                replica.node
            )),
            Err(why) => failures.push(format!("node {}: {why}", replica.node)),
        }
    }
    Err(failures.join("; "))
}

/// What the platform publishes that evidence is checked against.
struct Trust {
    mr_signer: [u8; 32],
    simulation_ca: Vec<u8>,
    revoked: Vec<[u8; 32]>,
    /// The platform's enclave-signing key, PEM.
    signer_pem: String,
    /// The platform's catalog, whose reference measurements count only
    /// under `signer_pem`'s signature.
    catalog: Option<(mse_runtime::Catalog, Option<String>)>,
}

impl Trust {
    async fn fetch(api: &Api) -> Result<Trust, String> {
        let public = |path: &'static str| async move {
            api.public(path)
                .await
                .map_err(|e| format!("{path}: {}", e.message))
        };
        let signer =
            String::from_utf8(public("/signer").await?).map_err(|_| "/signer is not PEM")?;
        Ok(Trust {
            catalog: None,
            signer_pem: signer.clone(),
            mr_signer: mse_attest::signer::mr_signer_from_pem(&signer)
                .map_err(|e| e.to_string())?,
            simulation_ca: mse_attest::ratls::pem_to_der(&public("/simulation-ca").await?)
                .map_err(|e| format!("/simulation-ca: {e}"))?,
            revoked: mse_attest::verify::parse_revoked(&public("/simulation-revoked").await?)
                .map_err(|e| format!("/simulation-revoked: {e}"))?,
        })
    }

    /// [`Trust::fetch`] with the platform's catalog, which releases to
    /// nodes need (and replicas checking each other do not): without it,
    /// hardware evidence has no reference to meet.
    async fn fetch_for_release(api: &Api) -> Result<Trust, String> {
        let mut trust = Trust::fetch(api).await?;
        trust.catalog = api
            .public("/catalog")
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice::<mse_runtime::PublishedCatalog>(&bytes).ok())
            .and_then(|published| {
                let signature = published.references_signature.clone();
                published
                    .into_catalog("the platform's catalog")
                    .ok()
                    .map(|catalog| (catalog, signature))
            });
        Ok(trust)
    }

    /// The checks of evidence expected to carry `fingerprint`, simulated
    /// evidence included when `allow_simulation`.
    fn policy(&self, fingerprint: [u8; 32], allow_simulation: bool) -> mse_attest::verify::Policy {
        mse_attest::verify::Policy {
            mr_signer: Some(self.mr_signer),
            mr_enclave: Some(fingerprint),
            allow_simulation,
            simulation_ca: Some(self.simulation_ca.clone()),
            simulation_revoked: Some(self.revoked.clone()),
            ..Default::default()
        }
    }

    /// The checks of a node's evidence for `fingerprint` under the owner's
    /// `policy`, for an app of runtime image `image`: simulated evidence
    /// against the platform's CA (whether the policy admits it is
    /// `admit`'s), hardware evidence against Intel's and AMD's roots — or
    /// the test roots the owner's policy names for emulated hardware — and
    /// the signed reference measurements of the platform's catalog.
    fn node_policy(
        &self,
        policy: &mse_keys::Policy,
        fingerprint: [u8; 32],
        image: &str,
    ) -> Result<mse_attest::verify::Policy, String> {
        let roots = match (&policy.test_roots, policy.emulated) {
            (Some(pem), true) => mse_attest::hardware::Trust::test_from_pem(pem)
                .map_err(|e| format!("the policy's test roots: {e}"))?,
            _ => mse_attest::hardware::Trust::Vendors,
        };
        let signed = match &self.catalog {
            Some((catalog, signature)) => catalog.signed_references(
                "the platform's catalog",
                signature.as_deref(),
                Some(&self.signer_pem),
                Some(image),
            ),
            None => mse_runtime::SignedReferences {
                refused: Some("the platform's catalog could not be read".into()),
                ..Default::default()
            },
        };
        Ok(mse_attest::verify::Policy {
            accepted_tcb: policy.tcb_statuses.clone(),
            trust: roots,
            references: signed.references,
            references_refused: signed.refused,
            snp_min_tcb: signed.snp_min_tcb,
            sgx_enclaves: signed.sgx_enclaves,
            ..self.policy(fingerprint, true)
        })
    }
}

/// Whether `cert_der` is another replica of this service: its evidence
/// verifies, carries this service's measurement and comes from the same
/// kind of TEE (a simulated replica gets nothing from a hardware one).
async fn verify_replica(service: &Service, api: &Api, cert_der: &[u8]) -> Result<(), String> {
    let trust = Trust::fetch(api).await?;
    let checks = trust.policy(service.measurement, service.tee == Tee::Simulation);
    let now = Utc::now();
    let verification = mse_attest::verify::verify_certificate_with(
        cert_der,
        &checks,
        endorsements(cert_der, now).as_ref().map_err(String::as_str),
        now,
    );
    if !verification.verified {
        return Err(format!(
            "its evidence does not verify as this key service's: {}",
            verification.failures().join("; ")
        ));
    }
    if verification.tee != Some(service.tee) {
        return Err(format!(
            "it runs in {}, this replica in {}",
            verification.tee.map_or("no TEE", |t| t.as_str()),
            service.tee.as_str()
        ));
    }
    Ok(())
}

/// Asks `replica` for the root key over TLS where each side shows its
/// RA-TLS certificate and verifies the other's.
async fn handover_from(service: &Service, api: &Api, replica: &Replica) -> Result<RootKey, String> {
    let addr: std::net::SocketAddr = replica
        .addr
        .parse()
        .map_err(|_| format!("its address `{}` is not IP:port", replica.addr))?;
    let cert_der = node_certificate(addr, &replica.domain).await?;
    verify_replica(service, api, &cert_der).await?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(service.identity.1.as_bytes())
        .map_err(|e| format!("this replica's RA-TLS key: {e}"))?;
    let tls = mse_attest::pin::client_config_with_identity(
        &cert_der,
        &service.identity.0,
        key,
        mse_attest::tls::HTTP1,
    )
    .map_err(|e| format!("this replica's RA-TLS certificate: {e}"))?;
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve(&replica.domain, addr)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build the TLS client: {e}"))?;
    let response = http
        .post(format!(
            "https://{}:{}/handover",
            replica.domain,
            addr.port()
        ))
        .send()
        .await
        .map_err(|e| format!("cannot reach it: {e}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let why = response
            .json::<mse_api::error::ErrorBody>()
            .await
            .map(|b| b.error)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        return Err(format!("it refused ({status}): {why}"));
    }
    let handover: Handover = response
        .json()
        .await
        .map_err(|e| format!("its answer: {e}"))?;
    let bytes: [u8; 32] = hex::decode(&handover.root_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("its answer holds no root key")?;
    Ok(RootKey::from_bytes(bytes))
}

/// `POST /recover`: on a replica that holds no root key while no live
/// replica does, the root key recovered from its holders' shares — only
/// the platform's (its check value), kept and recorded as any root key.
async fn recover(req: Request<Incoming>, service: &Service) -> Result<RootCheck, Refused> {
    if service.root.get().is_some() {
        return Err((
            StatusCode::CONFLICT,
            "this replica holds the root key already: nothing to recover".into(),
        ));
    }
    let Some(api) = &service.api else {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "this key service keeps nothing: no platform API runs beside its node".into(),
        ));
    };
    let body = Limited::new(req.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|_| bad("a recovery is at most 64 kB of JSON"))?
        .to_bytes();
    let request: mse_api::keys::Recover =
        serde_json::from_slice(&body).map_err(|e| bad(format!("not a recovery: {e}")))?;
    let shares: Vec<&str> = request.shares.iter().map(String::as_str).collect();
    let root = mse_keys::recovery::recover(&shares)
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let check = mse_keys::recovery::service_id(&root);
    let platform = api
        .root_check()
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.message))?;
    if platform.as_deref() != Some(check.as_str()) {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the shares give root key {check}; the platform's is {}: they are another \
                 platform's",
                platform.as_deref().unwrap_or("none yet")
            ),
        ));
    }
    write_root_key(&service.dir, &root).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))?;
    api.claim_root(&check, Vec::new())
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.message))?;
    let _ = service.root.set(root);
    eprintln!(
        "key service: root key {check} recovered from {} shares",
        shares.len()
    );
    Ok(RootCheck {
        check: Some(check),
        shares: Vec::new(),
    })
}

/// `POST /handover`: the root key, to a client that showed the RA-TLS
/// certificate of another replica of this service.
async fn hand_over(service: &Service, peer: Option<&[u8]>) -> Result<Handover, Refused> {
    let root = service.root()?;
    let Some(api) = &service.api else {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "this key service has no replicas".into(),
        ));
    };
    let peer = peer.ok_or_else(|| {
        (
            StatusCode::UNAUTHORIZED,
            "only a replica of this key service, showing its RA-TLS certificate, gets the root key"
                .to_string(),
        )
    })?;
    verify_replica(service, api, peer).await.map_err(|why| {
        (
            StatusCode::FORBIDDEN,
            format!("not a replica of this key service: {why}"),
        )
    })?;
    eprintln!("key service: handed the root key to another replica of this service");
    Ok(Handover {
        root_key: hex::encode(root.as_bytes()),
    })
}

async fn start(
    launch: &KeyServiceLaunch,
) -> Result<(tokio::net::TcpListener, Arc<ServerConfig>, Arc<Service>), Failure> {
    create_private_dir(&launch.work_dir).map_err(|e| {
        Failure::Invalid(format!("cannot create {}: {e}", launch.work_dir.display()))
    })?;
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
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(ratls.key_pem.as_bytes())
        .map_err(|e| Failure::Error(format!("the RA-TLS key: {e}")))?;
    let tls = mse_attest::pin::server_config_asking_client_cert(
        vec![rustls::pki_types::CertificateDer::from(
            ratls.cert_der.clone(),
        )],
        key,
        mse_attest::tls::HTTP1,
    )
    .map_err(|e| Failure::Error(format!("the RA-TLS certificate: {e}")))?;
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
            tee: launch.quotes.tee(),
            root: std::sync::OnceLock::new(),
            dir: launch.work_dir.clone(),
            identity: (ratls.cert_der, zeroize::Zeroizing::new(ratls.key_pem)),
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
            let peer: Option<Arc<[u8]>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| Arc::from(cert.as_ref()));
            let handler =
                hyper::service::service_fn(move |req| handle(req, service.clone(), peer.clone()));
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
    peer: Option<Arc<[u8]>>,
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
        (&Method::POST, "/policy") => match update_policy(req, &service).await {
            Ok(answer) => json(StatusCode::OK, &answer),
            Err((status, message)) => {
                eprintln!("key service: policy update refused ({status}): {message}");
                json(status, &mse_api::error::ErrorBody::new(message))
            }
        },
        (&Method::POST, "/recover") => match recover(req, &service).await {
            Ok(answer) => json(StatusCode::OK, &answer),
            Err((status, message)) => {
                eprintln!("key service: recovery refused ({status}): {message}");
                json(status, &mse_api::error::ErrorBody::new(message))
            }
        },
        (&Method::POST, "/handover") => match hand_over(&service, peer.as_deref()).await {
            Ok(answer) => json(StatusCode::OK, &answer),
            Err((status, message)) => {
                eprintln!("key service: hand-over refused ({status}): {message}");
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

/// A signed policy and whose app its ticket is for, once both are checked:
/// the policy verifies and is for the ticket's app name.
struct Ticketed<'a> {
    api: &'a Api,
    signed: SignedPolicy,
    policy: mse_keys::Policy,
    info: TicketInfo,
    app: AppName,
}

/// Reads a JSON body of at most `max` bytes.
async fn read_body<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    max: usize,
    what: &str,
) -> Result<T, Refused> {
    let body = Limited::new(req.into_body(), max)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a {what} is at most {max} bytes"),
                )
            } else {
                bad("the request's body could not be read")
            }
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| bad(format!("not a {what}: {e}")))
}

/// Checks `policy` and redeems `ticket`: the policy must verify and be for
/// the app name the ticket is for.
async fn ticketed<'a>(
    service: &'a Service,
    policy: &serde_json::Value,
    ticket: &str,
) -> Result<Ticketed<'a>, Refused> {
    let Some(api) = &service.api else {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "this key service keeps nothing: no platform API runs beside its node".into(),
        ));
    };
    let signed: SignedPolicy =
        serde_json::from_value(policy.clone()).map_err(|e| bad(format!("policy: {e}")))?;
    let policy = signed.verify().map_err(|e| bad(e.to_string()))?;
    let info = api.redeem(ticket).await.map_err(|e| {
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
    Ok(Ticketed {
        api,
        signed,
        policy,
        info,
        app,
    })
}

/// `POST /provision`: an owner's keys and signed policy for an app name,
/// kept sealed in the platform's store once the ticket says whose app it
/// is, the policy is that owner's for that app, and it may replace the one
/// held (same owner key, higher version).
async fn provision(req: Request<Incoming>, service: &Service) -> Result<ProvisionAnswer, Refused> {
    let request: ProvisionRequest = read_body(req, MAX_PROVISION_BODY, "provisioning").await?;
    let root = service.root()?;
    mse_package::CodeKey::from_hex(&request.code_secret_key)
        .map_err(|e| bad(format!("code_secret_key: {e}")))?;
    let Ticketed {
        api,
        signed,
        policy,
        info,
        app,
    } = ticketed(service, &request.policy, &request.ticket).await?;
    let fingerprints = admitted_fingerprints(&policy)?;
    if let Some(running) = &info.fingerprint {
        if !fingerprints.iter().any(|f| f.eq_ignore_ascii_case(running)) {
            return Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the policy does not admit the app it comes with (fingerprint {running}): \
                     it could never be released"
                ),
            ));
        }
    }
    let name = record_name(&app);
    let unavailable = |e: ApiFailure| (StatusCode::BAD_GATEWAY, e.message);
    let held = match api.record(&name).await.map_err(unavailable)? {
        Some(sealed) => {
            let held = KeptRecord::open(root, &name, &sealed).map_err(|e| {
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
            Some(held)
        }
        None => None,
    };
    if request.rotate_storage_key && request.storage_key.is_none() {
        return Err(bad(
            "rotate_storage_key: the request brings no new storage key",
        ));
    }
    // The storage key stays the one kept (every deployment of the name
    // opens the snapshots the earlier ones wrote) unless the owner rotates
    // it; the one it replaces stays beside it until the home is resealed.
    let (storage_key, previous_storage_key) = match &held {
        Some(held) if request.rotate_storage_key => {
            (request.storage_key.clone(), held.storage_key.clone())
        }
        Some(held) => (
            held.storage_key.clone().or(request.storage_key.clone()),
            held.previous_storage_key.clone(),
        ),
        None => (request.storage_key.clone(), None),
    };
    // `--keep-secrets`: the new deployment's code key with what is kept.
    let (ssl_private_key, app_secrets) = match (&held, request.keep_secrets) {
        (None, true) => {
            return Err((
                StatusCode::NOT_FOUND,
                format!(
                    "the key service keeps no secrets for {app}: deploy it once with \
                     --keep-running and its secrets"
                ),
            ))
        }
        (Some(held), true) => (held.ssl_private_key.clone(), held.app_secrets.clone()),
        (_, false) => (request.ssl_private_key.clone(), request.app_secrets.clone()),
    };
    let record = KeptRecord {
        policy: signed,
        app_id: info.app_id.clone(),
        code_secret_key: request.code_secret_key.clone(),
        ssl_private_key,
        app_secrets,
        storage_key,
        previous_storage_key,
    };
    api.put_record(&name, &record.seal(root, &name))
        .await
        .map_err(unavailable)?;
    eprintln!(
        "key service: keeping the keys of {app} (app {}, policy version {})",
        info.app_id, policy.version
    );
    let mut released = false;
    if request.keep_secrets || request.configure {
        let waiting = info.waiting.as_ref().ok_or_else(|| {
            (
                StatusCode::CONFLICT,
                format!(
                    "app {}'s node is not waiting for its configuration: nothing to release to",
                    info.app_id
                ),
            )
        })?;
        let trust = Trust::fetch_for_release(api)
            .await
            .map_err(|why| (StatusCode::BAD_GATEWAY, why))?;
        release(service, api, &trust, waiting)
            .await
            .map_err(|why| {
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("the new app's node gets nothing: {why}"),
                )
            })?;
        let _ = api.released(&info.app_id, None).await;
        eprintln!(
            "key service: released the kept keys of {app} to app {} on node {}",
            info.app_id, waiting.node
        );
        released = true;
    }
    Ok(ProvisionAnswer {
        app: app.to_string(),
        policy_version: policy.version,
        released,
    })
}

/// The fingerprints `policy` admits; a policy with an `inputs` rule is
/// refused, since no release honours one yet (a node would never get the
/// keys it guards).
fn admitted_fingerprints(policy: &mse_keys::Policy) -> Result<Vec<&str>, Refused> {
    policy
        .admit
        .iter()
        .map(|rule| match rule {
            Rule::Fingerprint { fingerprint } => Ok(fingerprint.as_str()),
            Rule::Inputs { .. } => Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                "the policy has an `inputs` rule, which this key service does not release \
                 under: admit the new version's fingerprint in a later policy instead (`mse \
                 deploy --keep-secrets` does)"
                    .to_string(),
            )),
        })
        .collect()
}

/// `POST /policy`: a later version of the owner's policy for an app name
/// whose keys the service keeps, signed by the same key; the keys stay.
async fn update_policy(
    req: Request<Incoming>,
    service: &Service,
) -> Result<ProvisionAnswer, Refused> {
    let request: mse_api::keys::PolicyUpdate = read_body(req, 64 * 1024, "policy update").await?;
    let root = service.root()?;
    let Ticketed {
        api,
        signed,
        policy,
        app,
        ..
    } = ticketed(service, &request.policy, &request.ticket).await?;
    let name = record_name(&app);
    let unavailable = |e: ApiFailure| (StatusCode::BAD_GATEWAY, e.message);
    let sealed = api
        .record(&name)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                format!("the key service keeps no keys for {app}: deploy it with --keep-running"),
            )
        })?;
    let mut record = KeptRecord::open(root, &name, &sealed).map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{e}: the store's record was changed"),
        )
    })?;
    admitted_fingerprints(&policy)?;
    signed
        .succeeds(&record.policy)
        .map_err(|e| (StatusCode::CONFLICT, e.to_string()))?;
    record.policy = signed;
    api.put_record(&name, &record.seal(root, &name))
        .await
        .map_err(unavailable)?;
    eprintln!(
        "key service: policy version {} in force for {app}",
        policy.version
    );
    Ok(ProvisionAnswer {
        app: app.to_string(),
        policy_version: policy.version,
        released: false,
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
        if pending.is_empty() || service.root.get().is_none() {
            continue;
        }
        let trust = match Trust::fetch_for_release(api).await {
            Ok(trust) => trust,
            Err(why) => {
                eprintln!("key service: cannot read what evidence is checked against: {why}");
                continue;
            }
        };
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
            let releasing = std::time::Instant::now();
            match release(&service, api, &trust, app).await {
                Ok(version) => {
                    eprintln!(
                        "key service: released the keys of app {} to node {} (policy version \
                         {version}) in {} ms",
                        app.app_id,
                        app.node,
                        releasing.elapsed().as_millis()
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
async fn release(
    service: &Service,
    api: &Api,
    trust: &Trust,
    app: &PendingRelease,
) -> Result<u64, String> {
    let root = service.root().map_err(|(_, why)| why)?;
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
    let record = KeptRecord::open(root, &name, &sealed)
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
        let checks = trust.node_policy(&policy, fingerprint, &app.docker)?;
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
        storage_key: record.storage_key.clone(),
        previous_storage_key: record.previous_storage_key.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// An API replica on loopback that answers every request with `body`
    /// and counts them.
    async fn replica(body: &'static str) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = vec![0u8; 4096];
                let _ = stream.read(&mut request).await;
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        (url, served)
    }

    #[tokio::test]
    async fn an_api_replica_that_does_not_answer_is_passed_over_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let credential = dir.path().join("credential");
        std::fs::write(&credential, "c").unwrap();
        // Nothing listens on the first: it was bound, then let go.
        let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let down = format!("http://{}", gone.local_addr().unwrap());
        drop(gone);
        let (up, served) = replica(r#"{"check": "abcd"}"#).await;
        let api = Api::new(&mse_api::keys::ApiAccess {
            url: down.clone(),
            other_urls: vec![up],
            credential: credential.clone(),
            ca_sha256: None,
        })
        .unwrap_or_else(|_| panic!("an API client"));
        let answer = api
            .root_check()
            .await
            .unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(answer.as_deref(), Some("abcd"));
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The one that answered is asked first from then on.
        assert_eq!(api.answering.load(std::sync::atomic::Ordering::SeqCst), 1);

        // None answers: the failure names each.
        let alone = Api::new(&mse_api::keys::ApiAccess {
            url: down.clone(),
            other_urls: Vec::new(),
            credential,
            ca_sha256: None,
        })
        .unwrap_or_else(|_| panic!("an API client"));
        let failure = alone.root_check().await.expect_err("no API answers");
        assert_eq!(failure.status, None);
        assert!(failure.message.contains(&down), "{}", failure.message);
    }
}
