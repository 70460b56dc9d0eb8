//! The key service as an owner meets it (docs/keys.md): a fresh platform
//! runs it by itself, publishes its measurement (`GET /keys`), serves it at
//! `keys.<base domain>` through its proxy with an RA-TLS certificate, and
//! `mse keys verify` checks it like an app; killed, it comes back with the
//! same root key. `mse deploy --keep-running` hands it an app's keys under
//! a policy the owner signs; the platform keeps them sealed, and what is
//! not the owner's, not for the ticket's app, stale or replayed is refused.

mod common;

use std::time::Duration;

use common::deploy::{assert_nowhere_in, deploy_ok, proxy_port, served_certificate};
use common::kept::{count, count_kept, secrets_app, served_pem, COUNT};
use common::platform::{user, Platform};
use common::{texts, TestContext};
use mse_testkit::wait;
use rustls::pki_types::pem::PemObject as _;
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

/// The code key `mse deploy` saved in the app's context.
fn code_key(ctx: &TestContext, out: &Value) -> String {
    let dir = std::path::Path::new(out["context_path"].as_str().unwrap());
    let text = std::fs::read_to_string(dir.join("context.mse")).unwrap_or_else(|_| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .find(|t| t.contains("code_secret_key"))
            .expect("a context file with the key")
    });
    let _ = ctx;
    text.lines()
        .find_map(|l| l.strip_prefix("code_secret_key = "))
        .expect("the context holds the code key")
        .trim_matches('"')
        .to_string()
}

/// POSTs `body` to the key service's `/provision`, pinned to the certificate
/// it serves now (the tests check the service's answer, not its identity).
fn provision(platform: &Platform, body: &Value) -> (u16, String) {
    to_service(platform, "/provision", body)
}

/// POSTs `body` to the key service's `path`, as [`provision`] does.
fn to_service(platform: &Platform, path: &str, body: &Value) -> (u16, String) {
    let port = proxy_port(platform);
    let der = served_certificate("keys.localhost", port);
    let tls = mse_attest::pin::client_config(&der, mse_attest::tls::HTTP1);
    let http = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve(
            "keys.localhost",
            format!("127.0.0.1:{port}").parse().unwrap(),
        )
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let response = http
        .post(format!("https://keys.localhost:{port}{path}"))
        .json(body)
        .send()
        .expect("the key service answers");
    (
        response.status().as_u16(),
        response.text().unwrap_or_default(),
    )
}

#[test]
fn keep_running_hands_the_keys_to_the_key_service_which_keeps_them_sealed() {
    let Kept {
        platform,
        owner,
        token,
        app,
        out,
    } = kept_deployment(false, &["--keep-running"]);
    let kept = &out["key_service"];
    assert_eq!(
        kept["app"].as_str().unwrap().split('/').nth(2),
        Some("secrets-example"),
        "{out}"
    );
    assert!(kept["policy_version"].as_u64().unwrap() > 0);
    let owner_key = owner.root.path().join("home/conf/owner.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&owner_key).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // The platform keeps one sealed record: neither the code key nor a
    // secret is anywhere in its data folder (its store included), nor in
    // its output.
    let key = code_key(&owner, &out);
    for (needle, what) in [(key.as_str(), "the code key"), ("k-4f1c2a9e", "a secret")] {
        assert_nowhere_in(&platform.data_dir(), needle.as_bytes(), what);
        assert!(
            !platform.output().contains(needle),
            "{what} in the platform's output"
        );
    }
    // What the platform keeps, as the service reads it back with its
    // credential: bytes that open under the service's root key only.
    let service_dir = platform.nodes_dir().join("key-service");
    let credential = std::fs::read_to_string(service_dir.join("credential")).unwrap();
    let (_, me) = platform.get(&token, "/me");
    let name = mse_keys::record::record_name(&mse_keys::AppName {
        owner: me["id"].as_str().unwrap().into(),
        project: "default".into(),
        name: "secrets-example".into(),
    });
    let (status, record) = platform.get(
        &credential,
        &format!("/keys/record?name={}", url_escape(&name)),
    );
    assert_eq!(status, 200, "{record}");
    let sealed = base64_decode(record["sealed"].as_str().unwrap());
    for needle in [key.as_bytes(), b"k-4f1c2a9e".as_slice()] {
        assert!(!sealed.windows(needle.len()).any(|w| w == needle));
    }
    let root: [u8; 32] = std::fs::read(service_dir.join("service/root.key"))
        .unwrap()
        .try_into()
        .unwrap();
    let opened =
        mse_keys::record::KeptRecord::open(&mse_keys::RootKey::from_bytes(root), &name, &sealed)
            .expect("sealed under the service's root key");
    assert_eq!(opened.code_secret_key, key);
    // The owner's token is no credential of the service.
    let (status, _) = platform.get(&token, &format!("/keys/record?name={}", url_escape(&name)));
    assert_eq!(status, 401);

    // Deployed again: a later policy of the same owner key replaces it.
    let again = deploy_ok(&platform, &owner, &app, &["--keep-running", "-y"]);
    assert!(
        again["key_service"]["policy_version"].as_u64() > kept["policy_version"].as_u64(),
        "{again}"
    );

    // A ticket is good once: the same provisioning again is refused.
    let id = again["uuid"].as_str().unwrap();
    let (status, ticket) = platform.post(&token, &format!("/apps/{id}/keep-running"), Value::Null);
    assert_eq!(status, 200, "{ticket}");
    let signed = signed_policy(&platform, &token, id, 1, 7);
    let body = serde_json::json!({
        "ticket": ticket["ticket"],
        "policy": signed,
        "code_secret_key": "11".repeat(32),
    });
    // An older version by another key than the app name's owner key: refused.
    let (status, text) = provision(&platform, &body);
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("signed by another key"), "{text}");
    let (status, text) = provision(&platform, &body);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("ticket"), "{text}");
}

