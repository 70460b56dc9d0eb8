//! The configuration hand-over: the node proves what it runs with its
//! RA-TLS certificate and waits for the owner's configuration, then starts
//! the app with it.

use std::sync::Arc;

use anyhow::{bail, Context as _};
use chrono::Utc;
use mse_api::apps::AppStatus;
use mse_api::launch::Launch;
use mse_run::sandbox;
use mse_run::status::{emit, Event};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use super::shutdown::stop_signals;
use super::start::start_app;
use super::{Prepared, Signals, TlsSetup};
use crate::config_server::{self, Outcome, Waiting};

pub(crate) fn server_config(
    cert_der: &[u8],
    key_pem: &str,
) -> anyhow::Result<rustls::ServerConfig> {
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("the RA-TLS key")?;
    mse_attest::tls::server_config(
        vec![CertificateDer::from(cert_der.to_vec())],
        key,
        mse_attest::tls::HTTP1,
    )
    .context("the RA-TLS certificate")
}

/// Waits for the configuration, runs the app until told to stop. Returns why
/// it stopped, or the error.
pub(super) async fn life(
    launch: &Launch,
    prepared: &Prepared,
    signals: Signals,
) -> anyhow::Result<String> {
    let log = &prepared.log;
    let mut stop = stop_signals(signals, prepared.expires_at);
    let listen = launch.node.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    // The address it got (`node.listen` may name port 0): the app is served
    // there too, and the event tells it.
    let listen = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let tls = Arc::new(server_config(
        &prepared.ratls.cert_der,
        &prepared.ratls.key_pem,
    )?);
    let owner = match &prepared.tls {
        TlsSetup::Owner { leaf, .. } => Some(leaf.as_ref().clone()),
        _ => None,
    };
    let waiting = Arc::new(
        Waiting::new(
            launch.app.uuid.clone(),
            launch.app.code.clone(),
            prepared.dirs.app.clone(),
            owner,
            log.clone(),
        )
        .keeping_storage(launch.storage.is_some()),
    );
    let mut event = Event::new(AppStatus::Initializing, Utc::now());
    event.fingerprint = Some(hex::encode(prepared.fingerprint));
    event.certificate_sha256 = Some(hex::encode(Sha256::digest(&prepared.ratls.cert_der)));
    event.sandbox = Some(sandbox::describe(&prepared.sandbox));
    event.limits = Some(prepared.limits.describe());
    event.listen = Some(listen.to_string());
    log.note(&format!(
        "waiting for the configuration on {} (fingerprint {})",
        listen,
        hex::encode(prepared.fingerprint)
    ));
    emit(&event);

    let timeout = launch.timeouts.config;
    let accepted = match config_server::serve(&listener, tls, waiting, &mut stop, timeout).await {
        Outcome::Accepted(accepted) => accepted,
        Outcome::Stopped(reason) => return Ok(reason),
        Outcome::TimedOut => bail!(
            "no valid configuration arrived within {} s",
            timeout.unwrap_or_default().as_secs()
        ),
    };
    start_app(launch, prepared, accepted, listener, &mut stop).await
}
