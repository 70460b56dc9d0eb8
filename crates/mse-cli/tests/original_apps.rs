//! Apps written the way the original platform's examples are (Flask with
//! Flask-Cors and Flask-SQLAlchemy, FastAPI, pandas with scikit-learn,
//! secrets and `$HOME` writes, an `[ssl]` owner-certificate app, a plain
//! ASGI app on an `mse-base` tag that the catalog took from a Dockerfile's
//! `FROM` line), each in
//! `tests/apps/`, deployed unmodified on a fresh platform with `mse deploy`,
//! then checked by its own pytest suite against the printed URL with nothing
//! but `TEST_REMOTE_URL` and `REQUESTS_CA_BUNDLE` set.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::platform::{user, Platform};
use common::TestContext;
use serde_json::Value;

/// Copies example `name` into `ctx`'s work folder, as its owner would have
/// it checked out.
fn checkout(ctx: &TestContext, name: &str) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/apps")
        .join(name);
    let to = ctx.work().join(name);
    copy_tree(&from, &to);
    to
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_tree(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `mse deploy --json` in `app`, as its README says; the deployment's JSON.
fn deploy(platform: &Platform, ctx: &TestContext, app: &Path) -> Value {
    let (code, stdout, stderr) = common::deploy::run_in(ctx, app, &["deploy", "--json"]);
    assert_eq!(
        code,
        0,
        "mse deploy failed:\n{stdout}\n{stderr}\n--- platform ---\n{}",
        platform.output()
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// The app's own suite, `python -m pytest tests`, against `url`, trusting
/// `ca_bundle`; nothing else of this process's environment reaches it.
fn run_suite(app: &Path, url: &str, ca_bundle: &Path) {
    let output = Command::new(mse_testkit::python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(app)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("TEST_REMOTE_URL", url)
        .env("REQUESTS_CA_BUNDLE", ca_bundle)
        .output()
        .expect("pytest runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the app's suite failed against {url}:\n{text}"
    );
    assert!(text.contains("passed"), "{text}");
}

/// Deploys example `name` on a fresh platform and runs its suite against
/// the URL `mse deploy` printed, with the certificate it verified.
fn deploy_and_run_suite(name: &str) {
    let platform = Platform::start();
    let (owner, _) = user(&platform, "owner");
    let app = checkout(&owner, name);
    let out = deploy(&platform, &owner, &app);
    assert_eq!(out["verified"], true, "{out}");
    run_suite(
        &app,
        out["url"].as_str().unwrap(),
        Path::new(out["cert_path"].as_str().unwrap()),
    );
}

#[test]
fn a_flask_app_with_flask_cors_and_flask_sqlalchemy_passes_its_suite() {
    deploy_and_run_suite("flask_cors");
}

#[test]
fn a_fastapi_app_passes_its_suite() {
    deploy_and_run_suite("fastapi");
}

#[test]
fn a_plain_asgi_app_on_a_base_image_tag_passes_its_suite() {
    deploy_and_run_suite("base_asgi");
}

#[test]
fn a_pandas_and_scikit_learn_app_passes_its_suite() {
    deploy_and_run_suite("datascience");
}

#[test]
fn an_app_with_secrets_writing_its_home_passes_its_suite() {
    deploy_and_run_suite("secrets_home");
}

/// Owner mode as the original's examples run it: the app at its own domain
/// on port 443 with the owner's certificate. The platform's base domain is
/// `mse.localhost` so the custom domain `shop.localhost` is not under it, and
/// its proxy listens on 443 (tests binding 443 run one at a time: see
/// `.config/nextest.toml`).
#[test]
fn an_owner_certificate_app_on_port_443_passes_its_suite() {
    let platform = Platform::start_with_proxy("127.0.0.1:443", |command| {
        command.args(["--base-domain", "mse.localhost"]);
    });
    let (owner, _) = user(&platform, "owner");
    let app = checkout(&owner, "owner_ssl");
    let certificate = common::deploy::owner_certificate("shop.localhost");
    std::fs::create_dir_all(app.join("cert")).unwrap();
    std::fs::write(app.join("cert/key.pem"), &certificate.key_pem).unwrap();
    std::fs::write(app.join("cert/fullchain.pem"), &certificate.chain_pem).unwrap();
    let ca_path = app.join("owner-ca.pem");
    std::fs::write(&ca_path, &certificate.ca_pem).unwrap();

    let out = deploy(&platform, &owner, &app);
    assert_eq!(out["url"], "https://shop.localhost", "{out}");
    run_suite(&app, out["url"].as_str().unwrap(), &ca_path);
}