#[test]
fn a_policy_for_another_owner_s_app_is_refused_whatever_ticket_comes_with_it() {
    let platform = Platform::start();
    running_service(&platform);
    let (alice, alice_token) = user(&platform, "alice");
    let alice_app = secrets_app(&alice, false);
    let alice_out = deploy_ok(&platform, &alice, &alice_app, &["--keep-running"]);
    let (bob, bob_token) = user(&platform, "bob");
    let bob_app = secrets_app(&bob, false);
    let bob_out = deploy_ok(&platform, &bob, &bob_app, &[]);
    // Bob signs a policy naming Alice's app, with a ticket for his own.
    let (status, ticket) = platform.post(
        &bob_token,
        &format!("/apps/{}/keep-running", bob_out["uuid"].as_str().unwrap()),
        Value::Null,
    );
    assert_eq!(status, 200, "{ticket}");
    let alice_id = alice_out["uuid"].as_str().unwrap();
    let forged = signed_policy(&platform, &alice_token, alice_id, u64::MAX / 2, 9);
    let (status, text) = provision(
        &platform,
        &serde_json::json!({
            "ticket": ticket["ticket"],
            "policy": forged,
            "code_secret_key": "22".repeat(32),
        }),
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("the policy is for"), "{text}");
    // Bob cannot get a ticket for Alice's app either.
    let (status, _) = platform.post(
        &bob_token,
        &format!("/apps/{alice_id}/keep-running"),
        Value::Null,
    );
    assert_eq!(status, 404);
}

/// A policy for app `id` (of the owner of `token`) at `version`, signed by
/// a key made from `seed` (not the owner's own key).
fn signed_policy(platform: &Platform, token: &str, id: &str, version: u64, seed: u8) -> Value {
    let (_, me) = platform.get(token, "/me");
    let (_, app) = platform.get(token, &format!("/apps/{id}"));
    let policy = mse_keys::Policy::new(
        mse_keys::AppName {
            owner: me["id"].as_str().unwrap().to_string(),
            project: app["project"].as_str().unwrap().to_string(),
            name: app["name"].as_str().unwrap().to_string(),
        },
        version,
        vec![mse_keys::Rule::Fingerprint {
            fingerprint: app["fingerprint"]
                .as_str()
                .unwrap_or(&"00".repeat(32))
                .to_string(),
        }],
        vec![mse_api::tee::Tee::Simulation],
    );
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    serde_json::to_value(policy.sign(&key).unwrap()).unwrap()
}

fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

/// The app's state on the platform, as its owner's token reads it.
fn app_state(platform: &Platform, token: &str, id: &str) -> Value {
    let (status, app) = platform.get(token, &format!("/apps/{id}"));
    assert_eq!(status, 200, "{app}");
    app
}

/// A platform whose key service runs, and an owner who deployed the
/// secrets example there with `args` (its home kept when `persistent`).
struct Kept {
    platform: Platform,
    owner: TestContext,
    token: String,
    app: std::path::PathBuf,
    out: Value,
}

