//! Security suite, simulation quote keys: each node host signs quotes with
//! a key of its own, certified by the platform's simulation CA, whose key
//! never reaches a node; a revoked host key fails every verification of the
//! apps it quoted for. Replayed against the real binaries.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::deploy::{assert_nowhere_in, deploy_ok, run_in};
use common::platform::{login, user, Platform, PlatformExt};
use common::TestContext;
use serde_json::{json, Value};

/// `mse verify` of the app at `url` (its fingerprint skipped) as the
/// logged-in `ctx`: (exit code, stdout, stderr).
fn verify(ctx: &TestContext, url: &str) -> (i32, String, String) {
    run_in(
        ctx,
        &ctx.work(),
        &[
            "verify",
            url.trim_start_matches("https://"),
            "--skip-fingerprint",
            "--output",
            "verified.pem",
        ],
    )
}

#[test]
fn an_app_of_a_revoked_node_host_fails_verification_naming_the_revocation() {
    let platform = Platform::start();
    let owner = TestContext::new();
    login(&platform, &owner, &platform.admin, true);
    let app = owner.scaffold("revoked");
    let out = deploy_ok(&platform, &owner, &app, &[]);
    assert_eq!(out["verified"], true, "{out}");
    let url = out["url"].as_str().unwrap();

    let (code, stdout, stderr) = verify(&owner, url);
    assert_eq!(
        code, 0,
        "before the revocation it verifies:\n{stdout}\n{stderr}"
    );
    std::fs::remove_file(owner.work().join("verified.pem")).expect("the verified certificate");
    let (status, list) = platform.get("", "/simulation-revoked");
    assert_eq!((status, list), (200, json!({"revoked": []})));

    // Only an administrator revokes, and only a node the platform knows.
    let (_, token) = user(&platform, "mallory");
    let (status, body) = platform.post(&token, "/nodes/local/revoke", json!({}));
    assert_eq!(status, 403, "{body}");
    let (status, body) = platform.post(&platform.admin, "/nodes/nowhere/revoke", json!({}));
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("nowhere"),
        "{body}"
    );
    let (status, list) = platform.get("", "/simulation-revoked");
    assert_eq!((status, list), (200, json!({"revoked": []})));

    let (status, body) = platform.post(&platform.admin, "/nodes/local/revoke", json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"node": "local", "revoked_keys": 1}));
    let (_, list) = platform.get("", "/simulation-revoked");
    let revoked = list["revoked"].as_array().unwrap();
    assert_eq!(revoked.len(), 1, "{list}");
    assert_eq!(revoked[0].as_str().unwrap().len(), 64, "{list}");

    let (code, stdout, stderr) = verify(&owner, url);
    assert_ne!(
        code, 0,
        "a revoked host's quote must not verify:\n{stdout}\n{stderr}"
    );
    assert!(
        format!("{stdout}{stderr}").contains(
            "the quote was signed with the quote key of node host `local`, which the platform \
             revoked"
        ),
        "{stdout}\n{stderr}"
    );
    assert!(
        !owner.work().join("verified.pem").exists(),
        "no certificate is saved"
    );
}

#[test]
fn verification_fails_closed_when_the_platform_does_not_list_revoked_keys() {
    let platform = Platform::start();
    let owner = TestContext::new();
    login(&platform, &owner, &platform.admin, true);
    let app = owner.scaffold("closed");
    let out = deploy_ok(&platform, &owner, &app, &[]);
    let url = out["url"].as_str().unwrap().to_string();
    // The profile now points at an address where no platform answers.
    let profile = mse_testkit::files_under(owner.root.path())
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "login.toml"))
        .expect("the login wrote its profile");
    let text = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(&profile, text.replace(&platform.url, "http://127.0.0.1:9")).unwrap();
    let (code, stdout, stderr) = verify(&owner, &url);
    assert_ne!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("cannot get the revoked simulation quote keys"),
        "{stdout}\n{stderr}"
    );
}

/// The command line of the `mse-run` process of app `id`.
fn node_command_line(id: &str) -> String {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        let launch = format!("/{id}/{}", mse_api::launch::LAUNCH_FILE);
        if line.contains("mse-run") && line.contains(&launch) {
            return line;
        }
    }
    panic!("no mse-run process runs app {id}");
}

#[test]
fn node_folders_and_the_node_command_line_hold_no_simulation_ca_key() {
    let platform = Platform::start();
    let (ctx, token) = user(&platform, "alice");
    let app = platform.deploy_scaffold(&ctx, &token, "keys");
    let id = app["uuid"]
        .as_str()
        .or(app["id"].as_str())
        .unwrap()
        .to_string();
    let app = platform.wait_initializing(&token, &id);
    assert!(app["limits"].is_string(), "the app says its limits: {app}");

    let data = platform.data_dir();
    let ca_key = std::fs::read_to_string(data.join("simulation-ca.key")).unwrap();
    let line = node_command_line(&id);
    assert!(!line.contains("simulation-ca"), "{line}");
    assert!(!line.contains(ca_key.trim()), "{line}");
    // The node is told its host's quote key, in the launch file its command
    // line names.
    let launch_file = line
        .split(' ')
        .find(|arg| arg.ends_with(mse_api::launch::LAUNCH_FILE))
        .unwrap();
    let launch_text = std::fs::read_to_string(launch_file).unwrap();
    let mode = std::fs::metadata(launch_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{launch_file}");
    let launch = mse_api::launch::Launch::from_json(&launch_text).unwrap();
    let mse_api::launch::Quotes::Simulation { quote_key, .. } = &launch.quotes else {
        panic!("the node is told no quote key: {launch_text}");
    };
    assert!(!launch_text.contains("simulation-ca"), "{launch_text}");

    // Neither the PEM nor any line of its body is in the nodes' folder.
    let nodes = platform.nodes_dir();
    assert_nowhere_in(&nodes, ca_key.as_bytes(), "the simulation CA key");
    for body_line in ca_key.lines().filter(|l| !l.starts_with("-----")) {
        assert_nowhere_in(
            &nodes,
            body_line.as_bytes(),
            "a line of the simulation CA key",
        );
    }
    // The host's own key is there, private.
    let keys: Vec<_> = mse_testkit::files_under(&nodes)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "quote-key.pem"))
        .collect();
    assert_eq!(keys.len(), 1, "one quote key for node `local`: {keys:?}");
    let mode = std::fs::metadata(&keys[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", keys[0].display());
    assert_eq!(quote_key, &keys[0], "{launch_text}");
    assert!(Path::new(&keys[0]).starts_with(&nodes));
    let _: Value = platform.stop_app(&token, &id);
}
