//! An ACME client (RFC 8555) that answers TLS-ALPN-01 (RFC 8737) itself,
//! so that the key of the app's domain never leaves the node.
//!
//! The node's account key is an ECDSA P-256 key in a file of the node
//! host's (mode 0600, made on first use); the domain's key is the node's
//! RA-TLS key, so the quote of the RA-TLS certificate binds the key of the
//! certificate the CA issues. The challenge certificate is handed to the
//! node's TLS server through [`Challenges`], which answers the CA's
//! `acme-tls/1` handshakes on the app's port (reached through the
//! platform's SNI passthrough proxy).
//!
//! The JWS signing and the key authorization are pure functions; the
//! network sits in [`Http`], a small HTTP/1.1 client over rustls with a
//! timeout on every exchange.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, CONTENT_TYPE, LOCATION};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The ALPN protocol of TLS-ALPN-01 validation connections (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The most bytes read of one ACME response.
const MAX_RESPONSE: usize = 1 << 20;
/// The longest one HTTP exchange with the ACME server may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the node waits for the CA to validate, and to issue.
const POLL_LIMIT: Duration = Duration::from_secs(90);
/// How often it asks meanwhile (or as `Retry-After` says, up to 10 s).
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Times a request is sent again after a `badNonce` error.
const NONCE_RETRIES: usize = 3;

/// Why a certificate could not be obtained, in words for the app's owner.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// The ACME server could not be reached or answered garbage.
    #[error("cannot reach the ACME server at {url}: {why}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// The ACME server refused a request (an RFC 7807 problem document).
    #[error("the ACME server refused to {step}: {detail}{}", retry_hint(.retry_after))]
    Refused {
        /// What the node asked for.
        step: &'static str,
        /// The problem's type, without `urn:ietf:params:acme:error:`.
        kind: String,
        /// The problem's detail, with a hint for known kinds.
        detail: String,
        /// When to try again, when the server said.
        retry_after: Option<String>,
    },
    /// The CA could not validate the node's answer to its challenge.
    #[error(
        "the ACME server could not validate {domain}: {detail} (the CA must reach the \
             node through the platform's proxy on port 443 with TLS-ALPN-01: check that \
             {domain} resolves to the proxy)"
    )]
    Validation {
        /// The app's domain.
        domain: String,
        /// What the CA reported.
        detail: String,
    },
    /// The ACME server answered something the protocol does not allow.
    #[error("the ACME server answered unexpectedly while trying to {step}: {why}")]
    Protocol {
        /// What the node asked for.
        step: &'static str,
        /// What was wrong.
        why: String,
    },
    /// The node's own files or keys.
    #[error("{0}")]
    Local(String),
}

fn retry_hint(retry_after: &Option<String>) -> String {
    match retry_after {
        Some(when) => format!(" (retry after {when})"),
        None => String::new(),
    }
}

impl AcmeError {
    /// True when the CA limits the rate of orders: retrying soon won't help.
    pub fn is_rate_limit(&self) -> bool {
        matches!(self, AcmeError::Refused { kind, .. } if kind == "rateLimited")
    }
}

/// Where certificates come from: the operator's ACME settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The directory URL (Let's Encrypt's, or a test CA's).
    pub directory: String,
    /// PEM roots trusted for the ACME server's own HTTPS [default: the
    /// system's].
    pub ca_bundle: Option<PathBuf>,
    /// The node's account key (PKCS#8 PEM, made when missing).
    pub account_key: PathBuf,
    /// The validity to ask for (an order's `notAfter`), for CAs that honour
    /// it; `None` lets the CA choose (Let's Encrypt refuses `notAfter`).
    pub lifetime: Option<Duration>,
}

/// A certificate the CA issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Start of the leaf's validity.
    pub not_before: DateTime<Utc>,
    /// End of the leaf's validity.
    pub not_after: DateTime<Utc>,
    /// The leaf's issuer, as a distinguished name.
    pub issuer: String,
}

impl Issued {
    /// When to renew: two thirds into the leaf's validity, as Let's
    /// Encrypt advises.
    pub fn renew_at(&self) -> DateTime<Utc> {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }
}