fn kept_deployment(persistent: bool, args: &[&str]) -> Kept {
    let platform = Platform::start();
    running_service(&platform);
    let (owner, token) = user(&platform, "owner");
    let app = secrets_app(&owner, persistent);
    let out = deploy_ok(&platform, &owner, &app, args);
    Kept {
        platform,
        owner,
        token,
        app,
        out,
    }
}

/// The owner's signing key, as `mse` keeps it for `owner`.
fn owner_signing_key(owner: &TestContext) -> ed25519_dalek::SigningKey {
    let seed = std::fs::read_to_string(owner.root.path().join("home/conf/owner.key")).unwrap();
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(seed.trim(), &mut bytes).unwrap();
    ed25519_dalek::SigningKey::from_bytes(&bytes)
}

/// Waits (60 s at most) until the key service refused kept app `id`'s
/// node; the app, then.
fn keys_refused(platform: &Platform, token: &str, id: &str) -> Value {
    wait::until(
        "the key service refuses the restarted node",
        Duration::from_secs(60),
        || {
            let app = app_state(platform, token, id);
            app["rescheduled"]
                .as_str()
                .is_some_and(|n| n.contains("keys refused by the key service"))
                .then_some(app)
        },
    )
}

#[test]
fn a_kept_app_whose_node_is_lost_serves_again_with_its_secrets_without_its_owner() {
    let Kept {
        mut platform,
        token,
        out,
        ..
    } = kept_deployment(false, &["--keep-running"]);
    let id = out["uuid"].as_str().unwrap().to_string();
    let fingerprint = out["fingerprint"].as_str().unwrap().to_string();
    let domain = out["domain_name"].as_str().unwrap().to_string();
    assert_eq!(app_state(&platform, &token, &id)["keep_running"], true);

    // The platform dies with every node it ran; it comes back on its own
    // folder, and nobody runs `mse` for the app.
    let crashed = std::time::Instant::now();
    platform.crash_and_restart(|_| {});
    let back = wait::until("the kept app runs again", Duration::from_secs(60), || {
        let app = app_state(&platform, &token, &id);
        (app["status"] == "running").then_some(app)
    });
    eprintln!(
        "the kept app runs again {:.2} s after the platform crashed",
        crashed.elapsed().as_secs_f64()
    );
    let note = back["rescheduled"].as_str().unwrap_or_default();
    assert!(note.contains("rescheduled from local: node lost"), "{back}");
    assert!(note.contains("keys released by the key service"), "{back}");
    assert_eq!(back["domain_name"], domain.as_str());

    // An app user verifies the new node against the same fingerprint, then
    // reads the secret it was configured with.
    let port = proxy_port(&platform);
    let user_ctx = TestContext::new();
    let (_, revoked) = platform.get("", "/simulation-revoked");
    let revoked_file = user_ctx.write("revoked.json", &revoked.to_string());
    let output = user_ctx
        .mse()
        .args([
            "verify",
            &format!("{domain}:{port}"),
            "--fingerprint",
            &fingerprint,
            "--signer-key",
        ])
        .arg(platform.data_dir().join("signer.pub"))
        .arg("--simulation-ca")
        .arg(platform.data_dir().join("simulation-ca.pem"))
        .arg("--simulation-revoked")
        .arg(&revoked_file)
        .args(["--allow-simulation", "--json"])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let pem = std::fs::read_to_string(user_ctx.work().join("cert.pem")).unwrap();
    let (status, body) =
        common::deploy::https_get(common::deploy::pinned(&pem), &domain, port, "/greeting");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Bonjour"), "{body}");
    assert!(platform.output().contains("released the keys of app"));
    assert!(!platform.output().contains("k-4f1c2a9e"));
}

