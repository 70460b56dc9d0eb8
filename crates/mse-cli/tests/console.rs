//! The web console in a real browser: headless Chromium (Debian's), driven
//! by Playwright for Python (`tests/console/journey.py`), against the real
//! platform, while the real `mse` deploys and checks.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::deploy::{call_app, deploy_ok, run_in};
use common::platform::{user, Platform};

/// A line the app prints when it starts: what a hostile app could write to
/// its log, to be shown as text.
const HOSTILE: &str = r#"<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>"#;

/// How long the browser's whole journey may take.
const JOURNEY: Duration = Duration::from_secs(300);

#[test]
fn the_owner_and_the_operator_do_their_work_in_the_console_in_a_real_browser() {
    if !mse_testkit::programs_present(
        "the_owner_and_the_operator_do_their_work_in_the_console_in_a_real_browser",
        &mse_testkit::browser::PROGRAMS,
    ) {
        return;
    }
    let platform = Platform::start();
    let (alice, alice_token) = user(&platform, "alice");
    // Another user's app, which alice's console must never show.
    let (bob, _bob_token) = user(&platform, "bob");
    let bobs = bob.scaffold("ledger");
    let other = deploy_ok(&platform, &bob, &bobs, &[]);
    let other_id = other["uuid"].as_str().unwrap().to_string();

    let app = alice.scaffold("webshop");
    let code = app.join("mse_src/app.py");
    let mut source = std::fs::read_to_string(&code).unwrap();
    source.push_str(&format!("\nprint({HOSTILE:?}, flush=True)\n"));
    std::fs::write(&code, source).unwrap();

    let artifacts = mse_testkit::artifacts_dir("console");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/journey.py");
    let mut journey = Command::new(mse_testkit::python())
        .arg(&script)
        .env("CONSOLE_URL", format!("{}/console/", platform.url))
        .env("USER_TOKEN", &alice_token)
        .env("ADMIN_TOKEN", &platform.admin)
        .env("OTHER_APP", &other_id)
        .env("HOSTILE_TEXT", HOSTILE)
        .env("ARTIFACTS", &artifacts)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the browser script starts");
    let mut to_script = journey.stdin.take().unwrap();
    let (lines, heard) = mpsc::channel();
    let stdout = journey.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = journey.stderr.take().unwrap();
    let errors = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let written = errors.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(mut text) = written.lock() {
                text.push_str(&line);
                text.push('\n');
            }
        }
    });
    let said = || errors.lock().map(|t| t.clone()).unwrap_or_default();
    let expect = |prefix: &str, journey: &mut std::process::Child| -> String {
        let line = heard.recv_timeout(JOURNEY);
        match line {
            Ok(line) if line.starts_with(prefix) => line[prefix.len()..].trim().to_string(),
            other => {
                let _ = journey.kill();
                let _ = journey.wait();
                panic!(
                    "expected {prefix} from the browser, got {other:?}:\n{}\n--- platform ---\n{}",
                    said(),
                    platform.output()
                );
            }
        }
    };

    // Signed in and watching: the CLI deploys.
    expect("READY", &mut journey);
    let out = deploy_ok(&platform, &alice, &app, &[]);
    let id = out["uuid"].as_str().unwrap().to_string();
    writeln!(to_script, "DEPLOYED {id}").unwrap();

    // Watching the log: a call to the app shows up in it.
    expect("WATCHING", &mut journey);
    let marker = format!("/follow-{}", std::process::id());
    let (status, _) = call_app(&platform, &out, &marker);
    assert_eq!(status, 404, "no such route, but a line in the access log");
    writeln!(to_script, "CALLED {marker}").unwrap();

    // Stopped from the console: the CLI agrees.
    let stopped = expect("STOPPED", &mut journey);
    assert_eq!(stopped, id);
    let (code, status, _) = run_in(&alice, &alice.work(), &["status", &id, "--json"]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["status"], "stopped", "{status}");
    writeln!(to_script, "AGREED").unwrap();

    let done = heard.recv_timeout(JOURNEY);
    let exit = journey.wait().unwrap();
    let errors = said();
    assert!(
        exit.success() && matches!(done.as_deref(), Ok("DONE")),
        "the browser's journey failed ({exit}):\n{errors}\n--- platform ---\n{}",
        platform.output()
    );

    // A screenshot of each view, none blank.
    for view in [
        "apps",
        "app",
        "projects",
        "tokens",
        "users",
        "resources",
        "catalog",
        "nodes",
        "platform",
    ] {
        let path = artifacts.join(format!("{view}.png"));
        assert!(
            !mse_testkit::browser::png_is_blank(&path).unwrap(),
            "{} is blank",
            path.display()
        );
    }
    // Removed in the console: the CLI no longer finds it.
    let (code, _, _) = run_in(&alice, &alice.work(), &["status", &id]);
    assert_ne!(code, 0, "the app was removed");
}
