//! Deploy's exchanges with the platform and the node: waiting on the app's
//! status, stopping it, verifying the certificates it serves, and sending
//! the node its configuration.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use chrono::Utc;
use mse_api::apps::{App, AppStatus};
use mse_api::text::{one_line, strip_controls};
use mse_attest::verify::Policy;
use mse_package::context::CertificateOrigin;

use super::LeftBehind;
use crate::api::Client;
use crate::commands::verify;
use crate::exit::{CmdResult, Failure};
use crate::fetch;
use crate::poll::{wait_for_status, Pace, WaitError};
use crate::profile::Profile;
use crate::progress::Steps;

/// What deploy expects of its node: the platform's MRSIGNER, the
/// fingerprint it computed, simulation as the profile or flag allows.
pub fn policy(
    profile: &Profile,
    expected: [u8; 32],
    allow_simulation: bool,
    hardware: &crate::commands::verify::HardwarePolicy,
) -> Result<Policy, Failure> {
    Ok(Policy {
        mr_signer: Some(profile.mr_signer()?),
        mr_enclave: Some(expected),
        accepted_tcb: Vec::new(),
        allow_simulation,
        simulation_ca: Some(profile.simulation_ca_der()?),
        simulation_revoked: if allow_simulation {
            Some(profile.simulation_revoked()?)
        } else {
            None
        },
        trust: hardware.trust.clone(),
        references: hardware.references.clone(),
        references_refused: hardware.references_refused.clone(),
        snp_min_tcb: hardware.snp_min_tcb,
        sgx_enclaves: hardware.sgx_enclaves_for(Some(expected)),
    })
}

/// Verifies `cert_der`, a node's or the key service's RA-TLS certificate,
/// against `expected` (its fingerprint or measurement), as deploy verifies
/// a node.
pub fn verify_ratls(
    ctx: &super::steps::Deployment<'_>,
    cert_der: &[u8],
    expected: [u8; 32],
) -> Result<mse_attest::verify::Verification, Failure> {
    let policy = policy(
        ctx.profile,
        expected,
        ctx.plan.flags.allow_simulation,
        &ctx.hardware,
    )?;
    let now = Utc::now();
    let endorsements = verify::endorsements_for(cert_der, ctx.pccs_url.as_deref(), None, now)?;
    Ok(mse_attest::verify::verify_certificate_with(
        cert_der,
        &policy,
        endorsements.as_ref().map_err(String::as_str),
        now,
    ))
}

/// What deploy checked of the certificate a browser sees: where the
/// evidence that verified it was read, or `None` when the node still
/// serves its RA-TLS certificate (the CA issued none).
pub struct Browser {
    /// Where the evidence that verified it was read.
    pub evidence_url: Option<String>,
}

impl Browser {
    /// The certificate is one the CA issued, verified against the evidence.
    pub fn issued(&self) -> bool {
        self.evidence_url.is_some()
    }
}

/// Checks the certificate `app`'s domain serves against its node's
/// evidence, as `mse verify DOMAIN` would.
pub fn verify_served(
    ctx: &super::steps::Deployment<'_>,
    app: &App,
    origin: CertificateOrigin,
    expected: [u8; 32],
    steps: &mut Steps,
) -> Result<Browser, Failure> {
    steps.start("browser", "Verifying the certificate a browser sees");
    let port = ctx.profile.platform.proxy_port;
    let served = fetch::server_certificate(&app.domain_name, port, &[])?;
    let policy = policy(
        ctx.profile,
        expected,
        ctx.plan.flags.allow_simulation,
        &ctx.hardware,
    )?;
    let now = Utc::now();
    if origin == CertificateOrigin::Acme && mse_attest::ratls::inspect(&served).is_ok() {
        // The ACME CA failed: the node still serves its RA-TLS certificate,
        // verified before the configuration was sent.
        let why = app
            .certificate
            .as_ref()
            .and_then(|c| c.error.clone())
            .unwrap_or_else(|| "no certificate yet".into());
        steps.warn(&format!(
            "the node serves its RA-TLS certificate: the ACME CA gave none ({why})"
        ));
        return Ok(Browser { evidence_url: None });
    }
    let (verification, evidence_url) = verify::verify_with_evidence(
        &app.domain_name,
        port,
        &[],
        &served,
        &policy,
        verify::Collateral {
            pccs_url: ctx.pccs_url.as_deref(),
            file: None,
        },
        now,
    )?;
    if !verification.verified {
        let failed = verification.failures();
        return Err(Failure::Other(anyhow!(
            "the certificate {} serves is not the attested node's:\n  {}",
            app.domain_name,
            failed.join("\n  ")
        )));
    }
    let issuer = mse_attest::ratls::issuer(&served).unwrap_or_default();
    steps.done(&format!(
        "issued by {issuer}, its key bound by the node's quote"
    ));
    Ok(Browser {
        evidence_url: Some(evidence_url),
    })
}

/// The first 16 characters of a hex digest.
pub fn short(hex: &str) -> &str {
    &hex[..hex.len().min(16)]
}

