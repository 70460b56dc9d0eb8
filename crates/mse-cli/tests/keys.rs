//! The key service as an owner meets it (docs/keys.md): a fresh platform
//! runs it by itself, publishes its measurement (`GET /keys`), serves it at
//! `keys.<base domain>` through its proxy with an RA-TLS certificate, and
//! `mse keys verify` checks it like an app; killed, it comes back with the
//! same root key.

mod common;

use std::time::Duration;

use common::platform::{user, Platform};
use common::texts;
use mse_testkit::wait;
use serde_json::Value;

/// `GET /keys` once the service runs (bounded wait).
fn running_service(platform: &Platform) -> Value {
    wait::until("the key service runs", Duration::from_secs(30), || {
        let (status, body) = platform.get("", "/keys");
        (status == 200 && body["running"] == true).then_some(body)
    })
}

#[test]
fn a_fresh_platform_runs_a_key_service_that_mse_keys_verify_accepts() {
    let platform = Platform::start();
    let info = running_service(&platform);
    assert_eq!(info["domain"], "keys.localhost");
    assert_eq!(info["tee"], "simulation");
    // What it publishes is the measurement of the mse-run this build made,
    // computed here from the binary's bytes.
    let expected = mse_keys::service::measurement_of(&mse_testkit::workspace_binary("mse-run"))
        .expect("mse-run is readable");
    assert_eq!(info["measurement"], hex::encode(expected));

    let (owner, _) = user(&platform, "owner");
    let output = owner
        .mse()
        .args(["keys", "verify", "--json"])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["mr_enclave"], hex::encode(expected));
    assert_eq!(report["tee"], "simulation");

    // Another measurement than the service's fails, naming the check.
    let output = owner
        .mse()
        .args([
            "keys",
            "verify",
            "--json",
            "--measurement",
            &"00".repeat(32),
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("the platform publishes the measurement"),
        "{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["verified"], false);
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["mr_enclave"], "{report}");
}

#[test]
fn a_killed_key_service_is_started_again_with_the_same_root_key() {
    let platform = Platform::start();
    let first = running_service(&platform);
    let root = platform
        .nodes_dir()
        .join("key-service")
        .join("service")
        .join("root.key");
    let key = std::fs::read(&root).expect("the root key is kept");
    assert_eq!(key.len(), 32);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&root).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let pids = processes_naming("--key-service");
    assert_eq!(pids.len(), 1, "one key service: {pids:?}");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pids[0].to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    wait::until(
        "the key service is started again",
        Duration::from_secs(30),
        || {
            let again = processes_naming("--key-service");
            (again.len() == 1 && again[0] != pids[0]).then_some(())
        },
    );
    let again = running_service(&platform);
    assert_eq!(again["measurement"], first["measurement"]);
    assert_eq!(std::fs::read(&root).unwrap(), key);
}

/// The processes whose command line names `needle` and whose parent is a
/// platform this test process started (tests run side by side, each with
/// a platform of its own).
fn processes_naming(needle: &str) -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !text.contains(needle) {
            continue;
        }
        // Its parent is a platform this test started.
        let parent = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_string))
            })
            .unwrap_or_default();
        let grandparent = std::fs::read_to_string(format!("/proc/{parent}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_string))
            })
            .unwrap_or_default();
        if grandparent == me {
            found.push(pid);
        }
    }
    found
}