/// The challenge certificates being offered, by domain: what the node's TLS
/// server presents to `acme-tls/1` clients.
#[derive(Debug, Default)]
pub struct Challenges {
    by_domain: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    /// The challenge certificate for `domain`, if one is being offered.
    pub fn get(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        self.by_domain
            .read()
            .ok()?
            .get(&domain.to_ascii_lowercase())
            .cloned()
    }

    fn set(&self, domain: &str, key: Arc<CertifiedKey>) {
        if let Ok(mut map) = self.by_domain.write() {
            map.insert(domain.to_ascii_lowercase(), key);
        }
    }

    fn clear(&self, domain: &str) {
        if let Ok(mut map) = self.by_domain.write() {
            map.remove(&domain.to_ascii_lowercase());
        }
    }
}

/// The TLS-ALPN-01 certificate for `domain` and a key authorization
/// (RFC 8737 §3): self-signed, its only name `domain`, with the critical
/// `acmeIdentifier` extension holding SHA-256 of the key authorization.
pub fn challenge_certificate(
    domain: &str,
    key_authorization: &str,
) -> Result<CertifiedKey, AcmeError> {
    let local = |e: &dyn std::fmt::Display| {
        AcmeError::Local(format!("cannot make the challenge certificate: {e}"))
    };
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| local(&e))?;
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| local(&e))?;
    let digest = Sha256::digest(key_authorization.as_bytes());
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(&digest)];
    let cert = params.self_signed(&key).map_err(|e| local(&e))?;
    // Not through `certified_key`: its check that the key fits parses the
    // certificate, and refuses the critical extension it does not know.
    let signing = mse_attest::tls::provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .map_err(|e| local(&e))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// A rustls signing key and chain, with the platform's crypto provider.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, rustls::Error> {
    CertifiedKey::from_der(chain, key, &mse_attest::tls::provider())
}

/// An account key, with what the protocol derives from it.
struct AccountKey {
    signing: SigningKey,
    jwk: Value,
    thumbprint: String,
}

impl AccountKey {
    fn new(signing: SigningKey) -> Self {
        let point = signing.verifying_key().to_encoded_point(false);
        let (x, y) = (
            B64.encode(point.x().map(|x| &x[..]).unwrap_or_default()),
            B64.encode(point.y().map(|y| &y[..]).unwrap_or_default()),
        );
        // RFC 7638: the required members, in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        AccountKey {
            signing,
            jwk: json!({"crv": "P-256", "kty": "EC", "x": x, "y": y}),
            thumbprint: B64.encode(Sha256::digest(canonical.as_bytes())),
        }
    }

    /// Loads the key at `path`, or makes one there (mode 0600) when there
    /// is none. Two nodes making it at once agree on the first one written.
    fn load_or_create(path: &Path) -> Result<AccountKey, AcmeError> {
        let local = |what: &str, e: &dyn std::fmt::Display| {
            AcmeError::Local(format!(
                "{what} the ACME account key {}: {e}",
                path.display()
            ))
        };
        match std::fs::read_to_string(path) {
            Ok(pem) => {
                return SigningKey::from_pkcs8_pem(&pem)
                    .map(AccountKey::new)
                    .map_err(|e| local("cannot read", &e))
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(local("cannot read", &e))
            }
            Err(_) => {}
        }
        let signing = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let pem = signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| local("cannot encode", &e))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| local("cannot store", &e))?;
        }
        let written = {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .and_then(|mut file| file.write_all(pem.as_bytes()))
        };
        match written {
            Ok(()) => Ok(AccountKey::new(signing)),
            // Another node made it first: use that one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let pem = std::fs::read_to_string(path).map_err(|e| local("cannot read", &e))?;
                SigningKey::from_pkcs8_pem(&pem)
                    .map(AccountKey::new)
                    .map_err(|e| local("cannot read", &e))
            }
            Err(e) => Err(local("cannot store", &e)),
        }
    }

    /// A flattened JWS (RFC 7515 §7.2.2) of `payload` (`None`: POST-as-GET)
    /// for `url`, identified by `kid` or, without one, by the key itself.
    fn sign(&self, url: &str, nonce: &str, kid: Option<&str>, payload: Option<&Value>) -> Value {
        let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
        match kid {
            Some(kid) => protected["kid"] = json!(kid),
            None => protected["jwk"] = self.jwk.clone(),
        }
        let protected = B64.encode(protected.to_string());
        let payload = payload
            .map(|p| B64.encode(p.to_string()))
            .unwrap_or_default();
        let signature: Signature = self
            .signing
            .sign(format!("{protected}.{payload}").as_bytes());
        json!({
            "protected": protected,
            "payload": payload,
            "signature": B64.encode(signature.to_bytes()),
        })
    }
}