#[test]
fn a_restarted_node_the_policy_does_not_admit_gets_nothing_and_the_owner_is_told_why() {
    let Kept {
        mut platform,
        owner,
        token,
        out,
        ..
    } = kept_deployment(false, &["--keep-running"]);
    let id = out["uuid"].as_str().unwrap().to_string();
    // The owner narrows the policy with their own key: hardware only.
    let key = owner_signing_key(&owner);
    let (_, me) = platform.get(&token, "/me");
    let mut policy = mse_keys::Policy::new(
        mse_keys::AppName {
            owner: me["id"].as_str().unwrap().into(),
            project: "default".into(),
            name: "secrets-example".into(),
        },
        u64::MAX / 2,
        vec![mse_keys::Rule::Fingerprint {
            fingerprint: out["fingerprint"].as_str().unwrap().into(),
        }],
        vec![mse_api::tee::Tee::Tdx],
    );
    policy.tcb_statuses = vec!["UpToDate".into()];
    let (status, ticket) = platform.post(&token, &format!("/apps/{id}/keep-running"), Value::Null);
    assert_eq!(status, 200, "{ticket}");
    let key_hex = code_key(&owner, &out);
    let (status, text) = provision(
        &platform,
        &serde_json::json!({
            "ticket": ticket["ticket"],
            "policy": serde_json::to_value(policy.sign(&key).unwrap()).unwrap(),
            "code_secret_key": key_hex,
            "app_secrets": {"api_key": "k-4f1c2a9e", "greeting": "Bonjour"},
        }),
    );
    assert_eq!(status, 200, "{text}");

    platform.crash_and_restart(|_| {});
    let refused = keys_refused(&platform, &token, &id);
    let note = refused["rescheduled"].as_str().unwrap();
    assert!(
        note.contains("the node runs in simulation; the policy admits tdx"),
        "{note}"
    );
    // The node waits for a configuration that does not come.
    assert_eq!(refused["status"], "initializing", "{refused}");
}

/// `POST /handover` to the key service through the proxy, as a client
/// showing `identity` (certificate DER, key PEM) or none.
fn handover(platform: &Platform, identity: Option<(&[u8], &str)>) -> (u16, String) {
    let port = proxy_port(platform);
    let served = served_certificate("keys.localhost", port);
    let tls = match identity {
        Some((cert, key)) => mse_attest::pin::client_config_with_identity(
            &served,
            cert,
            rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            mse_attest::tls::HTTP1,
        )
        .unwrap(),
        None => mse_attest::pin::client_config(&served, mse_attest::tls::HTTP1),
    };
    let client = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve(
            "keys.localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let response = client
        .post(format!("https://keys.localhost:{port}/handover"))
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().unwrap_or_default())
}

#[test]
fn the_root_key_is_handed_to_no_client_that_is_not_an_attested_replica() {
    let platform = Platform::start();
    running_service(&platform);
    wait::until(
        "the service holds its root key",
        Duration::from_secs(30),
        || {
            let (_, info) = platform.get("", "/keys");
            (info["replicas"][0]["holds_root"] == true).then_some(())
        },
    );
    let root = std::fs::read(platform.nodes_dir().join("key-service/service/root.key")).unwrap();
    let root_hex = hex::encode(&root);

    // No client certificate: refused before anything else.
    let (status, body) = handover(&platform, None);
    assert_eq!(status, 401, "{body}");
    // A certificate of its own, with no evidence: refused.
    let own = rcgen::generate_simple_self_signed(vec!["keys.localhost".to_string()]).unwrap();
    let (status, body) = handover(
        &platform,
        Some((own.cert.der().as_ref(), &own.signing_key.serialize_pem())),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not a replica of this key service"), "{body}");
    // The RA-TLS certificate of an app's node, with its key (what the
    // app's node holds): its evidence verifies, but for the app's
    // fingerprint, not the key service's measurement.
    let (owner, _) = user(&platform, "owner");
    let app = owner.scaffold("plain");
    let out = deploy_ok(&platform, &owner, &app, &[]);
    let id = out["uuid"].as_str().unwrap();
    let node_dir = platform.nodes_dir().join(id);
    let key = mse_testkit::files_under(&node_dir)
        .into_iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find(|t| {
            t.contains("PRIVATE KEY")
                && rustls::pki_types::PrivateKeyDer::from_pem_slice(t.as_bytes()).is_ok()
        })
        .expect("the node's RA-TLS key in its folder");
    let cert = mse_attest::ratls::pem_to_der(
        std::fs::read_to_string(out["cert_path"].as_str().unwrap())
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let (status, body) = handover(&platform, Some((&cert, &key)));
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains(&root_hex));
    assert!(!platform.output().contains(&root_hex));
}

/// The median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[test]
fn a_persistent_app_keeps_its_home_encrypted_across_a_platform_crash() {
    let mut platform = Platform::start();
    running_service(&platform);
    let (owner, token) = user(&platform, "owner");
    // `[storage] persistent = true` implies --keep-running.
    let out = deploy_ok(&platform, &owner, &secrets_app(&owner, true), &[]);
    let id = out["uuid"].as_str().unwrap().to_string();
    let domain = out["domain_name"].as_str().unwrap().to_string();
    let app = app_state(&platform, &token, &id);
    assert_eq!(app["keep_running"], true, "{app}");
    assert_eq!(app["storage"]["cap_bytes"], 16 * 1024 * 1024, "{app}");
    assert_eq!(count_kept(&platform, &token, &id, &domain, COUNT), COUNT);

    // What persistence costs a request: the same app without it, another
    // owner's, answers the same calls (each on a new TLS connection).
    let (other, _) = user(&platform, "other");
    let plain = deploy_ok(&platform, &other, &secrets_app(&other, false), &[]);
    let plain_domain = plain["domain_name"].as_str().unwrap().to_string();
    let timed = |domain: &str| {
        median(
            (0..30)
                .map(|_| {
                    let started = std::time::Instant::now();
                    count(&platform, domain, 1);
                    started.elapsed()
                })
                .collect(),
        )
    };
    let (kept, not_kept) = (timed(&domain), timed(&plain_domain));
    eprintln!(
        "POST /count, median of 30: {:.1} ms with persistent storage, {:.1} ms without",
        kept.as_secs_f64() * 1000.0,
        not_kept.as_secs_f64() * 1000.0
    );
    let before_crash = count_kept(&platform, &token, &id, &domain, 1);
    let output = owner.mse().args(["status", &id]).output().unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("persistent $HOME"), "{stdout}");
    assert!(stdout.contains("of 16.8 MB kept encrypted"), "{stdout}");

    // The platform dies with every node; the app comes back by itself with
    // its home as the platform last held it.
    platform.crash_and_restart(|_| {});
    wait::until("the app runs again", Duration::from_secs(60), || {
        (app_state(&platform, &token, &id)["status"] == "running").then_some(())
    });
    let restored = count(&platform, &domain, 1);
    assert!(
        [before_crash + 1, before_crash + 2].contains(&restored),
        "the counter is {restored} after the crash; {before_crash} or one more was kept"
    );
    // Nothing of it in the clear in the platform's folder.
    for n in [COUNT, before_crash, before_crash + 1] {
        assert_nowhere_in(
            platform.data_dir().as_path(),
            n.to_string().as_bytes(),
            "the app's data",
        );
    }
}

