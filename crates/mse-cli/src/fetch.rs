//! Fetching a server's certificate over TLS without trusting it yet: the
//! certificate is checked afterwards by attestation, but the server must still
//! prove it holds the certificate's private key during the handshake.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
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

/// Connects to `host:port` with SNI `host` and returns the server's leaf
/// certificate (DER), once the server proved it holds the matching key.
pub fn server_certificate(host: &str, port: u16) -> anyhow::Result<Vec<u8>> {
    let (config, capture) = mse_attest::pin::capture_config(&[]);
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| anyhow!("`{host}` is not a valid server name"))?;
    let mut connection =
        rustls::ClientConnection::new(Arc::new(config), name).context("TLS client")?;
    let addrs = resolve(host, port)?;
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
    let mut stream = match stream {
        Some(s) => s,
        None => {
            return Err(anyhow!(
                "cannot connect to {host}:{port}: {}",
                last_error.map_or("no address".to_string(), |e| e.to_string())
            ))
        }
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
    fn localhost_names_resolve_to_loopback_without_dns() {
        let addrs = resolve("0f4e8a52.localhost", 9).unwrap();
        assert_eq!(addrs, [SocketAddr::from(([127, 0, 0, 1], 9))]);
    }
}
