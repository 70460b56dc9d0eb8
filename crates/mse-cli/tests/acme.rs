//! Browser-trusted zero-trust apps, with real parts: Pebble as the ACME CA
//! (its TLS-ALPN-01 validation dialling the platform's proxy port), the
//! real `mse-server`, `mse-run` and `mse`, and headless Chromium trusting
//! Pebble's root as the browser.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::acme::{free_port, installed, start};
use common::deploy::{
    assert_nowhere_in, deploy_ok, https_get, owner_certificate_in, run_in, served_certificate,
    trusting, try_https_get,
};
use common::platform::{user, Platform};
use mse_testkit::browser::Browser;
use mse_testkit::wait;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The host of the app `mse deploy --json` described.
fn domain(out: &Value) -> String {
    out["domain_name"].as_str().expect("a domain").to_string()
}

fn app_json(platform: &Platform, token: &str, id: &str) -> Value {
    platform.app(token, id)
}

#[test]
fn a_browser_opens_a_zero_trust_app_with_no_warning_and_its_key_is_the_attested_nodes() {
    if !installed(
        "a_browser_opens_a_zero_trust_app_with_no_warning_and_its_key_is_the_attested_nodes",
    ) {
        return;
    }
    let acme = start(None);
    let (ctx, token) = user(&acme.platform, "alice");
    let app = ctx.scaffold("hello");
    let started = Instant::now();
    let out = deploy_ok(&acme.platform, &ctx, &app, &[]);
    let deploy_time = started.elapsed();
    assert_eq!(out["certificate_origin"], "acme", "{out}");
    assert_eq!(out["browser_verified"], true, "{out}");
    let issuer = out["certificate"]["issuer"].as_str().unwrap_or_default();
    assert!(issuer.contains("Pebble"), "issued by Pebble: {out}");
    assert!(out["certificate"]["error"].is_null(), "{out}");
    eprintln!(
        "deploy with ACME: {:.2} s (running stage {} s)",
        deploy_time.as_secs_f64(),
        out["timings"]["running"]
    );
    let host = domain(&out);

    // The certificate a browser gets has the key the node's quote binds.
    let served = served_certificate(&host, acme.port);
    let evidence_url = format!("https://{host}:{}/.well-known/mse-evidence", acme.port);
    let root = acme.pebble.root_pem().expect("Pebble's root");
    let (status, body) = https_get(
        trusting(&root),
        &host,
        acme.port,
        "/.well-known/mse-evidence",
    );
    assert_eq!(status, 200, "{evidence_url}: {body}");
    let evidence = mse_attest::evidence::Evidence::parse(body.as_bytes()).expect("evidence");
    let quote = mse_attest::quote::Quote::parse(&evidence.quote_bytes().unwrap()).unwrap();
    let bits = mse_attest::evidence::key_bits(&served).unwrap();
    assert_eq!(
        quote.body.report_data()[..32],
        Sha256::digest(&bits)[..],
        "REPORTDATA binds the served certificate's key"
    );
    assert_eq!(
        hex::encode(quote.body.mr_enclave()),
        out["fingerprint"].as_str().unwrap(),
        "the quote is the deployed app's"
    );

    // Headless Chromium trusting Pebble's root: the app's page, no warning.
    let url = format!("https://{host}:{}/", acme.port);
    let browser = Browser::new(Some(&root)).expect("a browser");
    let page = browser.open(&url, None).expect("Chromium runs");
    assert_eq!(page.certificate_error(), None, "{}", page.log);
    assert!(
        page.dom.contains("Hello world"),
        "the app's page: {}\n{}",
        page.dom,
        page.log
    );
    page.save_screenshot(&mse_testkit::artifacts_dir("acme").join("app.png"))
        .unwrap();
    assert!(
        !page.screenshot_is_blank().unwrap(),
        "the page shows something"
    );
    // The same browser without Pebble's root warns: the check can fail.
    let untrusting = Browser::new(None).expect("a browser");
    let warned = untrusting.open(&url, None).expect("Chromium runs");
    assert!(
        warned.certificate_error().is_some(),
        "an untrusted certificate is refused: {:?}\n{}",
        warned.load_error,
        warned.log
    );

    // An app user checks the page's certificate against the evidence.
    let fingerprint = out["fingerprint"].as_str().unwrap();
    let target = format!("{host}:{}", acme.port);
    let (code, stdout, stderr) = run_in(
        &ctx,
        &ctx.work(),
        &["verify", &target, "--fingerprint", fingerprint, "--json"],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(report["evidence_url"], evidence_url.as_str());
    let passed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "passed")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for check in ["report_data_binding", "evidence_inputs", "mr_enclave"] {
        assert!(passed.contains(&check), "{check} passed: {stdout}");
    }

    // The same evidence relayed by a server with a key of its own fails.
    let impostor = Impostor::start(&host, body.into_bytes());
    let (code, stdout, stderr) = run_in(
        &ctx,
        &ctx.work(),
        &[
            "verify",
            &format!("{host}:{}", impostor.port),
            "--fingerprint",
            fingerprint,
        ],
    );
    assert_ne!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("✗ report_data_binding"),
        "the binding fails: {stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("not the one the node's quote binds")
            || stdout.contains("something other than the attested node"),
        "and says why: {stdout}"
    );

    // Neither the node host's account key nor the domain's key reaches
    // the control plane: not its data folder, not its output.
    let account = acme.platform.nodes_dir().join("acme/account.pem");
    let account_pem = std::fs::read_to_string(&account).expect("the host's account key");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&account).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", account.display());
    }
    let id = out["uuid"].as_str().unwrap();
    let domain_key =
        std::fs::read_to_string(acme.platform.nodes_dir().join(id).join("tls/key.pem"))
            .expect("the node's key");
    for (pem, what) in [
        (&account_pem, "the ACME account key"),
        (&domain_key, "the domain's key"),
    ] {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let needle = &body[body.len() / 2..body.len() / 2 + 32];
        assert_nowhere_in(&acme.platform.data_dir(), needle.as_bytes(), what);
        assert!(
            !acme.platform.output().contains(needle),
            "{what} in the output"
        );
    }

    // `mse status` names the issuer and the expiry.
    let (code, stdout, _) = run_in(&ctx, &ctx.work(), &["status", id]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("issuer") && stdout.contains("Pebble"),
        "{stdout}"
    );
    assert!(stdout.contains("cert expiry"), "{stdout}");
    let app = app_json(&acme.platform, &token, id);
    assert_eq!(app["certificate"]["issuer"], issuer);
}

