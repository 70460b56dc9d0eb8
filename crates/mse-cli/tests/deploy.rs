//! `mse deploy` end to end: the real `mse`, `mse-server` and `mse-run`
//! binaries, real TLS through the platform's proxy, simulated quotes checked
//! against the platform's simulation CA. One test per trust mode, then the
//! rules a deployment goes through.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::deploy::*;
use common::platform::{login, Platform};
use common::{texts, TestContext};
use mse_testkit::wait;
use serde_json::{json, Value};

/// Fields `mse deploy --json` documents.
const DEPLOY_FIELDS: &[&str] = &[
    "uuid",
    "name",
    "project",
    "domain_name",
    "config_domain_name",
    "url",
    "status",
    "expires_at",
    "certificate_origin",
    "fingerprint",
    "verified",
    "cert_path",
    "context_path",
];

/// A logged-in owner (the platform's admin) with a scaffolded app.
fn owner(platform: &Platform, name: &str) -> (TestContext, PathBuf) {
    let ctx = TestContext::new();
    login(platform, &ctx, &platform.admin, true);
    let app = ctx.scaffold(name);
    (ctx, app)
}

#[test]
fn zero_trust_an_app_user_verifies_the_app_with_the_exported_context_and_altered_code_fails() {
    let platform = Platform::start();
    let (ctx, app) = owner(&platform, "helloworld");
    let out = deploy_ok(&platform, &ctx, &app, &[]);
    for field in DEPLOY_FIELDS {
        assert!(out.get(*field).is_some(), "--json lacks `{field}`: {out}");
    }
    assert_eq!(out["status"], "running");
    assert_eq!(out["certificate_origin"], "self");
    assert_eq!(out["verified"], true);
    assert_eq!(out["tee"], "simulation");
    let uuid = out["uuid"].as_str().unwrap();
    let url = out["url"].as_str().unwrap();
    assert_eq!(
        url,
        format!("https://{uuid}.localhost:{}", proxy_port(&platform))
    );

    // The owner calls the app with the certificate the deployment verified.
    let (status, _) = call_app(&platform, &out, "/health");
    assert_eq!(status, 200);
    let (status, body) = call_app(&platform, &out, "/");
    assert_eq!((status, body.as_str()), (200, "Hello world"));

    // An app user, with no account: the exported context, the plaintext
    // code and the platform's public signer key and simulation CA.
    let exported = ctx.work().join("helloworld.mse");
    run_in(
        &ctx,
        &ctx.work(),
        &[
            "context",
            "--export",
            uuid,
            "--output",
            &exported.to_string_lossy(),
        ],
    );
    assert!(exported.exists(), "the context was exported");
    let user = TestContext::new();
    let (_, signer) = platform.get("", "/signer");
    let (_, simulation_ca) = platform.get("", "/simulation-ca");
    let signer_path = user.write("signer.pub", signer.as_str().unwrap());
    let ca_path = user.write("simulation-ca.pem", simulation_ca.as_str().unwrap());
    let (_, revoked) = platform.get("", "/simulation-revoked");
    let revoked_path = user.write("revoked.json", &revoked.to_string());
    let code = user.work().join("code");
    std::fs::create_dir_all(&code).unwrap();
    for entry in std::fs::read_dir(app.join("mse_src")).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), code.join(entry.file_name())).unwrap();
        }
    }
    let target = url.trim_start_matches("https://");
    let verify = |user: &TestContext| {
        run_in(
            user,
            &user.work(),
            &[
                "verify",
                target,
                "--context",
                &exported.to_string_lossy(),
                "--code",
                &code.to_string_lossy(),
                "--signer-key",
                &signer_path.to_string_lossy(),
                "--simulation-ca",
                &ca_path.to_string_lossy(),
                "--simulation-revoked",
                &revoked_path.to_string_lossy(),
                "--allow-simulation",
                "--json",
            ],
        )
    };
    let (status, stdout, stderr) = verify(&user);
    assert_eq!(status, 0, "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(report["mr_enclave"], out["fingerprint"]);

    // One changed byte of code: the recomputed fingerprint no longer matches.
    let app_py = code.join("app.py");
    let mut text = std::fs::read_to_string(&app_py).unwrap();
    text.push_str("\n# changed\n");
    std::fs::write(&app_py, text).unwrap();
    let (status, stdout, _) = verify(&user);
    assert_eq!(status, 1, "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["mr_enclave"]);
}

#[test]
fn a_free_app_expires_four_hours_after_its_creation() {
    let platform = Platform::start();
    let (ctx, app) = owner(&platform, "freeapp");
    let out = deploy_ok(&platform, &ctx, &app, &[]);
    let stored = platform.app(&platform.admin, out["uuid"].as_str().unwrap());
    let created = stored["created_at"].as_i64().unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(out["expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert_eq!(expires - created, 4 * 3600);
    assert_eq!(stored["expires_at"].as_i64(), Some(expires));
}

#[test]
fn owner_mode_serves_the_owner_certificate_at_its_domain_and_its_key_never_reaches_the_platform() {
    let platform = Platform::start();
    let (ctx, app) = owner(&platform, "shop");
    let domain = "shop.example.test";

    let (ca_pem, key_pem) = owner_certificate_in(&app, domain);

    let out = deploy_ok(&platform, &ctx, &app, &[]);
    assert_eq!(out["certificate_origin"], "owner");
    assert_eq!(out["domain_name"], domain);
    assert_eq!(out["verified"], true);
    assert_eq!(out["cert_path"], Value::Null);
    assert_eq!(
        out["url"],
        format!("https://{domain}:{}", proxy_port(&platform))
    );

    // Reached at its own domain through the proxy, with the owner's CA.
    let (status, body) = https_get(trusting(&ca_pem), domain, proxy_port(&platform), "/");
    assert_eq!((status, body.as_str()), (200, "Hello world"));

    // The private key went to the verified node only: not in the
    // platform's data folder, not in its store.
    let marker: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    // Past the PKCS#8 prefix every P-256 key shares: the secret scalar.
    let needle = &marker.as_bytes()[64..104];
    assert_nowhere_in(&platform.data_dir(), needle, "the owner's private key");
}

#[test]
fn operator_mode_is_served_by_the_platform_with_its_operator_ca() {
    let platform = Platform::start();
    let (ctx, app) = owner(&platform, "behindproxy");
    let out = deploy_ok(&platform, &ctx, &app, &["--untrusted-ssl"]);
    assert_eq!(out["certificate_origin"], "operator");
    assert_eq!(out["verified"], true, "the node itself is still verified");
    let ca_path = out["cert_path"].as_str().unwrap();
    let (_, operator_ca) = platform.get("", "/operator-ca");
    assert_eq!(
        std::fs::read_to_string(ca_path).unwrap(),
        operator_ca.as_str().unwrap(),
        "the saved CA is the platform's operator CA"
    );
    let (status, body) = call_app(&platform, &out, "/");
    assert_eq!((status, body.as_str()), (200, "Hello world"));
}

#[test]
fn redeploying_a_name_is_refused_without_a_terminal_and_replaced_with_yes_keeping_the_domain() {
    let platform = Platform::start();
    let (ctx, app) = owner(&platform, "again");
    let first = deploy_ok(&platform, &ctx, &app, &[]);
    let first_id = first["uuid"].as_str().unwrap();

    let (code, stdout, stderr) = run_in(&ctx, &app, &["deploy"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("pass -y to replace it"), "{stderr}");
    assert!(stderr.contains(first_id), "{stderr}");
    assert_eq!(platform.app(&platform.admin, first_id)["status"], "running");

    let second = deploy_ok(&platform, &ctx, &app, &["-y"]);
    assert_ne!(second["uuid"], first["uuid"]);
    assert_eq!(
        second["domain_name"], first["domain_name"],
        "the domain is kept"
    );
    assert_eq!(platform.app(&platform.admin, first_id)["status"], "stopped");
    assert!(
        !ctx.root
            .path()
            .join("home/conf/context")
            .join(first_id)
            .exists(),
        "the replaced app's context is removed"
    );
    // The domain now leads to the new app.
    let (status, _) = call_app(&platform, &second, "/health");
    assert_eq!(status, 200);

    // The URL is the kept domain, and says so; the new uuid's name, which
    // the certificate does not name, leads nowhere once the app runs.
    let second_id = second["uuid"].as_str().unwrap();
    assert_eq!(
        second["config_domain_name"],
        format!("{second_id}.localhost")
    );
    let pem = std::fs::read_to_string(second["cert_path"].as_str().unwrap()).unwrap();
    let own_name = second["config_domain_name"].as_str().unwrap();
    // A proxy's load of the store that began before the app ran may route
    // it for one more load (200 ms).
    wait::until(
        &format!("{own_name} leads nowhere"),
        Duration::from_secs(2),
        || match try_https_get(pinned(&pem), own_name, proxy_port(&platform), "/health") {
            Err(e) if e.contains("UnrecognisedName") => Ok(()),
            other => Err(format!("{own_name} still answers: {other:?}")),
        },
    );
    let (code, stdout, stderr) = run_in(&ctx, &app, &["status", second_id]);
    assert_eq!(code, 0, "{stderr}");
    let url = second["url"].as_str().unwrap();
    assert!(
        stdout.contains(&format!(
            "{url} (the domain of the first deployment of `again`"
        )),
        "{stdout}"
    );
    let (code, stdout, stderr) = run_in(&ctx, &app, &["deploy", "-y"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "  URL          {url}\n               (the domain of the first deployment of `again`"
        )),
        "{stdout}"
    );
}

const SECRETS_APP: &str = r#"import json
import os

import six  # from requirements.txt
from flask import Flask

app = Flask(__name__)


@app.route("/health")
def health():
    return ""


@app.route("/secrets")
def secrets():
    with open(os.environ["SECRETS_PATH"]) as f:
        return {"secrets": json.load(f), "six": six.__version__}
"#;

#[test]
fn secrets_reach_the_app_and_its_requirements_are_installed() {
    let platform = Platform::start();
    let (ctx, app) = owner(&platform, "withsecrets");
    std::fs::write(app.join("mse_src/app.py"), SECRETS_APP).unwrap();
    std::fs::write(app.join("mse_src/requirements.txt"), "six==1.16.0\n").unwrap();
    let secrets = json!({"api_key": "k-3c1e7d", "nested": {"n": 1}});
    std::fs::write(app.join("secrets.json"), secrets.to_string()).unwrap();
    let mut toml = std::fs::read_to_string(app.join("mse.toml")).unwrap();
    toml = toml.replace(
        "healthcheck_endpoint = \"/health\"",
        "healthcheck_endpoint = \"/health\"\nsecrets = \"secrets.json\"",
    );
    std::fs::write(app.join("mse.toml"), toml).unwrap();

    let out = deploy_ok(&platform, &ctx, &app, &[]);
    let (status, body) = call_app(&platform, &out, "/secrets");
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["secrets"], secrets);
    assert_eq!(seen["six"], "1.16.0");
    assert_nowhere_in(&platform.data_dir(), b"k-3c1e7d", "a secret");
}

#[test]
fn an_app_that_fails_to_start_fails_the_deploy_at_once_and_its_log_outlives_its_node() {
    let platform = Platform::start();
    let (ctx, app) = owner(&platform, "broken");
    std::fs::write(
        app.join("mse_src/app.py"),
        "from flask import Flask\nraise RuntimeError('boom at import')\napp = Flask(__name__)\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run_in(&ctx, &app, &["deploy"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("on_error"), "{stderr}");
    assert!(
        stderr.contains("boom at import"),
        "the app's logs are shown: {stderr}"
    );
    let (_, apps) = platform.get(&platform.admin, "/apps");
    let id = apps[0]["id"].as_str().unwrap();
    assert_eq!(apps[0]["status"], "on_error");
    assert!(
        stderr.contains(&format!("remove it with `mse remove {id}`")),
        "the user is told how to clean up: {stderr}"
    );
    assert!(
        !stderr.contains("mse stop"),
        "a failed app has nothing to stop: {stderr}"
    );

    // The node's folder goes; `mse logs` still explains the failure.
    platform.wait_node_dir_gone(id);
    let (code, stdout, stderr) = run_in(&ctx, &app, &["logs", id]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("RuntimeError: boom at import"), "{stdout}");
    assert!(
        stdout.contains("[mse-run] error: the app exited"),
        "{stdout}"
    );
}

#[test]
fn a_node_that_fails_verification_is_stopped_and_the_name_is_free_for_the_next_deploy() {
    use rsa::pkcs8::EncodePublicKey as _;
    let platform = Platform::start();
    let (ctx, app) = owner(&platform, "impostor");
    // The profile expects another platform's enclave-signing key: this
    // platform's node fails the MRSIGNER check.
    let profile_path = ctx.root.path().join("home/conf/login.toml");
    let genuine = std::fs::read_to_string(&profile_path).unwrap();
    let mut profile: toml::Table = toml::from_str(&genuine).unwrap();
    let other = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 3072).unwrap();
    let other_pem = other
        .to_public_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    profile.insert("signer_key".into(), other_pem.into());
    std::fs::write(&profile_path, toml::to_string(&profile).unwrap()).unwrap();

    let (code, stdout, stderr) = run_in(&ctx, &app, &["deploy"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("failed verification, so it was sent nothing"),
        "{stderr}"
    );
    assert!(stderr.contains("mr_signer: MRSIGNER"), "{stderr}");
    assert!(stderr.contains("the node was stopped"), "{stderr}");
    let (_, apps) = platform.get(&platform.admin, "/apps");
    let id = apps[0]["id"].as_str().unwrap();
    assert_eq!(apps[0]["status"], "stopped", "{apps}");
    assert!(
        stderr.contains(&format!("remove it with `mse remove {id}`")),
        "{stderr}"
    );
    assert!(!stderr.contains("mse stop"), "{stderr}");

    // With the genuine key again, the next deploy of the name needs no -y.
    std::fs::write(&profile_path, genuine).unwrap();
    let out = deploy_ok(&platform, &ctx, &app, &[]);
    assert_eq!(out["status"], "running");
}

#[test]
fn an_app_on_a_short_resource_is_stopped_at_its_expiry_and_status_says_so() {
    let platform = Platform::start();
    let (status, body) = platform.post(
        &platform.admin,
        "/resources",
        json!({"name": "short", "memory_mb": 512, "cores": 1, "enclave_size": "1G", "default_hours": 1}),
    );
    assert_eq!(status, 201, "{body}");
    let (_, me) = platform.get(&platform.admin, "/me");
    let (status, body) = platform.post(
        &platform.admin,
        &format!("/users/{}/grants", me["id"].as_str().unwrap()),
        json!({"resource": "short"}),
    );
    assert!(
        status == 200 || status == 201 || status == 204,
        "{status} {body}"
    );

    let (ctx, app) = owner(&platform, "brief");
    let expiry = chrono::Utc::now() + chrono::Duration::seconds(25);
    let mut toml = std::fs::read_to_string(app.join("mse.toml")).unwrap();
    toml = toml.replace(
        "resource = \"free\"",
        &format!(
            "resource = \"short\"\nexpiration_date = \"{}\"",
            expiry.format("%Y-%m-%d %H:%M:%S")
        ),
    );
    std::fs::write(app.join("mse.toml"), toml).unwrap();
    let out = deploy_ok(&platform, &ctx, &app, &[]);
    let uuid = out["uuid"].as_str().unwrap();
    assert_eq!(out["status"], "running");

    let stopped = platform.wait_app(&platform.admin, uuid, Duration::from_secs(90), |a| {
        a["status"] == "stopped" || a["status"] == "on_error"
    });
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    assert!(stopped["stopped_at"].as_i64().unwrap() >= expiry.timestamp());
    let (code, stdout, stderr) = run_in(&ctx, &ctx.work(), &["status", uuid]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("stopped"), "{stdout}");
    assert!(stdout.contains("expired"), "the status says why: {stdout}");
}

#[test]
fn refused_deployments_say_why_and_leave_nothing_running() {
    let platform = Platform::start();
    let (ctx, app) = owner(&platform, "refused");
    let original = std::fs::read_to_string(app.join("mse.toml")).unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "unlisted image",
            "docker = \"ghcr.io/cosmian/mse-flask:20230124182826\"",
            "docker = \"ghcr.io/example/unknown:1.0\"",
        ),
        (
            ":latest image",
            "docker = \"ghcr.io/cosmian/mse-flask:20230124182826\"",
            "docker = \"ghcr.io/cosmian/mse-flask:latest\"",
        ),
        (
            "unknown project",
            "project = \"default\"",
            "project = \"nowhere\"",
        ),
        (
            "ungranted resource",
            "resource = \"free\"",
            "resource = \"large\"",
        ),
        (
            "invalid config",
            "python_application = \"app:app\"",
            "python_application = \"app\"",
        ),
    ];
    for (what, from, to) in cases {
        assert!(original.contains(from), "{what}: the scaffold has `{from}`");
        std::fs::write(app.join("mse.toml"), original.replace(from, to)).unwrap();
        let (code, stdout, stderr) = run_in(&ctx, &app, &["deploy", "-y"]);
        assert_eq!(code, 2, "{what}: exit code 2\n{stdout}{stderr}");
        let expected = match *what {
            "unlisted image" => "ghcr.io/example/unknown:1.0",
            ":latest image" => "latest",
            "unknown project" => "project `nowhere` does not exist",
            "ungranted resource" => "resource `large` is not available to you",
            _ => "python_application",
        };
        assert!(
            stderr.contains(expected),
            "{what}: `{expected}` in\n{stderr}"
        );
    }
    let (status, apps) = platform.get(&platform.admin, "/apps");
    assert_eq!(status, 200);
    assert_eq!(apps, json!([]), "no app was created");
    let (code, stdout, _) = run_in(&ctx, &ctx.work(), &["list", "--all", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap(), json!([]));
}

#[test]
fn a_simulation_platform_is_refused_before_any_upload_unless_simulation_is_allowed() {
    let platform = Platform::start();
    let ctx = TestContext::new();
    login(&platform, &ctx, &platform.admin, false);
    let app = ctx.scaffold("strict");
    let (code, stdout, stderr) = run_in(&ctx, &app, &["deploy"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("nothing was uploaded"), "{stderr}");
    assert!(
        stderr.contains("`mse login --allow-simulation`")
            && stderr.contains("pass --allow-simulation"),
        "both ways out are named: {stderr}"
    );
    let (_, apps) = platform.get(&platform.admin, "/apps");
    assert_eq!(apps, json!([]), "no app was created");

    // The same deployment, with simulation accepted for this one run.
    let out = deploy_ok(&platform, &ctx, &app, &["--allow-simulation"]);
    assert_eq!(out["verified"], true);
    assert_eq!(out["tee"], "simulation");
}

#[test]
fn verify_accepts_a_simulated_node_for_a_user_logged_in_with_allow_simulation() {
    let platform = Platform::start();
    let (ctx, app) = owner(&platform, "trusting");
    let out = deploy_ok(&platform, &ctx, &app, &[]);
    let target = out["url"].as_str().unwrap().trim_start_matches("https://");
    let fingerprint = out["fingerprint"].as_str().unwrap();

    // The owner logged in with --allow-simulation: no flag to repeat.
    let (code, stdout, stderr) = run_in(
        &ctx,
        &ctx.work(),
        &["verify", target, "--fingerprint", fingerprint],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains("as you logged in with --allow-simulation"),
        "{stderr}"
    );
    assert!(
        stderr.contains("SIMULATION — no hardware protection"),
        "reported loudly: {stderr}"
    );

    // A user logged in without it is refused the same node.
    let strict = TestContext::new();
    login(&platform, &strict, &platform.admin, false);
    let (code, stdout, stderr) = run_in(
        &strict,
        &strict.work(),
        &["verify", target, "--fingerprint", fingerprint],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("✗ quote_signature"), "{stdout}");
}

#[test]
fn no_verify_skips_the_attestation_with_a_warning_and_says_so_in_json() {
    let platform = Platform::start();
    let (ctx, app) = owner(&platform, "unchecked");
    let mut command = ctx.mse_in(&app);
    command.args(["deploy", "--json", "--no-verify"]);
    let output = command.output().unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("SKIPPED (--no-verify)"), "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out["verified"], false);
    assert_eq!(out["tee"], Value::Null);
    assert_eq!(out["status"], "running");
}

#[test]
fn ctrl_c_during_a_deploy_names_the_app_left_behind_and_how_to_stop_it() {
    use std::io::BufRead as _;
    let platform = Platform::start();
    let (ctx, app) = owner(&platform, "slowstart");
    // The app takes its time to import, so the deploy waits in its last step.
    let source = std::fs::read_to_string(app.join("mse_src/app.py")).unwrap();
    std::fs::write(
        app.join("mse_src/app.py"),
        format!("import time\ntime.sleep(30)\n{source}"),
    )
    .unwrap();
    let mut child = ctx
        .mse_process_in(&app)
        .arg("deploy")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let read = stderr.read_line(&mut line).unwrap();
        assert!(read > 0, "deploy ended before starting the app:\n{seen}");
        seen.push_str(&line);
        if line.contains("Waiting for the app to start") {
            break;
        }
    }
    // SAFETY: signalling the child this test started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    let (_, apps) = platform.get(&platform.admin, "/apps");
    let id = apps[0]["id"].as_str().unwrap();
    assert!(rest.contains("interrupted"), "{rest}");
    assert!(rest.contains(&format!("mse stop {id}")), "{rest}");
}

#[test]
fn verifying_an_ssl_app_checks_the_owners_certificate_against_the_nodes_evidence() {
    let platform = Platform::start();
    let (ctx, app) = owner(&platform, "store");
    let domain = "store.example.test";
    owner_certificate_in(&app, domain);
    let out = deploy_ok(&platform, &ctx, &app, &[]);
    assert_eq!(out["certificate_origin"], "owner");

    // An app user reaches the app's own domain, which has no DNS record
    // yet, with --resolve: with no account, nothing says which platform
    // signs or that simulation is fine, and those checks fail, but the
    // owner's certificate is the one the node's quote binds.
    let port = proxy_port(&platform);
    let target = format!("{domain}:{port}");
    let resolve = format!("{domain}:{port}:127.0.0.1");
    let user = TestContext::new();
    let (code, stdout, stderr) = run_in(
        &user,
        &user.work(),
        &["verify", &target, "--resolve", &resolve],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "against the evidence at https://{target}/.well-known/mse-evidence"
        )),
        "{stdout}"
    );
    for passed in ["quote_present", "report_data_binding", "evidence_inputs"] {
        assert!(
            stdout.contains(&format!("✓ {passed}")),
            "{passed}: {stdout}"
        );
    }
    for failed in ["mr_signer", "quote_signature"] {
        assert!(
            stdout.contains(&format!("✗ {failed}")),
            "{failed}: {stdout}"
        );
    }
    assert!(!user.work().join("cert.pem").exists(), "nothing is saved");

    // Its owner, with the platform's keys and its fingerprint, verifies it.
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
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("issued by CN=Owner Test CA"), "{stdout}");
}