/// Asks the platform to stop app `id` and waits (at most a minute) until
/// it has.
pub fn stop_and_wait(client: &Client, id: &str, steps: &mut Steps) -> Result<App, Failure> {
    client.stop(id)?;
    wait_for(
        client,
        id,
        &[AppStatus::Stopped, AppStatus::OnError],
        Duration::from_secs(60),
        steps,
        None,
        None,
    )
}

/// How deploy waits: fast at first (a warm start takes well under a
/// second), then gentler.
const DEPLOY_PACE: Pace = Pace::FastThenSlow {
    fast: Duration::from_millis(25),
    window: Duration::from_secs(5),
    slow: Duration::from_millis(250),
};

/// Polls the app until its status is one of `wanted`; fails at once (with
/// its last logs) when it ends up `on_error` or `stopped` instead, which
/// `left`, if given, then records. `spawning` is what to say while the node
/// starts, when there is more to say than that.
pub fn wait_for(
    client: &Client,
    id: &str,
    wanted: &[AppStatus],
    timeout: Duration,
    steps: &mut Steps,
    spawning: Option<&str>,
    left: Option<&LeftBehind>,
) -> Result<App, Failure> {
    let waited = wait_for_status(
        || client.app(id),
        |app| wanted.contains(&app.status),
        timeout,
        DEPLOY_PACE,
        |app| {
            steps.update(&match app.status {
                AppStatus::Spawning => spawning.unwrap_or("the node is starting").to_string(),
                status => format!("the app is {status}"),
            });
        },
    );
    let app = match waited {
        Ok(app) => app,
        Err(WaitError::Api(e)) => return Err(e.into()),
        Err(WaitError::TimedOut(app)) => {
            return Err(Failure::Other(anyhow!(
                "the app is still {} after {} s (raise --timeout)",
                app.status,
                timeout.as_secs()
            )))
        }
    };
    if wanted.contains(&app.status) {
        return Ok(app);
    }
    if let Some(left) = left {
        left.ended();
    }
    let logs = strip_controls(&client.logs(id).unwrap_or_default());
    let tail: Vec<&str> = logs.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(Failure::Other(anyhow!(
        "the app is {}{}\nits last log lines:\n  {}",
        app.status,
        app.reason
            .as_deref()
            .map(|r| format!(": {}", one_line(r)))
            .unwrap_or_default(),
        if tail.is_empty() {
            "(none)".to_string()
        } else {
            tail.join("\n  ")
        }
    )))
}

/// `POST /` of `request` to the node's configuration server over TLS
/// pinned to the verified certificate.
pub fn send_configuration(
    host: &str,
    port: u16,
    cert_der: &[u8],
    request: &mse_api::config::ConfigRequest,
) -> CmdResult {
    let http = pinned_client(host, port, cert_der)?;
    let url = format!("https://{host}:{port}/");
    let response = http
        .post(&url)
        .json(&request)
        .send()
        .map_err(|e| anyhow!("cannot reach the node's configuration server at {url}: {e}"))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let answer: Option<mse_api::config::ConfigAnswer> = response.json().ok();
    let why = answer
        .and_then(|a| a.error)
        .unwrap_or_else(|| format!("HTTP {status}"));
    Err(Failure::Other(anyhow!(
        "the node refused its configuration ({status}): {why}"
    )))
}

/// `POST /provision` to the key service over TLS pinned to its verified
/// certificate: the app's keys and the owner's signed policy.
pub fn send_provisioning(
    host: &str,
    port: u16,
    cert_der: &[u8],
    request: &mse_api::keys::ProvisionRequest,
) -> Result<mse_api::keys::ProvisionAnswer, Failure> {
    post_to_key_service(host, port, cert_der, "/provision", request, "the keys")
}

/// `POST path` of `body` to the key service at `host:port`, over TLS pinned
/// to `cert_der`, its verified certificate: its JSON answer, or why it
/// refused `what`.
pub(crate) fn post_to_key_service<T: serde::de::DeserializeOwned>(
    host: &str,
    port: u16,
    cert_der: &[u8],
    path: &str,
    body: &impl serde::Serialize,
    what: &str,
) -> Result<T, Failure> {
    let http = pinned_client(host, port, cert_der)?;
    let url = format!("https://{host}:{port}{path}");
    let response = http
        .post(&url)
        .json(body)
        .send()
        .map_err(|e| anyhow!("cannot reach the key service at {url}: {e}"))?;
    let status = response.status();
    if status.is_success() {
        return response
            .json()
            .map_err(|e| Failure::Other(anyhow!("the key service's answer: {e}")));
    }
    let why = response
        .json::<mse_api::error::ErrorBody>()
        .map(|b| b.error)
        .unwrap_or_else(|_| format!("HTTP {status}"));
    Err(Failure::Other(anyhow!(
        "the key service refused {what} ({status}): {}",
        one_line(&why)
    )))
}

/// An HTTPS client of `host:port` that trusts exactly `cert_der`, the
/// certificate verified before anything is sent.
pub(crate) fn pinned_client(
    host: &str,
    port: u16,
    cert_der: &[u8],
) -> Result<reqwest::blocking::Client, Failure> {
    let tls = mse_attest::pin::client_config(cert_der, mse_attest::tls::HTTP1);
    let addrs: Vec<SocketAddr> = fetch::resolve(host, port)?;
    Ok(reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve_to_addrs(host, &addrs)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot set up the TLS client")?)
}