#[test]
fn no_acme_keeps_the_ra_tls_certificate_and_an_operator_app_has_no_evidence() {
    if !installed("no_acme_keeps_the_ra_tls_certificate_and_an_operator_app_has_no_evidence") {
        return;
    }
    let acme = start(None);
    let (ctx, _token) = user(&acme.platform, "bob");
    let app = ctx.scaffold("plain");
    let out = deploy_ok(&acme.platform, &ctx, &app, &["--no-acme"]);
    assert_eq!(out["certificate_origin"], "self", "{out}");
    let served = served_certificate(&domain(&out), acme.port);
    assert!(
        mse_attest::ratls::inspect(&served).is_ok(),
        "the RA-TLS certificate is served"
    );

    // An app served with the platform's certificate at the proxy: no
    // quote, no evidence, and `mse verify` says so.
    let operator = ctx.scaffold("operated");
    let out = deploy_ok(&acme.platform, &ctx, &operator, &["--untrusted-ssl"]);
    let target = format!("{}:{}", domain(&out), acme.port);
    let (code, stdout, stderr) = run_in(
        &ctx,
        &ctx.work(),
        &["verify", &target, "--skip-fingerprint"],
    );
    assert_ne!(code, 0, "{stdout}");
    assert!(
        stderr.contains("publishes no evidence") || stderr.contains("answered"),
        "{stdout}\n{stderr}"
    );
}

