//! The app's health: checks until it answers, then the watch over it until
//! it stops by itself or is told to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use chrono::Utc;
use mse_api::apps::AppStatus;
use mse_api::event::ServedCertificate;
use mse_api::launch::Launch;
use mse_run::logs::LogSink;
use mse_run::status::{emit, Event};
use tokio::sync::watch;

use super::shutdown::terminate;

/// The pause between two health checks while the app server does not
/// answer yet. Each answer that is not 2xx (a line in the app's access log)
/// makes the next pause half again as long, up to [`HEALTH_MAX_INTERVAL`]:
/// a quick app is seen healthy the moment it is, and a slow one's access log
/// gets about one line a second.
const HEALTH_FIRST_INTERVAL: Duration = Duration::from_millis(50);
/// The longest pause between two health checks.
const HEALTH_MAX_INTERVAL: Duration = Duration::from_secs(1);
/// The `User-Agent` of the health checks, as the access log shows it.
const HEALTH_USER_AGENT: &str = "mse-run health check";

/// Waits until the app is healthy, reports it running, and watches it until
/// it stops by itself (an error) or is told to stop (the reason).
#[allow(clippy::too_many_arguments)]
pub(super) async fn supervise(
    launch: &Launch,
    log: &LogSink,
    pid: u32,
    child: &mut tokio::process::Child,
    pinned: Option<Vec<u8>>,
    probe_at: SocketAddr,
    mut certificate: watch::Receiver<Option<ServedCertificate>>,
    stop: &mut watch::Receiver<Option<String>>,
) -> anyhow::Result<String> {
    let client =
        pinned.map(|der| Arc::new(mse_attest::pin::client_config(&der, mse_attest::tls::HTTP1)));
    let deadline = Instant::now() + launch.timeouts.health;
    let mut pause = HEALTH_FIRST_INTERVAL;
    loop {
        if let Some(status) = child.try_wait()? {
            terminate(pid, child).await;
            bail!("the app exited ({status}) before it became healthy; see its log");
        }
        let answered = match probe(
            &probe_at,
            &launch.app.domain,
            &launch.app.healthcheck,
            client.clone(),
        )
        .await
        {
            Some(status) if status.is_success() => break,
            // The app runs, and has no such route: waiting cannot help.
            Some(status)
                if matches!(
                    status,
                    hyper::StatusCode::NOT_FOUND | hyper::StatusCode::METHOD_NOT_ALLOWED
                ) =>
            {
                terminate(pid, child).await;
                bail!(
                    "health check GET {} answered {status}: `healthcheck_endpoint` in mse.toml \
                     must name a GET route of the app that answers 2xx",
                    launch.app.healthcheck
                );
            }
            Some(_) => true,
            None => false,
        };
        if answered {
            pause = (pause * 3 / 2).min(HEALTH_MAX_INTERVAL);
        }
        if Instant::now() >= deadline {
            terminate(pid, child).await;
            bail!(
                "the app did not answer {} within {} s",
                launch.app.healthcheck,
                launch.timeouts.health.as_secs()
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            changed = stop.changed() => {
                if let (Ok(()), Some(reason)) = (changed, stop.borrow().clone()) {
                    terminate(pid, child).await;
                    return Ok(reason);
                }
            }
        }
    }
    log.note("app healthy");
    // A node that obtains its certificate says `running` once it has one,
    // or once it failed to (it then serves its RA-TLS certificate).
    let obtained = certificate.wait_for(|c| c.is_some());
    let first = tokio::select! {
        first = obtained => first.ok().and_then(|c| c.clone()),
        changed = stop.changed() => {
            if let (Ok(()), Some(reason)) = (changed, stop.borrow().clone()) {
                terminate(pid, child).await;
                return Ok(reason);
            }
            None
        }
    };
    let mut running = Event::new(AppStatus::Running, Utc::now());
    running.pid = Some(pid);
    running.certificate = first;
    emit(&running);

    // Until no certificate can come any more (its sender is gone).
    let mut watching = true;
    loop {
        tokio::select! {
            changed = certificate.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                    continue;
                }
                let mut update = Event::new(AppStatus::Running, Utc::now());
                update.pid = Some(pid);
                update.certificate = certificate.borrow_and_update().clone();
                emit(&update);
            }
            status = child.wait() => {
                terminate(pid, child).await;
                let status = status.context("cannot watch the app")?;
                bail!("the app stopped by itself ({status}); see its log");
            }
            changed = stop.changed() => {
                if let (Ok(()), Some(reason)) = (changed, stop.borrow().clone()) {
                    terminate(pid, child).await;
                    return Ok(reason);
                }
            }
        }
    }
}

/// Where to reach a server listening on `addr` from this machine.
pub(super) fn loopback(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// What `GET path` answers; `None` when nothing answers (yet).
async fn probe(
    addr: &SocketAddr,
    domain: &str,
    path: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Option<hyper::StatusCode> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        probe_over(stream, domain, path, tls).await
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}

async fn probe_over<S>(
    stream: S,
    domain: &str,
    path: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Option<hyper::StatusCode>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    {
        let status = match tls {
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(domain.to_string()).ok()?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, stream)
                    .await
                    .ok()?;
                get_status(stream, domain, path).await?
            }
            None => get_status(stream, domain, path).await?,
        };
        Some(status)
    }
}

async fn get_status<S>(stream: S, domain: &str, path: &str) -> Option<hyper::StatusCode>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, domain)
        .header(hyper::header::USER_AGENT, HEALTH_USER_AGENT)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .ok()?;
    let response = sender.send_request(request).await.ok()?;
    Some(response.status())
}
