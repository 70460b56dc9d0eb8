//! The harness for end-to-end tests: a real ACME CA (Pebble) and a real
//! browser (headless Chromium). Each test skips, saying so, when the
//! programs are missing, unless `CI` is set.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use mse_testkit::browser::{self, Browser};
use mse_testkit::pebble::{self, Pebble, PebbleOptions};
use mse_testkit::tls::TestCa;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const PAGE_TEXT: &str = "Hello from app.localhost";

fn start_pebble() -> Pebble {
    // Nothing validates in these tests: the challenge ports are never dialled.
    Pebble::start(PebbleOptions::new(5001, 5002)).expect("Pebble starts")
}

#[test]
fn pebble_starts_and_its_directory_lists_new_order() {
    if !mse_testkit::programs_present(
        "pebble_starts_and_its_directory_lists_new_order",
        &pebble::PROGRAMS,
    ) {
        return;
    }
    let pebble = start_pebble();
    let directory = pebble.directory().expect("the directory answers");
    let new_order = directory["newOrder"]
        .as_str()
        .unwrap_or_else(|| panic!("no newOrder in {directory}"));
    assert!(new_order.starts_with(pebble.directory_url().trim_end_matches("/dir")));
    let bundle = std::fs::read_to_string(pebble.ca_bundle()).unwrap();
    assert!(bundle.starts_with("-----BEGIN CERTIFICATE-----"));
}

#[test]
fn pebble_serves_its_issuing_root_and_intermediate_as_pem() {
    if !mse_testkit::programs_present(
        "pebble_serves_its_issuing_root_and_intermediate_as_pem",
        &pebble::PROGRAMS,
    ) {
        return;
    }
    let pebble = start_pebble();
    for pem in [
        pebble.root_pem().unwrap(),
        pebble.intermediate_pem().unwrap(),
    ] {
        let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("not PEM ({e:?}): {pem}"));
        assert_eq!(certs.len(), 1, "{pem}");
    }
    assert_ne!(
        pebble.root_pem().unwrap(),
        pebble.intermediate_pem().unwrap()
    );
}

/// An HTTPS server on 127.0.0.1 answering every request with a page
/// naming `app.localhost`, with a certificate for that name from `ca`.
fn serve_page(ca: &TestCa) -> SocketAddr {
    let issued = ca.issue(&["app.localhost"]).unwrap();
    let certs = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(connection) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut stream = rustls::StreamOwned::new(connection, tcp);
                let mut request = Vec::new();
                let mut buf = [0; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!(
                    "<!doctype html><title>harness</title><h1 style=\"font-size:64px\">{PAGE_TEXT}</h1>"
                );
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
                stream.conn.send_close_notify();
                let _ = stream.flush();
            });
        }
    });
    addr
}

#[test]
fn chromium_trusting_the_root_shows_the_page_without_certificate_error() {
    if !mse_testkit::programs_present(
        "chromium_trusting_the_root_shows_the_page_without_certificate_error",
        &browser::PROGRAMS,
    ) {
        return;
    }
    let ca = TestCa::new("harness test root").unwrap();
    let addr = serve_page(&ca);
    let browser = Browser::new(Some(ca.cert_pem())).unwrap();
    let url = format!("https://app.localhost:{}/", addr.port());
    let page = browser.open(&url, Some(("app.localhost", addr))).unwrap();
    assert_eq!(page.certificate_error(), None, "{}", page.log);
    assert_eq!(page.load_error, None, "{}", page.log);
    assert_eq!(page.status, Some(200), "{}", page.log);
    assert!(page.dom.contains(PAGE_TEXT), "{}\n{}", page.dom, page.log);
    let artifact = mse_testkit::artifacts_dir("harness").join("trusted-page.png");
    page.save_screenshot(&artifact).unwrap();
    assert!(!page.screenshot_is_blank().unwrap());
    assert!(!browser::png_is_blank(&artifact).unwrap());
}

#[test]
fn chromium_trusting_nothing_reports_a_certificate_error() {
    if !mse_testkit::programs_present(
        "chromium_trusting_nothing_reports_a_certificate_error",
        &browser::PROGRAMS,
    ) {
        return;
    }
    let ca = TestCa::new("harness test root").unwrap();
    let addr = serve_page(&ca);
    let browser = Browser::new(None).unwrap();
    let url = format!("https://app.localhost:{}/", addr.port());
    let page = browser.open(&url, None).unwrap();
    assert_eq!(
        page.certificate_error().as_deref(),
        Some("net::ERR_CERT_AUTHORITY_INVALID"),
        "{}",
        page.log
    );
    assert_eq!(page.status, None, "no page was loaded: {}", page.log);
    assert!(!page.dom.contains(PAGE_TEXT), "{}", page.dom);
}
