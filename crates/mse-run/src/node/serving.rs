//! How a fronted app is served: the node's front, the certificate it
//! presents (the owner's, or the RA-TLS one and then one from an ACME CA)
//! and, in ACME mode, the task that obtains and renews it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use chrono::{DateTime, Utc};
use mse_api::event::ServedCertificate;
use mse_api::launch::Launch;
use mse_run::acme::{self, Challenges};
use mse_run::front::{self, Backend, Front, Presented};
use mse_run::logs::LogSink;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use super::{Prepared, TlsSetup};

/// The owner's chain with the key that came with the configuration.
pub(super) fn owner_key(
    chain_pem: &str,
    key_pem: &str,
) -> anyhow::Result<rustls::sign::CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the owner's certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("the owner's key")?;
    acme::certified_key(chain, key)
        .context("the owner's private key does not match the owner's certificate")
}

/// The RA-TLS certificate and key, as the front presents them.
pub(super) fn ratls_key(
    ratls: &mse_attest::ratls::RaTls,
) -> anyhow::Result<rustls::sign::CertifiedKey> {
    let key = PrivateKeyDer::from_pem_slice(ratls.key_pem.as_bytes()).context("the RA-TLS key")?;
    acme::certified_key(vec![CertificateDer::from(ratls.cert_der.clone())], key)
        .context("the RA-TLS certificate")
}

/// What `mse status` shows of a certificate (DER).
fn served(cert_der: &[u8], error: Option<String>) -> ServedCertificate {
    let (issuer, not_after) = match x509_parser::parse_x509_certificate(cert_der) {
        Ok((_, cert)) => (
            cert.issuer().to_string(),
            DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
        ),
        Err(_) => (String::new(), String::new()),
    };
    ServedCertificate {
        issuer,
        not_after,
        error,
    }
}

type Tasks = Vec<tokio::task::JoinHandle<()>>;

/// Starts the node's front on `listener` and, in ACME mode, the task that
/// obtains and renews its certificate. Returns what the front serves, as it
/// changes.
pub(super) fn start_front(
    launch: &Launch,
    prepared: &Prepared,
    listener: tokio::net::TcpListener,
    first: rustls::sign::CertifiedKey,
    socket: SocketAddr,
    pinned: Option<Vec<u8>>,
    stop: &watch::Receiver<Option<String>>,
) -> anyhow::Result<(watch::Receiver<Option<ServedCertificate>>, Tasks)> {
    let pinned = pinned.ok_or_else(|| anyhow!("the app server has no certificate to pin"))?;
    let initial = match &prepared.tls {
        TlsSetup::Owner { leaf_der, .. } => Some(served(leaf_der, None)),
        _ => None,
    };
    let (sender, receiver) = watch::channel(initial);
    let challenges = Arc::new(Challenges::default());
    let presented = Arc::new(Presented::new(first, challenges.clone()));
    let front = Arc::new(Front {
        tls: Arc::new(front::server_config(presented.clone())),
        backend: Backend {
            addr: socket,
            tls: Arc::new(mse_attest::pin::client_config(
                &pinned,
                mse_attest::tls::HTTP1,
            )),
            domain: launch.app.domain.clone(),
        },
        evidence: prepared.evidence.clone().unwrap_or_default(),
    });
    let mut front_stop = stop.clone();
    let mut tasks = vec![tokio::spawn(async move {
        front::serve(&listener, front, &mut front_stop).await;
    })];
    if let TlsSetup::Acme(settings) = &prepared.tls {
        let key = rcgen::KeyPair::from_pem(&prepared.ratls.key_pem)
            .map_err(|e| anyhow!("the RA-TLS key: {e}"))?;
        let renewal = Renewal {
            settings: settings.clone(),
            domain: launch.app.domain.clone(),
            key,
            key_pem: zeroize::Zeroizing::new(prepared.ratls.key_pem.clone()),
            ratls_der: prepared.ratls.cert_der.clone(),
            expires_at: prepared.expires_at,
            challenges,
            presented,
            log: prepared.log.clone(),
            sender,
        };
        tasks.push(tokio::spawn(renewal.run()));
    } else {
        // The owner's certificate never changes: keep the channel open.
        tasks.push(tokio::spawn(async move {
            sender.closed().await;
        }));
    }
    Ok((receiver, tasks))
}

/// The first wait after a failed attempt; each next one is twice as long.
const RETRY_FIRST: Duration = Duration::from_secs(30);
/// The longest wait between two attempts.
const RETRY_MAX: Duration = Duration::from_secs(3600);

/// Obtains the app's certificate over ACME and renews it until the app
/// expires.
struct Renewal {
    settings: acme::Settings,
    domain: String,
    key: rcgen::KeyPair,
    key_pem: zeroize::Zeroizing<String>,
    ratls_der: Vec<u8>,
    expires_at: DateTime<Utc>,
    challenges: Arc<Challenges>,
    presented: Arc<Presented>,
    log: Arc<LogSink>,
    sender: watch::Sender<Option<ServedCertificate>>,
}

impl Renewal {
    async fn run(self) {
        let mut retry = RETRY_FIRST;
        // What is served now: the RA-TLS certificate until one is issued.
        let mut current = self.ratls_der.clone();
        loop {
            let started = Instant::now();
            match self.attempt().await {
                Ok(issued) => {
                    let leaf = issued.chain[0].to_vec();
                    let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes());
                    match key.map_err(|e| e.to_string()).and_then(|key| {
                        acme::certified_key(issued.chain.clone(), key).map_err(|e| e.to_string())
                    }) {
                        Ok(certified) => self.presented.replace(certified),
                        Err(why) => {
                            self.log
                                .note(&format!("ACME: the issued certificate is unusable: {why}"));
                            let _ = self.sender.send(Some(served(&current, Some(why))));
                            tokio::time::sleep(retry).await;
                            retry = (retry * 2).min(RETRY_MAX);
                            continue;
                        }
                    }
                    current = leaf;
                    retry = RETRY_FIRST;
                    let renew_at = issued.renew_at();
                    self.log.note(&format!(
                        "ACME: certificate for {} issued by {} in {} ms, valid until {}; renewal at {}",
                        self.domain,
                        issued.issuer,
                        started.elapsed().as_millis(),
                        issued.not_after,
                        renew_at
                    ));
                    let _ = self.sender.send(Some(ServedCertificate {
                        issuer: issued.issuer.clone(),
                        not_after: issued
                            .not_after
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        error: None,
                    }));
                    if renew_at >= self.expires_at {
                        // The app ends before the certificate needs renewing.
                        return self.sender.closed().await;
                    }
                    tokio::time::sleep((renew_at - Utc::now()).to_std().unwrap_or_default()).await;
                }
                Err(e) => {
                    let wait = if e.is_rate_limit() { RETRY_MAX } else { retry };
                    let why = format!("{e}; next attempt in {} s", wait.as_secs());
                    self.log.note(&format!("ACME: {why}"));
                    let _ = self.sender.send(Some(served(&current, Some(why))));
                    tokio::time::sleep(wait).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    async fn attempt(&self) -> Result<acme::Issued, acme::AcmeError> {
        let mut client = acme::Client::connect(&self.settings).await?;
        self.log.note(&format!(
            "ACME: account {} at {}",
            client.account_url(),
            self.settings.directory
        ));
        client
            .obtain(&self.domain, &self.key, &self.challenges, Utc::now())
            .await
    }
}
