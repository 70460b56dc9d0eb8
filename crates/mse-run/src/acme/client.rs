//! The protocol (RFC 8555): the directory, the account, a nonce per
//! request, and an order from creation to the downloaded chain.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use hyper::header::LOCATION;
use hyper::Method;
use rustls::pki_types::pem::PemObject as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::account::AccountKey;
use super::challenge::{challenge_certificate, Challenges};
use super::http::{Answer, Http};
use super::{explain, AcmeError, Issued, Settings};

/// How long the node waits for the CA to validate, and to issue.
const POLL_LIMIT: Duration = Duration::from_secs(90);
/// How often it asks meanwhile (or as `Retry-After` says, up to 10 s).
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Times a request is sent again after a `badNonce` error.
const NONCE_RETRIES: usize = 3;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_that_is_not_pem_is_refused() {
        assert!(matches!(
            parse_chain(b"garbage"),
            Err(AcmeError::Protocol { .. })
        ));
    }
}
