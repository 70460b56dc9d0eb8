//! `mse login`, `logout`, `list`, `status`, `logs`, `stop` and `remove`
//! against a real platform (`mse-server` with simulated quotes), driven as a
//! user does. Apps are deployed through the raw API, so these tests do not
//! depend on `mse deploy`; nobody sends their nodes the key, so they stay
//! `initializing` until stopped. The tests that need an app running deploy
//! it with `mse deploy`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::deploy::{call_app, deploy_ok};
use common::platform::{user, Platform, PlatformExt};
use common::{texts, TestContext};
use mse_package::context::{
    CertificateOrigin, Context, ContextConfig, ContextInstance, ContextStore,
};
use mse_testkit::wait;
use serde_json::Value;

/// `mse ARGS` as `ctx`: (exit code, stdout, stderr).
fn run(ctx: &TestContext, args: &[&str]) -> (i32, String, String) {
    let output = ctx.mse().args(args).output().expect("mse runs");
    let (stdout, stderr) = texts(&output);
    (output.status.code().unwrap_or(-1), stdout, stderr)
}

fn id_of(app: &Value) -> String {
    app["id"].as_str().expect("an app has an id").to_string()
}

fn conf_dir(ctx: &TestContext) -> std::path::PathBuf {
    ctx.root.path().join("home/conf")
}