#[test]
fn an_owner_mode_app_is_verifiable_by_its_users() {
    if !installed("an_owner_mode_app_is_verifiable_by_its_users") {
        return;
    }
    let acme = start(None);
    let (ctx, _token) = user(&acme.platform, "carol");
    let app = ctx.scaffold("shop");
    let owner_domain = "shop.example.test";
    let (ca_pem, _key) = owner_certificate_in(&app, owner_domain);
    let out = deploy_ok(&acme.platform, &ctx, &app, &[]);
    assert_eq!(out["certificate_origin"], "owner", "{out}");
    let target = format!("{owner_domain}:{}", acme.port);
    let resolve = format!("{owner_domain}:{}:127.0.0.1", acme.port);
    let (code, stdout, stderr) = run_in(
        &ctx,
        &ctx.work(),
        &[
            "verify",
            &target,
            "--resolve",
            &resolve,
            "--fingerprint",
            out["fingerprint"].as_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("✓ report_data_binding"), "{stdout}");
    assert!(
        stdout.contains("Owner Test CA"),
        "names the issuer: {stdout}"
    );
    // The app is served with the owner's certificate, to clients trusting
    // the owner's CA.
    let (status, body) = https_get(trusting(&ca_pem), owner_domain, acme.port, "/");
    assert_eq!((status, body.as_str()), (200, "Hello world"));
}

#[test]
fn renewal_replaces_the_certificate_and_the_app_stays_reachable() {
    if !installed("renewal_replaces_the_certificate_and_the_app_stays_reachable") {
        return;
    }
    // Certificates of 30 s: the node renews 20 s into each.
    let acme = start(Some(30));
    let (ctx, token) = user(&acme.platform, "dave");
    let app = ctx.scaffold("renewed");
    let out = deploy_ok(&acme.platform, &ctx, &app, &[]);
    let id = out["uuid"].as_str().unwrap().to_string();
    let host = domain(&out);
    let first = served_certificate(&host, acme.port);
    let first_until = out["certificate"]["not_after"]
        .as_str()
        .unwrap()
        .to_string();
    let root = acme.pebble.root_pem().unwrap();

    // Called again and again until the node reports another certificate,
    // at most 60 s: every call answers.
    let mut calls = 0;
    let renewed = wait::until(
        "the certificate is renewed",
        Duration::from_secs(60),
        || {
            let answer = try_https_get(trusting(&root), &host, acme.port, "/");
            assert_eq!(
                answer.as_ref().map(|(s, b)| (*s, b.as_str())),
                Ok((200, "Hello world")),
                "call {calls} during renewal\n{}",
                acme.platform.output()
            );
            calls += 1;
            let app = acme.platform.app(&token, &id);
            let until = app["certificate"]["not_after"].as_str().unwrap_or_default();
            if until != first_until {
                Ok(app)
            } else {
                Err(format!("{app}\n{}", acme.pebble.log()))
            }
        },
    );
    assert!(renewed["certificate"]["error"].is_null(), "{renewed}");
    let second = served_certificate(&host, acme.port);
    assert_ne!(first, second, "a new certificate is served");
    assert_eq!(
        mse_attest::evidence::key_bits(&first).unwrap(),
        mse_attest::evidence::key_bits(&second).unwrap(),
        "with the same attested key"
    );
    let (status, _) = https_get(trusting(&root), &host, acme.port, "/");
    assert_eq!(status, 200, "after {calls} calls");
}

/// A TLS server with a certificate for `host` of its own (another key)
/// that relays the real node's evidence: what a proxy or any other party
/// could serve.
struct Impostor {
    port: u16,
}

impl Impostor {
    fn start(host: &str, evidence: Vec<u8>) -> Impostor {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let config = Arc::new(
            mse_attest::tls::server_config(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
                mse_attest::tls::HTTP1,
            )
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            // `mse verify` connects twice: for the certificate, for the
            // evidence. A few more are allowed; the thread ends with the test.
            for stream in listener.incoming().take(8) {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(mut connection) = rustls::ServerConnection::new(config.clone()) else {
                    continue;
                };
                let mut tls = rustls::Stream::new(&mut connection, &mut stream);
                let mut request = [0u8; 4096];
                let Ok(n) = tls.read(&mut request) else {
                    continue;
                };
                let body: &[u8] = if request[..n].starts_with(b"GET /.well-known/mse-evidence") {
                    &evidence
                } else {
                    b"hi"
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes());
                let _ = tls.write_all(body);
                let _ = tls.flush();
            }
        });
        Impostor { port }
    }
}

#[test]
fn an_unreachable_acme_ca_leaves_the_app_running_on_its_ra_tls_certificate_and_says_why() {
    // Nothing listens on this port: every attempt fails at once.
    let closed = free_port();
    let platform = Platform::start_with(|c| {
        c.args([
            "--acme-directory",
            &format!("https://127.0.0.1:{closed}/dir"),
        ]);
    });
    let (ctx, token) = user(&platform, "erin");
    let app = ctx.scaffold("offline");
    let (code, stdout, stderr) = run_in(&ctx, &app, &["deploy", "--json"]);
    assert_eq!(code, 0, "the app runs all the same:\n{stdout}\n{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out["certificate_origin"], "acme");
    assert_eq!(out["browser_verified"], false, "{out}");
    let error = out["certificate"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cannot reach the ACME server") && error.contains("next attempt in"),
        "in words: {out}"
    );
    assert!(
        stderr.contains("serves its RA-TLS certificate"),
        "deploy says so: {stderr}"
    );
    // Still zero trust: the RA-TLS certificate is served and verifies.
    let id = out["uuid"].as_str().unwrap();
    let served = served_certificate(&domain(&out), common::deploy::proxy_port(&platform));
    assert!(mse_attest::ratls::inspect(&served).is_ok());
    let (status, _) = common::deploy::call_app(&platform, &out, "/");
    assert_eq!(status, 200);
    // `mse status` and the app's log say it too.
    let (_, status_text, _) = run_in(&ctx, &ctx.work(), &["status", id]);
    assert!(
        status_text.contains("cert error") && status_text.contains("cannot reach the ACME server"),
        "{status_text}"
    );
    let (_, logs, _) = run_in(&ctx, &ctx.work(), &["logs", id]);
    assert!(
        logs.contains("ACME: cannot reach the ACME server"),
        "{logs}"
    );
    assert_eq!(platform.app(&token, id)["status"], "running");
}
