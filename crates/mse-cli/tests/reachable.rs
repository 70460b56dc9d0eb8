//! The URL `mse deploy` prints is reachable by the clients app owners and
//! users run (curl, Python `requests`, an app's own pytest suite), not only
//! by `mse` itself.

mod common;

use std::process::Command;

use common::deploy::{deploy_ok, owner_certificate_in, proxy_port, run_in};
use common::platform::{login, Platform};
use common::TestContext;
use serde_json::Value;

/// A fresh `<uuid>.localhost` name, as a local platform gives an app.
fn fresh_localhost_name() -> String {
    let hex = mse_package::CodeKey::generate().to_hex();
    format!(
        "{}-{}-{}-{}-{}.localhost",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[test]
fn python_resolves_any_localhost_name_to_the_loopback_address() {
    let name = fresh_localhost_name();
    let output = Command::new(mse_testkit::python())
        .args([
            "-c",
            "import socket, sys\n\
             infos = socket.getaddrinfo(sys.argv[1], 443, proto=socket.IPPROTO_TCP)\n\
             print(' '.join(sorted({info[4][0] for info in infos})))",
            &name,
        ])
        .output()
        .expect("python runs");
    let (stdout, stderr) = common::texts(&output);
    assert!(
        output.status.success(),
        "Python cannot resolve {name} (run ./scripts/localhost-names.sh as root): {stderr}"
    );
    assert!(
        stdout.split_whitespace().any(|a| a == "127.0.0.1"),
        "{name} resolves to {stdout}, not to 127.0.0.1"
    );
}

#[test]
fn deploying_an_app_whose_own_domain_does_not_resolve_says_exactly_how_to_reach_it() {
    let platform = Platform::start();
    let ctx = TestContext::new();
    login(&platform, &ctx, &platform.admin, true);
    let app = ctx.scaffold("shop");
    let domain = "shop.example.test";
    owner_certificate_in(&app, domain);

    let (code, stdout, stderr) = run_in(&ctx, &app, &["deploy", "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}\n{}", platform.output());
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out["resolves"], false, "{out}");
    let port = proxy_port(&platform).to_string();
    let warning: String = stderr
        .lines()
        .skip_while(|line| !line.starts_with("warning: shop.example.test"))
        .map(|line| format!("{}\n", line.replace(&port, "[PORT]")))
        .collect();
    insta::assert_snapshot!("own_domain_does_not_resolve", warning);

    // `mse status` says the same while the app lives.
    let uuid = out["uuid"].as_str().unwrap();
    let (code, stdout, stderr) = run_in(&ctx, &ctx.work(), &["status", uuid, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["resolves"],
        false
    );
    assert!(stderr.contains("127.0.0.1 shop.example.test"), "{stderr}");
}

/// The only test of the suite that binds port 443 (the tests run as root).
#[test]
fn an_app_behind_a_proxy_on_port_443_has_a_url_without_a_port_that_curl_and_python_reach() {
    let platform = Platform::start_with_proxy("127.0.0.1:443", |_| {});
    assert!(
        platform
            .output()
            .contains("(apps at https://<uuid>.localhost)\n"),
        "{}",
        platform.output()
    );
    let ctx = TestContext::new();
    let (code, stdout, stderr) = run_in(
        &ctx,
        &ctx.work(),
        &[
            "login",
            "--url",
            &platform.url,
            "--token",
            &platform.admin,
            "--allow-simulation",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("apps are served at https://<uuid>.localhost ("),
        "{stdout}"
    );
    let app = ctx.scaffold("standard");
    let out = deploy_ok(&platform, &ctx, &app, &[]);
    let uuid = out["uuid"].as_str().unwrap();
    let url = out["url"].as_str().unwrap();
    assert_eq!(url, format!("https://{uuid}.localhost"), "{out}");
    assert_eq!(out["resolves"], true, "{out}");
    let cert = out["cert_path"].as_str().unwrap();

    let curl = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "30", "--cacert", cert])
        .arg(format!("{url}/health"))
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .output()
        .expect("curl runs");
    let (stdout, stderr) = common::texts(&curl);
    assert_eq!(stdout, "200", "curl {url}/health: {stderr}");

    // Python `requests`, trusting the verified certificate as an app's own
    // tests do.
    let requests = Command::new(mse_testkit::python())
        .args([
            "-c",
            "import sys, requests\n\
             answer = requests.get(sys.argv[1] + '/', timeout=30)\n\
             print(answer.status_code, answer.text)",
            url,
        ])
        .env("REQUESTS_CA_BUNDLE", cert)
        .output()
        .expect("python runs");
    let (stdout, stderr) = common::texts(&requests);
    assert_eq!(stdout.trim(), "200 Hello world", "requests: {stderr}");

    // The app's own pytest suite, against the deployed app, set up as the
    // original platform's suites are.
    let pytest = Command::new(mse_testkit::python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(&app)
        .env_remove("MSE_APP_URL")
        .env_remove("MSE_APP_CACERT")
        .env("TEST_REMOTE_URL", url)
        .env("REQUESTS_CA_BUNDLE", cert)
        .output()
        .expect("pytest runs");
    let (stdout, stderr) = common::texts(&pytest);
    assert!(pytest.status.success(), "pytest: {stdout}{stderr}");
    assert!(stdout.contains("3 passed"), "{stdout}");
}