#[test]
fn login_saves_a_private_profile_with_the_signer_key_and_logout_forgets_it() {
    let platform = Platform::start();
    let ctx = TestContext::new();
    let (code, stdout, stderr) = run(
        &ctx,
        &["login", "--url", &platform.url, "--token", &platform.admin],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("Logged in to {}", platform.url)),
        "{stdout}"
    );
    assert!(
        stderr.contains("simulation TEE"),
        "a simulation platform is pointed out: {stderr}"
    );

    let profile = conf_dir(&ctx).join("login.toml");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&profile).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the profile holds a token");
    let saved: toml::Value = toml::from_str(&std::fs::read_to_string(&profile).unwrap()).unwrap();
    let (status, signer) = platform.get(&platform.admin, "/signer");
    assert_eq!(status, 200);
    assert_eq!(saved["signer_key"].as_str(), signer.as_str());
    assert_eq!(saved["url"].as_str(), Some(platform.url.as_str()));
    assert!(
        !stdout.contains(&platform.admin),
        "the token is never printed"
    );

    let (code, stdout, _) = run(&ctx, &["logout"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Logged out"), "{stdout}");
    assert!(!profile.exists());
    let (code, stdout, _) = run(&ctx, &["logout"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Not logged in"), "{stdout}");
}

#[test]
fn login_with_a_refused_token_fails_and_writes_no_profile() {
    let platform = Platform::start();
    let ctx = TestContext::new();
    let bogus = format!("mse_{}", "0".repeat(64));
    let (code, stdout, stderr) = run(&ctx, &["login", "--url", &platform.url, "--token", &bogus]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: the token was refused by {}: check it, or ask the operator for a new one\n",
            platform.url
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&bogus),
        "the token is never printed: {stderr}"
    );
    assert!(!conf_dir(&ctx).join("login.toml").exists());
}

#[test]
fn login_reads_the_token_from_stdin_with_dash() {
    let platform = Platform::start();
    let ctx = TestContext::new();
    let output = ctx
        .mse()
        .args(["login", "--url", &platform.url, "--token", "-"])
        .write_stdin(format!("{}\n", platform.admin))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(conf_dir(&ctx).join("login.toml").exists());
}

#[test]
fn login_without_a_terminal_or_a_token_is_a_usage_error() {
    let ctx = TestContext::new();
    let (code, _, stderr) = run(&ctx, &["login", "--url", "http://127.0.0.1:9"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--token"), "{stderr}");
    let (code, _, stderr) = run(&ctx, &["login", "--token", "t"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--url"), "{stderr}");
}

#[test]
fn app_commands_without_login_say_to_run_mse_login() {
    let ctx = TestContext::new();
    let id = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
    for args in [
        vec!["list"],
        vec!["status", id],
        vec!["logs", id],
        vec!["stop", id],
        vec!["remove", id],
    ] {
        let (code, stdout, stderr) = run(&ctx, &args);
        assert_eq!(code, 2, "mse {args:?}: {stdout}{stderr}");
        assert!(stderr.contains("mse login"), "mse {args:?}: {stderr}");
        assert!(stdout.is_empty(), "mse {args:?}: {stdout}");
    }
}

#[test]
fn a_malformed_uuid_is_a_usage_error() {
    let ctx = TestContext::new();
    for command in ["status", "logs", "stop", "remove"] {
        let (code, _, stderr) = run(&ctx, &[command, "../../etc"]);
        assert_eq!(code, 2, "mse {command}: {stderr}");
        assert!(stderr.contains("is not an app UUID"), "{stderr}");
    }
}

#[test]
fn list_shows_live_apps_newest_first_and_all_adds_the_stopped_ones() {
    let platform = Platform::start();
    let (alice, token) = user(&platform, "alice");

    let (code, stdout, stderr) = run(&alice, &["list"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("No live apps"), "{stdout}");
    let (code, stdout, _) = run(&alice, &["list", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        Value::Array(vec![])
    );

    let first = platform.deploy_scaffold(&alice, &token, "first");
    // The platform keeps times in seconds: the second app must come a
    // second later to be the newer one.
    let created = first["created_at"].as_i64().unwrap();
    wait::until(
        "the clock is a second past the first app's",
        Duration::from_secs(5),
        || chrono::Utc::now().timestamp() > created,
    );
    let first = id_of(&first);
    let second = id_of(&platform.deploy_scaffold(&alice, &token, "second"));

    let (code, stdout, stderr) = run(&alice, &["list"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two apps: {stdout}");
    for column in ["UUID", "CREATED", "STATUS", "NAME", "DOMAIN"] {
        assert!(lines[0].contains(column), "{stdout}");
    }
    assert!(lines[1].starts_with(&second), "newest first: {stdout}");
    assert!(lines[1].contains(" UTC "), "{stdout}");
    let port = platform.proxy.rsplit(':').next().unwrap();
    assert!(
        lines[1].ends_with(&format!("{second}.localhost:{port}")),
        "the domain with the port it is reached at: {stdout}"
    );
    assert!(lines[2].starts_with(&first), "{stdout}");

    let (code, stdout, _) = run(&alice, &["list", "--json"]);
    assert_eq!(code, 0);
    let apps: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(apps.len(), 2);
    assert_eq!(apps[0]["uuid"], second.as_str());
    assert_eq!(apps[0]["name"], "second");
    assert_eq!(apps[0]["project"], "default");
    assert_eq!(
        apps[0]["url"],
        format!(
            "https://{second}.localhost:{}",
            platform.proxy.rsplit(':').next().unwrap()
        )
    );
    for field in [
        "status",
        "created_at",
        "expires_at",
        "docker",
        "domain_name",
    ] {
        assert!(apps[0][field].is_string(), "{field}: {}", apps[0]);
    }

    platform.stop_app(&token, &first);
    let (_, stdout, _) = run(&alice, &["list"]);
    assert!(stdout.contains(&second), "{stdout}");
    assert!(
        !stdout.contains(&first),
        "a stopped app is hidden: {stdout}"
    );
    let (_, stdout, _) = run(&alice, &["list", "--all"]);
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&first))
        .unwrap_or_else(|| panic!("--all shows the stopped app: {stdout}"));
    assert!(line.contains("stopped"), "{line}");

    let (code, stdout, _) = run(&alice, &["list", "--project", "default", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&stdout).unwrap().len(),
        1
    );
    let (code, _, stderr) = run(&alice, &["list", "--project", "nowhere"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no project `nowhere`"), "{stderr}");
}

#[test]
fn status_shows_the_app_in_text_and_json() {
    let platform = Platform::start();
    let (alice, token) = user(&platform, "alice");
    let id = id_of(&platform.deploy_scaffold(&alice, &token, "hello"));
    let (_, free) = platform.get(&token, "/resources/free");
    let port = platform.proxy.rsplit(':').next().unwrap().to_string();

    let (code, stdout, stderr) = run(&alice, &["status", &id]);
    assert_eq!(code, 0, "{stderr}");
    let field = |name: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name).filter(|rest| rest.starts_with("  ")))
            .unwrap_or_else(|| panic!("no `{name}` line: {stdout}"))
            .trim()
            .to_string()
    };
    assert_eq!(field("name"), "hello");
    assert_eq!(field("uuid"), id);
    assert_eq!(field("domain"), format!("https://{id}.localhost:{port}"));
    assert_eq!(field("resource"), "free");
    assert_eq!(field("application"), "app:app");
    assert_eq!(field("image"), "ghcr.io/cosmian/mse-flask:20230124182826");
    assert_eq!(field("healthcheck"), "/health");
    assert!(field("certificate").starts_with("self"), "{stdout}");
    assert_eq!(
        field("enclave size"),
        free["enclave_size"].as_str().unwrap()
    );
    assert_eq!(field("cores"), free["cores"].to_string());
    assert!(field("created").ends_with(" UTC"), "{stdout}");
    assert!(
        ["(in 4h)", "(in 3h 59m)", "(in 3h 58m)"]
            .iter()
            .any(|left| field("expires").ends_with(left)),
        "a free app lives 4 hours: {stdout}"
    );
    let status = field("status");
    assert!(
        status.starts_with("spawning") || status.starts_with("initializing"),
        "{stdout}"
    );

    let (code, stdout, _) = run(&alice, &["status", &id, "--json"]);
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["uuid"], id.as_str());
    assert_eq!(json["name"], "hello");
    assert_eq!(json["cores"], free["cores"]);
    assert_eq!(json["enclave_size"], free["enclave_size"]);
    assert_eq!(json["certificate_origin"], "self");
    let left = json["expires_in_seconds"].as_i64().unwrap();
    assert!((14_000..=14_400).contains(&left), "{json}");
    assert!(
        json["created_at"].as_str().unwrap().ends_with('Z'),
        "{json}"
    );

    // Upper case is the same uuid.
    let (code, _, stderr) = run(&alice, &["status", &id.to_uppercase()]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn another_users_apps_are_invisible() {
    let platform = Platform::start();
    let (alice, alice_token) = user(&platform, "alice");
    let (bob, _) = user(&platform, "bob");
    let id = id_of(&platform.deploy_scaffold(&alice, &alice_token, "private"));

    let (code, stdout, _) = run(&bob, &["list", "--all", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&stdout).unwrap().len(),
        0
    );
    for command in ["status", "logs", "stop", "remove"] {
        let (code, _, stderr) = run(&bob, &[command, &id]);
        assert_eq!(code, 1, "mse {command}: {stderr}");
        assert!(
            stderr.contains(&format!("no app {id} among yours")),
            "mse {command}: {stderr}"
        );
    }
    // Bob's attempt changed nothing.
    assert_ne!(platform.app(&alice_token, &id)["status"], "stopped");
}

/// Saves a context for app `id` in `ctx`'s store, as `mse deploy` would.
fn plant_context(ctx: &TestContext, id: &str) -> std::path::PathBuf {
    use chrono::TimeZone;
    let context = Context {
        version: "1.0".into(),
        config: ContextConfig {
            name: "hello".into(),
            project: "default".into(),
            python_application: "app:app".into(),
            docker: mse_config::DEFAULT_DOCKER_IMAGE.into(),
            code_secret_key: "ab".repeat(32),
            ssl_app_certificate: None,
        },
        instance: ContextInstance {
            id: id.into(),
            config_domain_name: format!("{id}.localhost"),
            domain_name: None,
            runtime_spec_digest: None,
            enclave_size: "1G".into(),
            expires_at: chrono::Utc.with_ymd_and_hms(2031, 1, 1, 0, 0, 0).unwrap(),
            ssl_certificate_origin: CertificateOrigin::SelfSigned,
            nonces: BTreeMap::from([("app.py".to_string(), "cd".repeat(24))]),
        },
    };
    let tar = ctx.root.path().join("code.tar");
    std::fs::write(&tar, b"tar").unwrap();
    ContextStore::new(&conf_dir(ctx))
        .save(&context, &tar)
        .unwrap()
}

#[test]
fn stop_waits_until_the_app_is_stopped_and_removes_its_context() {
    let platform = Platform::start();
    let (alice, token) = user(&platform, "alice");
    let id = id_of(&platform.deploy_scaffold(&alice, &token, "hello"));
    // A live node to stop, not just a record.
    let app = platform.wait_initializing(&token, &id);
    assert_eq!(app["status"], "initializing", "{app}");
    let context = plant_context(&alice, &id);
    assert!(context.join("context.mse").exists());

    let (code, stdout, stderr) = run(&alice, &["stop", &id]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains(&format!("Stopping app {id}")), "{stderr}");
    assert!(
        stdout.contains(&format!("App {id} (hello) is stopped")),
        "{stdout}"
    );
    assert!(stdout.contains("Removed its context"), "{stdout}");
    assert!(!context.exists());
    assert_eq!(platform.app(&token, &id)["status"], "stopped");

    // Again: nothing to stop, and not an error.
    let (code, stdout, stderr) = run(&alice, &["stop", &id]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("already stopped"), "{stdout}");
    assert!(stdout.contains("nothing to stop"), "{stdout}");

    let (_, stdout, _) = run(&alice, &["status", &id]);
    assert!(stdout.contains("stopped at "), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("reason")), "{stdout}");
}

#[test]
fn a_stopped_apps_node_folder_goes_and_its_log_stays_readable_until_remove() {
    let platform = Platform::start();
    let (alice, token) = user(&platform, "alice");
    let id = id_of(&platform.deploy_scaffold(&alice, &token, "hello"));
    platform.wait_initializing(&token, &id);
    assert!(
        platform.nodes_dir().join(&id).is_dir(),
        "a node folder while it runs"
    );

    let (code, _, stderr) = run(&alice, &["stop", &id]);
    assert_eq!(code, 0, "{stderr}");
    platform.wait_node_dir_gone(&id);
    let (code, stdout, stderr) = run(&alice, &["logs", &id]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("[mse-run] waiting for the configuration"),
        "{stdout}"
    );
    assert!(stdout.contains("[mse-run] stopped: "), "{stdout}");

    let (code, _, stderr) = run(&alice, &["remove", &id]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !platform.log_file(&id).exists(),
        "the log goes with the app"
    );
}

#[test]
fn stop_returns_as_soon_as_the_node_has_stopped() {
    let platform = Platform::start();
    let (alice, token) = user(&platform, "alice");
    let ids: Vec<String> = (0..5)
        .map(|i| id_of(&platform.deploy_scaffold(&alice, &token, &format!("app{i}"))))
        .collect();
    for id in &ids {
        platform.wait_initializing(&token, id);
    }
    // Polling every 300 ms, five stops took at least 1.5 s; a node that is
    // waiting for its configuration stops within milliseconds.
    let started = Instant::now();
    for id in &ids {
        let (code, _, stderr) = run(&alice, &["stop", id]);
        assert_eq!(code, 0, "{stderr}");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "5 stops took {took:?}");
    for id in &ids {
        assert_eq!(platform.app(&token, id)["status"], "stopped");
    }
}

#[test]
fn remove_refuses_a_live_app_with_a_hint_and_removes_a_stopped_one() {
    let platform = Platform::start();
    let (alice, token) = user(&platform, "alice");
    let id = id_of(&platform.deploy_scaffold(&alice, &token, "hello"));

    let (code, _, stderr) = run(&alice, &["remove", &id]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("stop it first"),
        "the platform's word: {stderr}"
    );
    assert!(stderr.contains(&format!("mse stop {id}")), "{stderr}");
    assert_ne!(platform.app(&token, &id)["status"], "stopped");

    platform.stop_app(&token, &id);
    let (code, stdout, stderr) = run(&alice, &["remove", &id]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("Removed app {id}")), "{stdout}");
    let (status, _) = platform.get(&token, &format!("/apps/{id}"));
    assert_eq!(status, 404);
    let (_, stdout, _) = run(&alice, &["list", "--all"]);
    assert!(!stdout.contains(&id), "{stdout}");
    let (code, _, stderr) = run(&alice, &["status", &id]);
    assert_eq!(code, 1);
    assert!(stderr.contains("among yours"), "{stderr}");
}

#[test]
fn logs_print_the_node_log_and_follow_ends_when_the_app_stops() {
    let platform = Platform::start();
    let (alice, token) = user(&platform, "alice");
    let id = id_of(&platform.deploy_scaffold(&alice, &token, "hello"));
    platform.wait_initializing(&token, &id);
    // The node writes its log as it goes: wait (bounded) for a first line.
    let log = wait::until("the node writes its log", Duration::from_secs(60), || {
        let (status, log) = platform.get(&token, &format!("/apps/{id}/logs"));
        assert_eq!(status, 200);
        let log = log.as_str().unwrap_or_default().to_string();
        (!log.is_empty()).then_some(log)
    });

    let (code, stdout, stderr) = run(&alice, &["logs", &id]);
    assert_eq!(code, 0, "{stderr}");
    let first_line = log.lines().next().unwrap();
    assert!(stdout.starts_with(first_line), "{stdout}");

    // --follow prints what is there, keeps going, and ends once the app
    // is stopped.
    let mut follow = alice
        .mse_process_in(&alice.work())
        .args(["logs", "--follow", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (lines, printed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let first = printed
        .recv_timeout(Duration::from_secs(30))
        .expect("--follow prints the log there is");
    assert_eq!(first, first_line);
    platform.stop_app(&token, &id);
    let status = wait::exit(
        "mse logs --follow ends after the app stopped",
        &mut follow,
        Duration::from_secs(30),
    );
    assert!(status.success(), "{status}");
    let mut all = vec![first];
    // The reader ends with the process's output.
    all.extend(printed.iter());
    let printed = all.join("\n");
    assert!(
        printed.starts_with(log.trim_end()),
        "the log as it was, then what came: {printed}"
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut follow.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains(&format!("App {id} stopped at")), "{stderr}");
    // Nothing printed twice: the final log is what --follow printed.
    let (_, last) = platform.get(&token, &format!("/apps/{id}/logs"));
    let last = last.as_str().unwrap_or_default();
    assert_eq!(printed.trim_end(), last.trim_end());
}

/// The scaffold app, plus `GET /flood`: 4,000 lines of varied lengths on
/// its standard output (about 150 kB).
const FLOOD_APP: &str = r#"import sys

from flask import Flask

app = Flask(__name__)


@app.route("/health")
def health():
    return ""


@app.route("/flood")
def flood():
    for i in range(4000):
        print(f"flood {i} " + "z" * (i % 50))
    sys.stdout.flush()
    return "flooded"
"#;

#[test]
fn a_long_log_starts_with_the_nodes_own_lines_then_whole_lines() {
    let platform = Platform::start();
    let (alice, _) = user(&platform, "alice");
    let app = alice.scaffold("flood");
    std::fs::write(app.join("mse_src/app.py"), FLOOD_APP).unwrap();
    let out = deploy_ok(&platform, &alice, &app, &[]);
    let id = out["uuid"].as_str().unwrap().to_string();
    assert_eq!(call_app(&platform, &out, "/flood"), (200, "flooded".into()));

    // The app's lines reach the log through a pipe: wait (bounded) for the last.
    let log = wait::until("the flood reaches the log", Duration::from_secs(30), || {
        let (code, stdout, stderr) = run(&alice, &["logs", &id]);
        assert_eq!(code, 0, "{stderr}");
        if stdout.contains("flood 3999 ") {
            Ok(stdout)
        } else {
            Err(stdout)
        }
    });
    assert!(log.len() <= 64 * 1024, "{}", log.len());
    let lines: Vec<&str> = log.lines().collect();
    let marker = lines
        .iter()
        .position(|l| *l == "[… earlier lines dropped]")
        .unwrap_or_else(|| panic!("no marker: {}", &log[..500]));
    // First the node's own lines, which the flood did not push out.
    assert!(marker > 0, "{log}");
    assert!(
        lines[..marker].iter().all(|l| l.starts_with("[mse-run] ")),
        "{log}"
    );
    assert!(
        lines[..marker].iter().any(|l| l.contains("sandbox: ")),
        "{log}"
    );
    assert!(
        lines[..marker]
            .iter()
            .any(|l| l.contains("waiting for the configuration")),
        "{log}"
    );
    // Then whole lines: the first is a flood line as the app printed it.
    let first = lines[marker + 1];
    let n: usize = first
        .strip_prefix("flood ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a whole flood line: `{first}`"));
    assert_eq!(first, format!("flood {n} {}", "z".repeat(n % 50)));
    assert!(n > 0, "earlier lines were dropped");
}
