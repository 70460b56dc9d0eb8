//! Deploying with the real `mse deploy` and calling the deployed app the
//! way its owner does: with the certificate the deployment verified.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::platform::Platform;
use super::{texts, TestContext};

/// `mse ARGS` in `dir` as `ctx`, without a terminal: (exit code, stdout, stderr).
pub fn run_in(ctx: &TestContext, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = ctx.mse_in(dir).args(args).output().expect("mse runs");
    let (stdout, stderr) = texts(&output);
    (output.status.code().unwrap_or(-1), stdout, stderr)
}

/// `mse deploy --json ARGS` in `app`; panics unless it succeeds.
pub fn deploy_ok(platform: &Platform, ctx: &TestContext, app: &Path, args: &[&str]) -> Value {
    json_ok(platform, ctx, app, "deploy", args)
}

/// `mse COMMAND --json ARGS` in `app`, which must succeed; its JSON output.
pub fn json_ok(
    platform: &Platform,
    ctx: &TestContext,
    app: &Path,
    command: &str,
    args: &[&str],
) -> Value {
    let mut all = vec![command, "--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run_in(ctx, app, &all);
    assert_eq!(
        code,
        0,
        "mse {command} failed:\n{stdout}\n{stderr}\n--- platform ---\n{}",
        platform.output()
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Gives the app in `app` an `[ssl]` section for `domain`: a certificate of
/// an owner's CA written beside its `mse.toml` (`fullchain.pem`,
/// `privkey.pem`). Returns (CA certificate PEM, private key PEM).
pub fn owner_certificate_in(app: &Path, domain: &str) -> (String, String) {
    let cert = owner_certificate(domain);
    std::fs::write(app.join("fullchain.pem"), &cert.chain_pem).unwrap();
    std::fs::write(app.join("privkey.pem"), &cert.key_pem).unwrap();
    let mut toml = std::fs::read_to_string(app.join("mse.toml")).unwrap();
    toml.push_str(&format!(
        "\n[ssl]\ndomain_name = \"{domain}\"\nprivate_key = \"privkey.pem\"\ncertificate = \"fullchain.pem\"\n"
    ));
    std::fs::write(app.join("mse.toml"), toml).unwrap();
    (cert.ca_pem, cert.key_pem)
}

pub fn proxy_port(platform: &Platform) -> u16 {
    platform
        .proxy
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the proxy address has a port")
}

/// A TLS client trusting exactly the CA (or self-signed certificate) `pem`.
pub fn trusting(pem: &str) -> rustls::ClientConfig {
    let der = mse_attest::ratls::pem_to_der(pem.as_bytes()).expect("a PEM certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der))
        .expect("a usable root");
    mse_attest::tls::ca_client_config(roots, &[])
}

/// A TLS client accepting exactly the certificate `pem` (the app's own
/// RA-TLS certificate: self-signed, so pinned rather than used as a root).
pub fn pinned(pem: &str) -> rustls::ClientConfig {
    let der = mse_attest::ratls::pem_to_der(pem.as_bytes()).expect("a PEM certificate");
    mse_attest::pin::client_config(&der, mse_attest::tls::HTTP1)
}

/// `GET https://host:port{path}` through the proxy on loopback: (status, body).
pub fn https_get(tls: rustls::ClientConfig, host: &str, port: u16, path: &str) -> (u16, String) {
    try_https_get(tls, host, port, path)
        .unwrap_or_else(|e| panic!("GET https://{host}:{port}{path}: {e}"))
}

/// [`https_get`], or the error (with its causes) when there is no answer.
pub fn try_https_get(
    tls: rustls::ClientConfig,
    host: &str,
    port: u16,
    path: &str,
) -> Result<(u16, String), String> {
    let client = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let response = client
        .get(format!("https://{host}:{port}{path}"))
        .send()
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    Ok((status, response.text().unwrap_or_default()))
}

/// `GET {url}{path}` of an app `mse deploy --json` described in `out`,
/// trusting the certificate the deployment saved: pinned in self mode (the
/// node's RA-TLS certificate), as the CA in operator mode.
pub fn call_app(platform: &Platform, out: &Value, path: &str) -> (u16, String) {
    let pem = std::fs::read_to_string(out["cert_path"].as_str().expect("a saved certificate"))
        .expect("the saved certificate is readable");
    let tls = match out["certificate_origin"].as_str() {
        Some("operator") => trusting(&pem),
        _ => pinned(&pem),
    };
    let url = out["url"].as_str().expect("a URL");
    https_get(tls, &host_of(url), proxy_port(platform), path)
}

/// The host of an `https://host[:port]` URL.
pub fn host_of(url: &str) -> String {
    let address = url.trim_start_matches("https://");
    address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .to_string()
}

/// The leaf certificate `host:port` on loopback serves (DER).
pub fn served_certificate(host: &str, port: u16) -> Vec<u8> {
    let (config, capture) = mse_attest::pin::capture_config(&[b"http/1.1"]);
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let mut connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    while connection.is_handshaking() {
        connection
            .complete_io(&mut stream)
            .expect("a TLS handshake");
    }
    capture.seen().expect("a certificate")
}

/// Panics when any file under `dir` holds `needle` (`what` names it).
pub fn assert_nowhere_in(dir: &Path, needle: &[u8], what: &str) {
    for file in mse_testkit::files_under(dir) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{what} is in {}",
            file.display()
        );
    }
}

/// A certificate of `domain` issued by a CA of the owner's, as an owner
/// brings to an `[ssl]` section.
pub struct OwnerCertificate {
    /// The owner's CA certificate, PEM (what clients trust).
    pub ca_pem: String,
    /// The leaf's private key, PEM.
    pub key_pem: String,
    /// The leaf then the CA, PEM.
    pub chain_pem: String,
}

/// Issues an [`OwnerCertificate`] for `domain`.
pub fn owner_certificate(domain: &str) -> OwnerCertificate {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Owner Test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![domain.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    OwnerCertificate {
        ca_pem: ca_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
        chain_pem: format!("{}{}", leaf.pem(), ca_cert.pem()),
    }
}
