//! A real ACME certificate authority for tests: Let's Encrypt's Pebble
//! (Debian's `pebble` package, 2.4), with `pebble-challtestsrv` as its DNS
//! server so every name resolves to one address (127.0.0.1 by default).
//!
//! Both processes listen on free loopback ports and are killed when the
//! [`Pebble`] is dropped. Pebble's own HTTPS (directory and management
//! interface) uses a certificate from a [`TestCa`] made at start;
//! [`Pebble::ca_bundle`] is that CA, for an ACME client's trust store.
//! Certificates Pebble issues chain to [`Pebble::root_pem`], a root Pebble
//! makes anew at every start.
//!
//! What Pebble 2.4 does, as checked against this build:
//! - It issues certificates for `*.localhost` names: its only name policy
//!   is an optional block list. Validation looks the name up in its DNS
//!   server (here `pebble-challtestsrv`), not in `/etc/hosts` or by the
//!   `.localhost` rule, so [`PebbleOptions::dns_ipv4`] is where it dials.
//! - It honours an order's `notAfter`: the certificate ends exactly then.
//!   Without one, a certificate lasts the configured validity period
//!   ([`PebbleOptions::certificate_validity`], five years by default).
//! - The DNS server must give no AAAA answer: when it answers `::1`,
//!   validation dials `::1` only and fails against a server on 127.0.0.1.
//! - By default Pebble rejects 5 % of valid nonces (`badNonce`), to test
//!   client retries; here that is [`PebbleOptions::nonce_reject_percent`],
//!   0 unless set, so tests are deterministic.
//! - Each challenge is validated from three "perspectives", that is three
//!   connections to the challenge port.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::tls::{https_get, TestCa};
use crate::wait;

/// How Pebble is started.
#[derive(Debug, Clone)]
pub struct PebbleOptions {
    /// Pebble's `tlsPort`: the port its validation authority dials for
    /// TLS-ALPN-01 challenges (the platform's proxy port).
    pub tls_port: u16,
    /// Pebble's `httpPort`: the port it dials for HTTP-01 challenges.
    pub http_port: u16,
    /// The address every name resolves to for validation.
    pub dns_ipv4: Ipv4Addr,
    /// How long certificates last when an order names no `notAfter`
    /// (whole seconds; Pebble's default of five years when `None`).
    pub certificate_validity: Option<Duration>,
    /// The share of valid nonces Pebble rejects as `badNonce`, in percent.
    pub nonce_reject_percent: u8,
}

impl PebbleOptions {
    /// Options that validate on `tls_port` and `http_port` of 127.0.0.1.
    pub fn new(tls_port: u16, http_port: u16) -> PebbleOptions {
        PebbleOptions {
            tls_port,
            http_port,
            dns_ipv4: Ipv4Addr::LOCALHOST,
            certificate_validity: None,
            nonce_reject_percent: 0,
        }
    }
}

/// A running Pebble and its DNS server.
pub struct Pebble {
    pebble: Child,
    dns: Child,
    listen: SocketAddr,
    management: SocketAddr,
    ca_pem: String,
    ca_bundle: PathBuf,
    dir: tempfile::TempDir,
}

/// The programs this module runs, for a test's check that they are installed.
pub const PROGRAMS: [&str; 2] = ["pebble", "pebble-challtestsrv"];

const START_TIMEOUT: Duration = Duration::from_secs(20);

