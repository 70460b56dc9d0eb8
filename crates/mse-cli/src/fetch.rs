//! Fetching a server's certificate over TLS without trusting it yet: the
//! certificate is checked afterwards by attestation, but the server must still
//! prove it holds the certificate's private key during the handshake.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use rustls::pki_types::ServerName;

/// How long connecting and the handshake may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Splits `host[:port]`, port 443 by default.
pub fn split_target(target: &str) -> anyhow::Result<(String, u16)> {
    match target.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = port
                .parse()
                .map_err(|_| anyhow!("`{port}` is not a port number"))?;
            Ok((host.to_string(), port))
        }
        _ => Ok((target.to_string(), 443)),
    }
}

/// A `--resolve HOST:PORT:ADDR[,ADDR…]` entry, in curl's syntax: `HOST:PORT`
/// is reached at these addresses instead of what the resolver says (`*` as
/// HOST stands for any host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    host: String,
    port: u16,
    addrs: Vec<IpAddr>,
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage =
            || format!("`{text}` is not HOST:PORT:ADDR (e.g. app.example.com:443:127.0.0.1)");
        let mut parts = text.splitn(3, ':');
        let (Some(host), Some(port), Some(addrs)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(usage());
        };
        if host.is_empty() {
            return Err(usage());
        }
        let port = port
            .parse()
            .map_err(|_| format!("`{port}` in `{text}` is not a port number"))?;
        let addrs = addrs
            .split(',')
            .map(|addr| {
                addr.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .map_err(|_| format!("`{addr}` in `{text}` is not an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Override {
            host: host.to_ascii_lowercase(),
            port,
            addrs,
        })
    }
}

impl std::fmt::Display for Override {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<String> = self
            .addrs
            .iter()
            .map(|ip| match ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            })
            .collect();
        write!(f, "{}:{}:{}", self.host, self.port, addrs.join(","))
    }
}

/// The addresses of `host:port`: from the first matching override, else
/// from [`resolve`].
pub fn resolve_with(
    host: &str,
    port: u16,
    overrides: &[Override],
) -> anyhow::Result<Vec<SocketAddr>> {
    let lower = host.to_ascii_lowercase();
    match overrides
        .iter()
        .find(|o| o.port == port && (o.host == lower || o.host == "*"))
    {
        Some(o) => Ok(o
            .addrs
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect()),
        None => resolve(host, port),
    }
}

/// Resolves a host; any `*.localhost` name is the loopback address (RFC 6761).
pub fn resolve(host: &str, port: u16) -> anyhow::Result<Vec<SocketAddr>> {
    let lower = host.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]);
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .collect();
    if addrs.is_empty() {
        return Err(anyhow!("{host} resolves to no address"));
    }
    Ok(addrs)
}

/// Connects to `host:port` (at the address an override gives, if any) with
/// SNI `host` and returns the server's leaf certificate (DER), once the
/// server proved it holds the matching key.
pub fn server_certificate(
    host: &str,
    port: u16,
    overrides: &[Override],
) -> anyhow::Result<Vec<u8>> {
    let (config, capture) = mse_attest::pin::capture_config(&[]);
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| anyhow!("`{host}` is not a valid server name"))?;
    let mut connection =
        rustls::ClientConnection::new(Arc::new(config), name).context("TLS client")?;
    let addrs = resolve_with(host, port, overrides)?;
    let mut last_error = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let Some(mut stream) = stream else {
        return Err(anyhow!(
            "cannot connect to {host}:{port}: {}",
            last_error.map_or("no address".to_string(), |e| e.to_string())
        ));
    };
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    while connection.is_handshaking() {
        connection
            .complete_io(&mut stream)
            .with_context(|| format!("TLS handshake with {host}:{port} failed"))?;
    }
    connection.send_close_notify();
    let _ = connection.complete_io(&mut stream);
    let _ = stream.flush();
    let cert = capture
        .seen()
        .ok_or_else(|| anyhow!("{host}:{port} sent no certificate"))?;
    Ok(cert)
}

/// What `host:port` publishes at [`mse_attest::evidence::EVIDENCE_PATH`],
/// over TLS pinned to `cert_der` (the certificate it just served): the
/// evidence of the node holding that certificate's key. `Ok(None)` when it
/// publishes none (404).
pub fn evidence(
    host: &str,
    port: u16,
    overrides: &[Override],
    cert_der: &[u8],
) -> anyhow::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let tls = mse_attest::pin::client_config(cert_der, mse_attest::tls::HTTP1);
    let addrs = resolve_with(host, port, overrides)?;
    let http = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve_to_addrs(host, &addrs)
        .connect_timeout(TIMEOUT)
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot set up the TLS client")?;
    let url = format!(
        "https://{host}:{port}{}",
        mse_attest::evidence::EVIDENCE_PATH
    );
    let response = http
        .get(&url)
        .send()
        .with_context(|| format!("cannot fetch {url}"))?;
    match response.status() {
        reqwest::StatusCode::OK => {}
        reqwest::StatusCode::NOT_FOUND => return Ok(None),
        status => return Err(anyhow!("{url} answered {status}")),
    }
    let mut body = Vec::new();
    response
        // One byte more than an evidence may have, so that a larger one
        // is refused as such.
        .take(mse_attest::evidence::MAX_LEN as u64 + 1)
        .read_to_end(&mut body)
        .with_context(|| format!("cannot read {url}"))?;
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_default_to_port_443() {
        assert_eq!(
            split_target("app.example.com").unwrap(),
            ("app.example.com".into(), 443)
        );
        assert_eq!(
            split_target("a.localhost:8443").unwrap(),
            ("a.localhost".into(), 8443)
        );
        assert!(split_target("a.localhost:http").is_err());
    }

    #[test]
    fn overrides_take_curls_resolve_syntax_and_win_over_the_resolver() {
        let overrides: Vec<Override> =
            ["Shop.Example.Test:8443:127.0.0.2", "*:443:[::1],127.0.0.3"]
                .iter()
                .map(|o| o.parse().unwrap())
                .collect();
        assert_eq!(
            resolve_with("shop.example.test", 8443, &overrides).unwrap(),
            [SocketAddr::from(([127, 0, 0, 2], 8443))]
        );
        assert_eq!(
            resolve_with("other.example.test", 443, &overrides).unwrap(),
            [
                "[::1]:443".parse::<SocketAddr>().unwrap(),
                SocketAddr::from(([127, 0, 0, 3], 443))
            ]
        );
        assert_eq!(
            resolve_with("x.localhost", 8443, &overrides[1..]).unwrap(),
            [SocketAddr::from(([127, 0, 0, 1], 8443))],
            "no override for that port: the usual resolution"
        );
        assert_eq!(overrides[1].to_string(), "*:443:[::1],127.0.0.3");
        for bad in [
            "shop.example.test",
            "shop:443",
            ":443:127.0.0.1",
            "shop:x:127.0.0.1",
            "shop:443:nowhere",
        ] {
            assert!(bad.parse::<Override>().is_err(), "{bad}");
        }
    }

    #[test]
    fn localhost_names_resolve_to_loopback_without_dns() {
        let addrs = resolve("0f4e8a52.localhost", 9).unwrap();
        assert_eq!(addrs, [SocketAddr::from(([127, 0, 0, 1], 9))]);
    }
}