/// Waits (90 s at most) until kept app `id` runs again with the keys the
/// key service released; the app.
fn released_again(platform: &Platform, token: &str, id: &str) -> Value {
    let back = wait::until("the kept app runs again", Duration::from_secs(90), || {
        let app = app_state(platform, token, id);
        (app["status"] == "running").then_some(app)
    });
    assert!(
        back["rescheduled"]
            .as_str()
            .unwrap_or_default()
            .contains("keys released by the key service"),
        "{back}"
    );
    back
}

/// `mse-server keys …` (a tool: no server).
fn keys_tool(args: &[&str]) -> String {
    let output = std::process::Command::new(mse_testkit::workspace_binary("mse-server"))
        .arg("keys")
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(
        output.status.success(),
        "mse-server keys {args:?}: {stderr}"
    );
    stdout.trim().to_string()
}

#[test]
fn after_every_replica_lost_the_root_key_its_holders_shares_recover_it() {
    // Three holders make their keys on their own machines; any two recover.
    let holders = tempfile::tempdir().unwrap();
    let public: Vec<String> = (0..3)
        .map(|i| {
            let out = holders.path().join(format!("holder-{i}.key"));
            keys_tool(&["holder-key", "--out", out.to_str().unwrap()])
        })
        .collect();
    let recovery = |command: &mut std::process::Command| {
        for key in &public {
            command.args(["--recovery-holder", key]);
        }
        command.args(["--recovery-threshold", "2"]);
    };
    let mut platform = Platform::start_with(recovery);
    running_service(&platform);
    let root_file = platform.nodes_dir().join("key-service/service/root.key");
    let root = hex::encode(std::fs::read(&root_file).unwrap());

    // The platform keeps one sealed share per holder: nothing it can open.
    let (status, sealed) = platform.get(&platform.admin, "/keys/recovery-shares");
    assert_eq!(status, 200, "{sealed}");
    let shares: Vec<String> = sealed["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(shares.len(), 3, "{sealed}");
    let (owner, token) = user(&platform, "owner");
    let (status, _) = platform.get(&token, "/keys/recovery-shares");
    assert_eq!(status, 403, "an owner reads no shares");
    assert!(!sealed.to_string().contains(&root));
    assert_nowhere_in(
        platform.data_dir().as_path(),
        b"mse-recovery-v1",
        "an opened share",
    );

    // An app whose keys the service keeps.
    let out = deploy_ok(
        &platform,
        &owner,
        &secrets_app(&owner, false),
        &["--keep-running"],
    );
    let id = out["uuid"].as_str().unwrap().to_string();

    // Every replica loses the root key (the only one here: its folder is
    // wiped while the platform is down); the kept app waits.
    platform.crash_and_restart(|command| {
        wait::until("the key service ended", Duration::from_secs(20), || {
            processes_naming("--key-service").is_empty().then_some(())
        });
        std::fs::remove_file(&root_file).unwrap();
        recovery(command);
    });
    wait::until(
        "the replica waits for the root key",
        Duration::from_secs(30),
        || {
            let (_, info) = platform.get("", "/keys");
            (info["replicas"][0]["live"] == true && info["running"] == false).then_some(())
        },
    );
    assert!(!root_file.exists());
    // The platform listens on new ports.
    common::platform::login(&platform, &owner, &token, true);

    // Two holders open their shares; one share is not enough, and
    // nothing changes.
    let opened: Vec<String> = (0..2)
        .map(|i| {
            let key = holders.path().join(format!("holder-{i}.key"));
            keys_tool(&[
                "open-share",
                "--secret-key",
                key.to_str().unwrap(),
                &shares[i],
            ])
        })
        .collect();
    let wrong = holders.path().join("holder-2.key");
    let output = std::process::Command::new(mse_testkit::workspace_binary("mse-server"))
        .args([
            "keys",
            "open-share",
            "--secret-key",
            wrong.to_str().unwrap(),
            &shares[0],
        ])
        .output()
        .unwrap();
    assert!(!output.status.success(), "holder 3 opened holder 1's share");
    let recover = |lines: &[String]| {
        let file = owner.write("shares.txt", &lines.join("\n"));
        owner
            .mse()
            .args(["keys", "recover", "--allow-simulation", "--shares-file"])
            .arg(file)
            .output()
            .unwrap()
    };
    let output = recover(&opened[..1]);
    let (stdout, stderr) = texts(&output);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stderr.contains("1 share(s) given; this split needs 2"),
        "{stderr}"
    );
    assert!(!root_file.exists());

    // Two shares: the root key is back, and so is the kept app.
    let output = recover(&opened);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("recovered root key"), "{stdout}");
    assert_eq!(hex::encode(std::fs::read(&root_file).unwrap()), root);
    running_service(&platform);
    released_again(&platform, &token, &id);
    assert!(!platform.output().contains(&root));
}