/// One HTTP answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: impl hyper::header::AsHeaderName) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    fn json<T: serde::de::DeserializeOwned>(&self, step: &'static str) -> Result<T, AcmeError> {
        serde_json::from_slice(&self.body).map_err(|e| AcmeError::Protocol {
            step,
            why: format!("not the expected JSON: {e}"),
        })
    }
}

/// A small HTTPS client: one connection per exchange, each bounded.
struct Http {
    tls: Arc<rustls::ClientConfig>,
}

impl Http {
    fn new(ca_bundle: Option<&Path>) -> Result<Http, AcmeError> {
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

    async fn exchange(
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
                .map_err(|e| unreachable(format!("TLS: {e}")))?;
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Directory {
    new_nonce: String,
    new_account: String,
    new_order: String,
}

#[derive(Debug, Deserialize)]
struct Problem {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    detail: String,
}

#[derive(Debug, Deserialize)]
struct OrderState {
    status: String,
    #[serde(default)]
    authorizations: Vec<String>,
    finalize: String,
    #[serde(default)]
    certificate: Option<String>,
    #[serde(default)]
    error: Option<Problem>,
}

#[derive(Debug, Deserialize)]
struct Authorization {
    status: String,
    #[serde(default)]
    challenges: Vec<Challenge>,
}

#[derive(Debug, Deserialize)]
struct Challenge {
    #[serde(rename = "type")]
    kind: String,
    url: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    error: Option<Problem>,
}

/// The words for a problem type a user is likely to meet.
fn explain(kind: &str, detail: &str) -> String {
    let hint = match kind {
        "rateLimited" => {
            "; the CA limits how many certificates a domain or an account may get: \
             the app keeps its RA-TLS certificate meanwhile"
        }
        "caa" => "; a CAA record of the domain forbids this CA or this account",
        "rejectedIdentifier" | "unsupportedIdentifier" => {
            "; the CA does not issue certificates for this name"
        }
        "accountDoesNotExist" | "unauthorized" => "; the node's ACME account is not allowed",
        _ => "",
    };
    let detail = if detail.is_empty() {
        kind.to_string()
    } else {
        detail.to_string()
    };
    format!("{detail}{hint}")
}

/// An ACME session of one node: the directory, the account and a nonce.
pub struct Client {
    http: Http,
    directory: Directory,
    key: AccountKey,
    kid: String,
    nonce: Option<String>,
    lifetime: Option<Duration>,
}

impl Client {
    /// Reads the directory and registers (or finds) the node's account.
    pub async fn connect(settings: &Settings) -> Result<Client, AcmeError> {
        let http = Http::new(settings.ca_bundle.as_deref())?;
        let key = AccountKey::load_or_create(&settings.account_key)?;
        let answer = http
            .exchange(Method::GET, &settings.directory, None)
            .await?;
        if !answer.status.is_success() {
            return Err(AcmeError::Unreachable {
                url: settings.directory.clone(),
                why: format!("the directory answered {}", answer.status),
            });
        }
        let directory: Directory = answer.json("read the directory")?;
        let mut client = Client {
            http,
            directory,
            key,
            kid: String::new(),
            nonce: None,
            lifetime: settings.lifetime,
        };
        let url = client.directory.new_account.clone();
        let answer = client
            .post(
                "register the node's account",
                &url,
                Some(&json!({"termsOfServiceAgreed": true})),
                false,
            )
            .await?;
        client.kid = answer.header(LOCATION).ok_or(AcmeError::Protocol {
            step: "register the node's account",
            why: "no Location header".into(),
        })?;
        Ok(client)
    }

    /// The account's URL (what a CAA `accounturi` names).
    pub fn account_url(&self) -> &str {
        &self.kid
    }

    async fn fresh_nonce(&mut self) -> Result<String, AcmeError> {
        if let Some(nonce) = self.nonce.take() {
            return Ok(nonce);
        }
        let url = self.directory.new_nonce.clone();
        let answer = self.http.exchange(Method::HEAD, &url, None).await?;
        answer.header("replay-nonce").ok_or(AcmeError::Protocol {
            step: "get a nonce",
            why: "no Replay-Nonce header".into(),
        })
    }

    /// POSTs a JWS of `payload` (`None`: POST-as-GET) to `url`, again with
    /// a fresh nonce after a `badNonce` error; a problem becomes
    /// [`AcmeError::Refused`].
    async fn post(
        &mut self,
        step: &'static str,
        url: &str,
        payload: Option<&Value>,
        with_kid: bool,
    ) -> Result<Answer, AcmeError> {
        let mut attempt = 0;
        loop {
            let nonce = self.fresh_nonce().await?;
            let kid = with_kid.then_some(self.kid.as_str());
            let body = self.key.sign(url, &nonce, kid, payload);
            let answer = self.http.exchange(Method::POST, url, Some(&body)).await?;
            self.nonce = answer.header("replay-nonce");
            if answer.status.is_success() {
                return Ok(answer);
            }
            let problem: Problem = answer.json(step).unwrap_or(Problem {
                kind: String::new(),
                detail: format!("{}", answer.status),
            });
            let kind = problem
                .kind
                .strip_prefix("urn:ietf:params:acme:error:")
                .unwrap_or(&problem.kind)
                .to_string();
            if kind == "badNonce" && attempt < NONCE_RETRIES {
                attempt += 1;
                continue;
            }
            return Err(AcmeError::Refused {
                step,
                detail: explain(&kind, &problem.detail),
                kind,
                retry_after: answer.header(hyper::header::RETRY_AFTER),
            });
        }
    }

    /// Obtains a certificate for `domain` whose key is `key` (the node's),
    /// answering the CA's TLS-ALPN-01 challenge through `challenges`.
    pub async fn obtain(
        &mut self,
        domain: &str,
        key: &rcgen::KeyPair,
        challenges: &Challenges,
        now: DateTime<Utc>,
    ) -> Result<Issued, AcmeError> {
        let mut order = json!({"identifiers": [{"type": "dns", "value": domain}]});
        if let Some(lifetime) = self.lifetime {
            let lifetime =
                chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::days(90));
            order["notAfter"] = json!((now + lifetime).to_rfc3339_opts(SecondsFormat::Secs, true));
        }
        let url = self.directory.new_order.clone();
        let answer = self
            .post("create an order", &url, Some(&order), true)
            .await?;
        let order_url = answer.header(LOCATION).ok_or(AcmeError::Protocol {
            step: "create an order",
            why: "no Location header".into(),
        })?;
        let state: OrderState = answer.json("create an order")?;
        for authz in &state.authorizations {
            self.authorize(domain, authz, challenges).await?;
        }
        let csr = csr_der(domain, key)?;
        let finalize = state.finalize.clone();
        self.post(
            "finalize the order",
            &finalize,
            Some(&json!({"csr": B64.encode(csr)})),
            true,
        )
        .await?;
        let certificate = self.wait_for_certificate(&order_url).await?;
        let answer = self
            .post("download the certificate", &certificate, None, true)
            .await?;
        parse_chain(&answer.body)
    }

    async fn authorize(
        &mut self,
        domain: &str,
        url: &str,
        challenges: &Challenges,
    ) -> Result<(), AcmeError> {
        const STEP: &str = "read an authorization";
        let authz: Authorization = self.post(STEP, url, None, true).await?.json(STEP)?;
        if authz.status == "valid" {
            return Ok(());
        }
        let challenge = authz
            .challenges
            .iter()
            .find(|c| c.kind == "tls-alpn-01")
            .ok_or_else(|| AcmeError::Protocol {
                step: STEP,
                why: "the CA offers no tls-alpn-01 challenge".into(),
            })?;
        let key_authorization = format!("{}.{}", challenge.token, self.key.thumbprint);
        challenges.set(
            domain,
            Arc::new(challenge_certificate(domain, &key_authorization)?),
        );
        let outcome = async {
            let challenge_url = challenge.url.clone();
            self.post(
                "answer the challenge",
                &challenge_url,
                Some(&json!({})),
                true,
            )
            .await?;
            let deadline = tokio::time::Instant::now() + POLL_LIMIT;
            loop {
                tokio::time::sleep(POLL_INTERVAL).await;
                let authz: Authorization = self.post(STEP, url, None, true).await?.json(STEP)?;
                match authz.status.as_str() {
                    "valid" => return Ok(()),
                    "pending" | "processing" if tokio::time::Instant::now() < deadline => {}
                    "pending" | "processing" => {
                        return Err(AcmeError::Validation {
                            domain: domain.to_string(),
                            detail: format!("not validated within {} s", POLL_LIMIT.as_secs()),
                        })
                    }
                    status => {
                        let detail = authz
                            .challenges
                            .iter()
                            .find_map(|c| c.error.as_ref())
                            .map(|p| p.detail.clone())
                            .unwrap_or_else(|| format!("the authorization is {status}"));
                        return Err(AcmeError::Validation {
                            domain: domain.to_string(),
                            detail,
                        });
                    }
                }
            }
        }
        .await;
        challenges.clear(domain);
        outcome
    }

    async fn wait_for_certificate(&mut self, order_url: &str) -> Result<String, AcmeError> {
        const STEP: &str = "read the order";
        let deadline = tokio::time::Instant::now() + POLL_LIMIT;
        loop {
            let state: OrderState = self.post(STEP, order_url, None, true).await?.json(STEP)?;
            match (state.status.as_str(), state.certificate) {
                ("valid", Some(url)) => return Ok(url),
                ("invalid", _) => {
                    let detail = state
                        .error
                        .map(|p| p.detail)
                        .unwrap_or_else(|| "the order is invalid".into());
                    return Err(AcmeError::Protocol {
                        step: STEP,
                        why: detail,
                    });
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(AcmeError::Protocol {
                        step: STEP,
                        why: format!("no certificate within {} s", POLL_LIMIT.as_secs()),
                    })
                }
                _ => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    }
}

/// A certificate signing request for `domain` with `key` (DER).
fn csr_der(domain: &str, key: &rcgen::KeyPair) -> Result<Vec<u8>, AcmeError> {
    let local = |e: rcgen::Error| AcmeError::Local(format!("cannot make the signing request: {e}"));
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(local)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(key).map_err(local)?;
    Ok(csr.der().to_vec())
}

/// Reads a PEM chain as the CA returns it (leaf first).
fn parse_chain(pem: &[u8]) -> Result<Issued, AcmeError> {
    const STEP: &str = "download the certificate";
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AcmeError::Protocol {
            step: STEP,
            why: format!("not a PEM chain: {e}"),
        })?;
    let leaf = chain.first().ok_or(AcmeError::Protocol {
        step: STEP,
        why: "an empty chain".into(),
    })?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| AcmeError::Protocol {
        step: STEP,
        why: format!("the leaf is not X.509: {e}"),
    })?;
    let time = |t: x509_parser::time::ASN1Time| {
        DateTime::from_timestamp(t.timestamp(), 0).ok_or(AcmeError::Protocol {
            step: STEP,
            why: "a validity date out of range".into(),
        })
    };
    Ok(Issued {
        not_before: time(cert.validity().not_before)?,
        not_after: time(cert.validity().not_after)?,
        issuer: cert.issuer().to_string(),
        chain,
    })
}

use rustls::pki_types::pem::PemObject as _;

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;

    fn key() -> AccountKey {
        AccountKey::new(SigningKey::from_slice(&[7u8; 32]).unwrap())
    }

    #[test]
    fn the_jws_is_signed_by_the_account_key_over_protected_and_payload() {
        let key = key();
        let jws = key.sign(
            "https://ca/new-order",
            "n1",
            Some("https://ca/acct/1"),
            Some(&json!({"a": 1})),
        );
        let protected: Value =
            serde_json::from_slice(&B64.decode(jws["protected"].as_str().unwrap()).unwrap())
                .unwrap();
        assert_eq!(protected["alg"], "ES256");
        assert_eq!(protected["nonce"], "n1");
        assert_eq!(protected["url"], "https://ca/new-order");
        assert_eq!(protected["kid"], "https://ca/acct/1");
        assert!(protected.get("jwk").is_none());
        let signed = format!(
            "{}.{}",
            jws["protected"].as_str().unwrap(),
            jws["payload"].as_str().unwrap()
        );
        let signature =
            Signature::from_slice(&B64.decode(jws["signature"].as_str().unwrap()).unwrap())
                .unwrap();
        key.signing
            .verifying_key()
            .verify(signed.as_bytes(), &signature)
            .unwrap();
    }

    #[test]
    fn a_new_account_is_identified_by_its_jwk_and_post_as_get_has_an_empty_payload() {
        let jws = key().sign("https://ca/new-acct", "n", None, None);
        let protected: Value =
            serde_json::from_slice(&B64.decode(jws["protected"].as_str().unwrap()).unwrap())
                .unwrap();
        assert_eq!(protected["jwk"]["kty"], "EC");
        assert!(protected.get("kid").is_none());
        assert_eq!(jws["payload"], "");
    }

    #[test]
    fn the_thumbprint_follows_rfc_7638() {
        let key = key();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            key.jwk["x"].as_str().unwrap(),
            key.jwk["y"].as_str().unwrap()
        );
        assert_eq!(key.thumbprint, B64.encode(Sha256::digest(canonical)));
        assert_eq!(key.thumbprint.len(), 43);
    }