impl Pebble {
    /// Starts `pebble-challtestsrv` and `pebble` and waits (up to 20 s) until
    /// Pebble's directory answers. Free ports are picked anew and the start
    /// retried when another process took one first.
    pub fn start(opts: PebbleOptions) -> anyhow::Result<Pebble> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Pebble::try_start(&opts) {
                Ok(pebble) => return Ok(pebble),
                Err(StartError::PortTaken(_)) if attempts < 3 => continue,
                Err(StartError::PortTaken(e) | StartError::Other(e)) => return Err(e),
            }
        }
    }

    fn try_start(opts: &PebbleOptions) -> Result<Pebble, StartError> {
        let dir = tempfile::Builder::new()
            .prefix("mse-pebble-")
            .tempdir()
            .context("cannot create Pebble's folder")?;
        let ca = TestCa::new("mse test Pebble HTTPS CA")?;
        let server = ca.issue(&["localhost", "127.0.0.1"])?;
        let ca_bundle = dir.path().join("ca.pem");
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        for (path, text) in [
            (&ca_bundle, ca.cert_pem()),
            (&cert_path, server.cert_pem.as_str()),
            (&key_path, server.key_pem.as_str()),
        ] {
            fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        }

        let dns_port = free_udp_and_tcp_port()?;
        let dns_management = free_tcp_port()?;
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port()?));
        let management = SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port()?));

        let mut dns_command = Command::new("pebble-challtestsrv");
        dns_command
            .arg("-dns01")
            .arg(format!("127.0.0.1:{dns_port}"))
            .arg("-defaultIPv4")
            .arg(opts.dns_ipv4.to_string())
            .args([
                "-defaultIPv6",
                "",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
            ])
            .arg("-management")
            .arg(format!("127.0.0.1:{dns_management}"));
        let dns_log = dir.path().join("challtestsrv.log");
        let mut dns = spawn_logged(&mut dns_command, &dns_log)?;

        let mut config = serde_json::json!({
            "listenAddress": listen.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": cert_path,
            "privateKey": key_path,
            "httpPort": opts.http_port,
            "tlsPort": opts.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(validity) = opts.certificate_validity {
            config["certificateValidityPeriod"] = validity.as_secs().into();
        }
        let config_path = dir.path().join("pebble-config.json");
        fs::write(
            &config_path,
            serde_json::json!({ "pebble": config }).to_string(),
        )
        .with_context(|| format!("cannot write {}", config_path.display()))?;

        let mut pebble_command = Command::new("pebble");
        pebble_command
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns_port}"))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env(
                "PEBBLE_WFE_NONCEREJECT",
                opts.nonce_reject_percent.to_string(),
            );
        let pebble_log = dir.path().join("pebble.log");
        let pebble = match spawn_logged(&mut pebble_command, &pebble_log) {
            Ok(child) => child,
            Err(e) => {
                stop(&mut dns);
                return Err(e.into());
            }
        };
        let mut pebble = Pebble {
            pebble,
            dns,
            listen,
            management,
            ca_pem: ca.cert_pem().to_string(),
            ca_bundle,
            dir,
        };
        pebble.wait_ready(dns_management)?;
        Ok(pebble)
    }

    fn wait_ready(&mut self, dns_management: u16) -> Result<(), StartError> {
        let (mut last, mut dns_up) = (String::new(), false);
        let ended = wait::within(START_TIMEOUT, || {
            for (name, child, log) in [
                ("pebble-challtestsrv", &mut self.dns, "challtestsrv.log"),
                ("pebble", &mut self.pebble, "pebble.log"),
            ] {
                let status = match child.try_wait().context("cannot watch Pebble") {
                    Ok(None) => continue,
                    Ok(Some(status)) => status,
                    Err(e) => return Some(Err(StartError::Other(e))),
                };
                let tail = log_tail(&self.dir.path().join(log));
                let error = anyhow::anyhow!("{name} exited at start ({status}):\n{tail}");
                return Some(Err(if tail.contains("address already in use") {
                    StartError::PortTaken(error)
                } else {
                    StartError::Other(error)
                }));
            }
            dns_up = TcpStream::connect(("127.0.0.1", dns_management)).is_ok();
            last = match https_get(self.listen, "127.0.0.1", "/dir", &self.ca_pem) {
                Ok(response) if response.status == 200 && dns_up => return Some(Ok(())),
                Ok(response) => format!("status {}", response.status),
                Err(e) => format!("{e:#}"),
            };
            None
        });
        ended.unwrap_or_else(|| {
            Err(StartError::Other(anyhow::anyhow!(
                "Pebble's directory {} did not answer within {START_TIMEOUT:?} \
                 (last answer: {last}; DNS server up: {dns_up}):\n{}",
                self.directory_url(),
                self.log()
            )))
        })
    }

    /// The ACME directory URL (`https://127.0.0.1:PORT/dir`).
    pub fn directory_url(&self) -> String {
        format!("https://{}/dir", self.listen)
    }

    /// The PEM file of the CA that signed Pebble's own HTTPS certificate,
    /// for an ACME client talking to the directory.
    pub fn ca_bundle(&self) -> &Path {
        &self.ca_bundle
    }

    /// The directory document, as Pebble serves it.
    pub fn directory(&self) -> anyhow::Result<serde_json::Value> {
        let body = self.get(self.listen, "/dir")?;
        serde_json::from_str(&body).context("Pebble's directory is not JSON")
    }

    /// The root that certificates Pebble issues chain to (PEM), for a
    /// client that should trust them.
    pub fn root_pem(&self) -> anyhow::Result<String> {
        self.get(self.management, "/roots/0")
    }

    /// The intermediate that signs the certificates Pebble issues (PEM).
    pub fn intermediate_pem(&self) -> anyhow::Result<String> {
        self.get(self.management, "/intermediates/0")
    }

    /// The last lines Pebble and its DNS server wrote, for a failing test's
    /// message.
    pub fn log(&self) -> String {
        format!(
            "--- pebble ---\n{}\n--- pebble-challtestsrv ---\n{}",
            log_tail(&self.dir.path().join("pebble.log")),
            log_tail(&self.dir.path().join("challtestsrv.log"))
        )
    }

    fn get(&self, addr: SocketAddr, path: &str) -> anyhow::Result<String> {
        let response = https_get(addr, "127.0.0.1", path, &self.ca_pem)?;
        if response.status != 200 {
            bail!(
                "https://{addr}{path} answered {}: {}",
                response.status,
                response.body
            );
        }
        Ok(response.body)
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        stop(&mut self.pebble);
        stop(&mut self.dns);
    }
}

enum StartError {
    /// A port picked as free was taken before the program bound it.
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> StartError {
        StartError::Other(e)
    }
}

fn spawn_logged(command: &mut Command, log: &Path) -> anyhow::Result<Child> {
    let file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot run {program} (on Debian: apt-get install pebble)"))
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The last 30 lines of a log file.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn free_tcp_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free TCP port")?;
    Ok(listener.local_addr()?.port())
}

/// A loopback port free for both UDP and TCP (a DNS server binds both).
fn free_udp_and_tcp_port() -> anyhow::Result<u16> {
    for _ in 0..20 {
        let udp =
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free UDP port")?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("cannot find a loopback port free for both UDP and TCP")
}