#[test]
fn mse_policy_edit_narrows_then_widens_what_receives_a_kept_app_s_keys() {
    let mut platform = Platform::start();
    running_service(&platform);
    let (owner, token) = user(&platform, "owner");
    let out = deploy_ok(
        &platform,
        &owner,
        &secrets_app(&owner, false),
        &["--keep-running"],
    );
    let id = out["uuid"].as_str().unwrap().to_string();
    let fingerprint = out["fingerprint"].as_str().unwrap().to_string();
    let policy = |args: &[&str]| {
        let output = owner.mse().arg("policy").args(args).output().unwrap();
        let (stdout, stderr) = texts(&output);
        assert!(
            output.status.success(),
            "mse policy {args:?}: {stdout}{stderr}"
        );
        stdout
    };
    let shown = policy(&["show", "secrets-example"]);
    assert!(
        shown.contains(&format!("fingerprint {fingerprint}")),
        "{shown}"
    );
    assert!(shown.contains("tees          simulation"), "{shown}");

    // Hardware only: after the platform crashes, its simulated node gets
    // nothing, and the owner reads why.
    let narrowed = policy(&[
        "edit",
        "secrets-example",
        "--tee",
        "tdx",
        "--tcb-status",
        "UpToDate",
        "--allow-simulation",
    ]);
    assert!(narrowed.contains("policy version"), "{narrowed}");
    assert!(policy(&["show", "secrets-example"]).contains("tees          tdx"));
    platform.crash_and_restart(|_| {});
    common::platform::login(&platform, &owner, &token, true);
    let refused = keys_refused(&platform, &token, &id);
    assert!(
        refused["rescheduled"].as_str().unwrap().contains("tdx"),
        "{refused}"
    );
    assert_ne!(refused["status"], "running");

    // Simulation again: the waiting node receives the keys.
    policy(&[
        "edit",
        "secrets-example",
        "--tee",
        "simulation",
        "--tcb-status",
        "Simulation",
        "--allow-simulation",
    ]);
    released_again(&platform, &token, &id);
}