    #[test]
    fn the_challenge_certificate_carries_the_critical_acme_identifier() {
        let certified = challenge_certificate("app.example.test", "tok.thumb").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&certified.cert[0]).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        // An OCTET STRING of the SHA-256 of the key authorization.
        let mut expected = vec![0x04, 0x20];
        expected.extend_from_slice(&Sha256::digest(b"tok.thumb"));
        assert_eq!(ext.value, &expected[..]);
        let names: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["DNSName(app.example.test)"]);
    }

    #[test]
    fn the_account_key_is_made_once_with_mode_0600_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme/account.pem");
        let first = AccountKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = AccountKey::load_or_create(&path).unwrap();
        assert_eq!(first.thumbprint, second.thumbprint);
    }

    #[test]
    fn renewal_is_two_thirds_into_the_validity() {
        let not_before = DateTime::from_timestamp(0, 0).unwrap();
        let issued = Issued {
            chain: Vec::new(),
            not_before,
            not_after: DateTime::from_timestamp(90, 0).unwrap(),
            issuer: String::new(),
        };
        assert_eq!(issued.renew_at(), DateTime::from_timestamp(60, 0).unwrap());
    }

    #[test]
    fn rate_limits_are_explained_and_recognised() {
        let e = AcmeError::Refused {
            step: "create an order",
            kind: "rateLimited".into(),
            detail: explain("rateLimited", "too many certificates for example.test"),
            retry_after: Some("3600".into()),
        };
        assert!(e.is_rate_limit());
        let text = e.to_string();
        assert!(text.contains("too many certificates"), "{text}");
        assert!(text.contains("RA-TLS certificate meanwhile"), "{text}");
        assert!(text.contains("retry after 3600"), "{text}");
    }

    #[test]
    fn a_chain_that_is_not_pem_is_refused() {
        assert!(matches!(
            parse_chain(b"garbage"),
            Err(AcmeError::Protocol { .. })
        ));
    }
}
