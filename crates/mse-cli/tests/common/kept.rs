//! The kept app of the key service's tests: an app whose secrets are an API
//! key and a greeting and which counts in its home, and what checks that
//! its home was kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mse_testkit::wait;
use serde_json::{json, Value};

use super::deploy::{pinned, proxy_port, served_certificate};
use super::platform::Platform;
use super::TestContext;

/// A copy of the app whose secrets are an API key and a greeting, which
/// keeps a counter in its home; `persistent`: its home is kept
/// (`[storage]`).
pub fn secrets_app(ctx: &TestContext, persistent: bool) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/secrets_home");
    let to = ctx.work().join("secrets_home");
    for relative in ["mse.toml", "secrets.json", "mse_src/app.py"] {
        let target = to.join(relative);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(relative), &target).unwrap();
    }
    if !persistent {
        return to;
    }
    let conf = to.join("mse.toml");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(
        &conf,
        format!("{text}\n[storage]\npersistent = true\nsize = \"16M\"\n"),
    )
    .unwrap();
    to
}

/// What the counter starts at: a number no file of the platform holds by
/// chance, looked for in the clear.
pub const COUNT: u64 = 7_391_862_450_123;

/// `POST /count` of the app at `domain` through the proxy (trusting the
/// certificate it serves now): the counter after adding `by`.
pub fn count(platform: &Platform, domain: &str, by: u64) -> u64 {
    let tls = pinned(&served_pem(domain, platform));
    let port = proxy_port(platform);
    let client = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve(domain, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let response = client
        .post(format!("https://{domain}:{port}/count"))
        .json(&json!({ "by": by }))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().unwrap();
    body["count"].as_u64().expect("a count")
}

/// The version of app `id`'s storage the platform holds, as `token` sees it.
pub fn storage_version(platform: &Platform, token: &str, id: &str) -> u64 {
    platform.app(token, id)["storage"]["version"]
        .as_u64()
        .unwrap_or(0)
}

/// Adds `by` to the counter and makes sure the platform holds it: once a
/// snapshot was written back after the write, a second write (one more)
/// and another snapshot — which the node takes at least its period after
/// the first, so after the first write. The counter the platform then
/// holds is the first write's or the second's; the first's is returned.
pub fn count_kept(platform: &Platform, token: &str, id: &str, domain: &str, by: u64) -> u64 {
    let before = storage_version(platform, token, id);
    let written = count(platform, domain, by);
    let first = wait::until(
        "a snapshot after the write",
        Duration::from_secs(30),
        || {
            let version = storage_version(platform, token, id);
            (version > before).then_some(version)
        },
    );
    count(platform, domain, 1);
    wait::until("a second snapshot", Duration::from_secs(30), || {
        (storage_version(platform, token, id) > first).then_some(())
    });
    written
}

/// The certificate `domain` serves through the proxy, PEM.
pub fn served_pem(domain: &str, platform: &Platform) -> String {
    let der = served_certificate(domain, proxy_port(platform));
    mse_attest::ratls::der_to_pem(&der)
}