#[test]
fn a_new_version_deployed_with_keep_secrets_gets_the_kept_secrets_and_data() {
    let Kept {
        platform,
        owner,
        token,
        app,
        out: first,
    } = kept_deployment(true, &["--keep-running"]);
    let first_id = first["uuid"].as_str().unwrap().to_string();
    let first_domain = first["domain_name"].as_str().unwrap().to_string();
    assert_eq!(
        count_kept(&platform, &token, &first_id, &first_domain, COUNT),
        COUNT
    );

    // Version 2: new code; the secrets file here is not the one kept (and
    // is neither read nor sent).
    let code = app.join("mse_src/app.py");
    let mut text = std::fs::read_to_string(&code).unwrap();
    text.push_str("\n\n@app.get(\"/version\")\ndef version():\n    return \"2\"\n");
    std::fs::write(&code, text).unwrap();
    std::fs::write(
        app.join("secrets.json"),
        r#"{"api_key": "not-the-kept-one", "greeting": "Hola"}"#,
    )
    .unwrap();
    let second = deploy_ok(&platform, &owner, &app, &["--keep-secrets", "--yes"]);
    let id = second["uuid"].as_str().unwrap().to_string();
    let domain = second["domain_name"].as_str().unwrap().to_string();
    assert_ne!(id, first_id);
    assert_ne!(second["fingerprint"], first["fingerprint"]);
    assert_eq!(app_state(&platform, &token, &first_id)["status"], "stopped");
    let port = proxy_port(&platform);
    let get = |path: &str| {
        common::deploy::https_get(
            common::deploy::pinned(&served_pem(&domain, &platform)),
            &domain,
            port,
            path,
        )
    };
    assert_eq!(get("/version"), (200, "2".to_string()));
    let (status, greeting) = get("/greeting");
    assert_eq!(status, 200, "{greeting}");
    assert!(greeting.contains("Bonjour"), "the kept secret: {greeting}");
    // Its home is the first version's, as written back when it stopped.
    let counted = count(&platform, &domain, 1);
    assert!(
        [COUNT + 1, COUNT + 2].contains(&counted),
        "the counter is {counted} after the upgrade"
    );
    assert!(!platform.output().contains("not-the-kept-one"));
}

#[test]
fn mse_rotate_renews_the_code_key_secrets_and_storage_key_and_the_data_follows() {
    let Kept {
        platform,
        owner,
        token,
        app,
        out: first,
    } = kept_deployment(true, &[]);
    let first_id = first["uuid"].as_str().unwrap().to_string();
    let domain = first["domain_name"].as_str().unwrap().to_string();
    assert_eq!(
        count_kept(&platform, &token, &first_id, &domain, COUNT),
        COUNT
    );
    let port = proxy_port(&platform);
    let greeting = |domain: &str| {
        let (status, body) = common::deploy::https_get(
            common::deploy::pinned(&served_pem(domain, &platform)),
            domain,
            port,
            "/greeting",
        );
        assert_eq!(status, 200, "{body}");
        body
    };
    assert!(greeting(&domain).contains("Bonjour"));
    let first_key = code_key(&owner, &first);

    // New secrets and a new storage key (and, as always, a new code key).
    std::fs::write(
        app.join("secrets.json"),
        r#"{"api_key": "k-rotated-71", "greeting": "Hola"}"#,
    )
    .unwrap();
    let second = common::deploy::json_ok(
        &platform,
        &owner,
        &app,
        "rotate",
        &["--secrets", "--storage-key"],
    );
    let second_id = second["uuid"].as_str().unwrap().to_string();
    eprintln!(
        "mse rotate --secrets --storage-key, step timings: {}",
        second["timings"]
    );
    assert_ne!(second_id, first_id);
    assert_eq!(second["domain_name"], domain.as_str(), "{second}");
    assert_eq!(app_state(&platform, &token, &first_id)["status"], "stopped");
    let rotated = &second["key_service"]["rotated"];
    assert_eq!(rotated["code_key"], true, "{second}");
    assert_eq!(rotated["secrets"], true, "{second}");
    assert_eq!(rotated["storage_key"], true, "{second}");
    assert_ne!(code_key(&owner, &second), first_key);
    // The home the new node wrote back is its own (under the new key).
    let state = app_state(&platform, &token, &second_id);
    assert_eq!(
        state["storage"]["written_by"],
        second_id.as_str(),
        "{state}"
    );
    assert!(greeting(&domain).contains("Hola"));
    let counted = count_kept(&platform, &token, &second_id, &domain, 1);
    assert!(
        [COUNT + 1, COUNT + 2].contains(&counted),
        "the counter is {counted} after the rotation"
    );

    // Rotating the storage key again: the next node gets the newest key and
    // the one before, so it opens the home only if the first rotation
    // really resealed it. The local secrets are not sent this time.
    std::fs::write(
        app.join("secrets.json"),
        r#"{"api_key": "k-not-sent-93", "greeting": "Ciao"}"#,
    )
    .unwrap();
    let third = common::deploy::json_ok(&platform, &owner, &app, "rotate", &["--storage-key"]);
    let third_id = third["uuid"].as_str().unwrap().to_string();
    assert_eq!(third["key_service"]["rotated"]["secrets"], false, "{third}");
    assert!(third["key_service"]["rotated"]["storage_version"]
        .as_u64()
        .is_some());
    assert!(greeting(&domain).contains("Hola"), "the kept secrets");
    let again = count(&platform, &domain, 1);
    assert!(
        [counted + 1, counted + 2].contains(&again),
        "the counter is {again} after the second rotation; {counted} or one more was kept"
    );
    assert_eq!(
        app_state(&platform, &token, &third_id)["storage"]["written_by"],
        third_id.as_str()
    );
    assert!(!platform.output().contains("k-rotated-71"));
    assert!(!platform.output().contains("k-not-sent-93"));

    // An app without persistent storage has no storage key to rotate: said
    // before anything is uploaded.
    let elsewhere = TestContext::new();
    let plain = secrets_app(&elsewhere, false);
    let (code, _, stderr) =
        common::deploy::run_in(&owner, &plain, &["rotate", "--storage-key", "--json"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("keeps no persistent storage"), "{stderr}");
    assert_eq!(app_state(&platform, &token, &third_id)["status"], "running");
}

#[test]
fn a_node_whose_fingerprint_the_policy_no_longer_admits_gets_nothing_and_an_older_policy_stays_out()
{
    let Kept {
        mut platform,
        owner,
        token,
        out,
        ..
    } = kept_deployment(false, &["--keep-running"]);
    let id = out["uuid"].as_str().unwrap().to_string();
    let deployed: Value = serde_json::from_slice(
        &std::fs::read(
            owner
                .root
                .path()
                .join("home/conf/policies/default/secrets-example.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let signed = mse_keys::SignedPolicy::from_json(deployed.to_string().as_bytes()).unwrap();
    let mut policy = signed.verify().unwrap();

    // The owner's key signs a later version admitting another fingerprint
    // only (everything else as deployed).
    let key = owner_signing_key(&owner);
    let ticket = |platform: &Platform| {
        let (status, ticket) =
            platform.post(&token, &format!("/apps/{id}/keep-running"), Value::Null);
        assert_eq!(status, 200, "{ticket}");
        ticket["ticket"].clone()
    };
    let send = |policy: &mse_keys::Policy| {
        to_service(
            &platform,
            "/policy",
            &serde_json::json!({
                "ticket": ticket(&platform),
                "policy": serde_json::to_value(policy.sign(&key).unwrap()).unwrap(),
            }),
        )
    };
    policy.version += 1;
    policy.admit = vec![mse_keys::Rule::Fingerprint {
        fingerprint: "ab".repeat(32),
    }];
    let (status, text) = send(&policy);
    assert_eq!(status, 200, "{text}");
    let narrowed = policy.version;

    // Replayed: the deployment's own policy, genuinely signed, is older.
    let (status, text) = send(&signed.verify().unwrap());
    assert_eq!(status, 409, "{text}");
    // An `inputs` rule is refused: no release honours one.
    policy.version += 1;
    policy.admit = vec![mse_keys::Rule::Inputs {
        runtime_images: vec![out["docker"].as_str().unwrap_or("any").into()],
        app_domain: out["domain_name"].as_str().unwrap().into(),
        python_application: "app:app".into(),
    }];
    let (status, text) = send(&policy);
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("`inputs` rule"), "{text}");

    // Its node lost, the app's new node gets nothing: the policy in force
    // is the narrowed one.
    platform.crash_and_restart(|_| {});
    let refused = keys_refused(&platform, &token, &id);
    let note = refused["rescheduled"].as_str().unwrap();
    assert!(
        note.contains(&format!(
            "verifies for no fingerprint policy version {narrowed} admits"
        )),
        "{note}"
    );
    assert_eq!(refused["status"], "initializing", "{refused}");
    assert!(!platform.output().contains("k-4f1c2a9e"));
}
