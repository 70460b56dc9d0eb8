//! `mse test`: the plaintext app served locally by the runtime environment of
//! its image, with real Python, Flask and hypercorn.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{texts, TestContext};
use mse_testkit::wait;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over plain HTTP/1.0; the status line and body, or None.
fn get(port: u16, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn mse_test(ctx: &TestContext, dir: &std::path::Path, port: u16) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mse"));
    cmd.args(["test", "--port", &port.to_string()])
        .current_dir(dir)
        .env("MSE_CONF_PATH", ctx.root.path().join("home/conf"))
        .envs(mse_testkit::runtime_env())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

/// Waits until the app answers `/`, or the process ends, within `limit`.
fn wait_until_serving(child: &mut Child, port: u16, limit: Duration) -> Option<(String, String)> {
    // Done with the answer, or with none once the process has ended.
    wait::within(limit, || match get(port, "/") {
        Some(answer) => Some(Some(answer)),
        None => child.try_wait().unwrap().map(|_| None),
    })
    .flatten()
}

#[test]
fn mse_test_serves_the_app_with_its_requirements_and_stops_on_ctrl_c() {
    let ctx = TestContext::new();
    let app = ctx.scaffold("app");
    std::fs::write(app.join("mse_src/requirements.txt"), "six==1.16.0\n").unwrap();
    let code = std::fs::read_to_string(app.join("mse_src/app.py")).unwrap();
    std::fs::write(
        app.join("mse_src/app.py"),
        format!("import six  # from requirements.txt\n{code}"),
    )
    .unwrap();
    let port = free_port();
    let mut child = mse_test(&ctx, &app, port);
    let answer = wait_until_serving(&mut child, port, Duration::from_secs(300));
    let Some((status, body)) = answer else {
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        panic!(
            "the app never answered: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "Hello world");
    let (health, _) = get(port, "/health").unwrap();
    assert!(
        health.contains("200"),
        "an empty 200 body is served: {health}"
    );

    // Ctrl-C: mse stops the server and exits cleanly.
    // SAFETY: signalling the child this test started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT)
    };
    let status = wait::exit(
        "mse test stops after Ctrl-C",
        &mut child,
        Duration::from_secs(20),
    );
    assert!(status.success(), "{status:?}");
    assert!(
        get(port, "/").is_none(),
        "nothing serves on the port any more"
    );
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("curl http://localhost:{port}/health")),
        "{stdout}"
    );
    assert!(stdout.contains("Stopped."), "{stdout}");
}

#[test]
fn mse_test_fails_fast_when_the_image_is_not_in_the_catalog() {
    let ctx = TestContext::new();
    let app = ctx.scaffold("app");
    let toml = std::fs::read_to_string(app.join("mse.toml")).unwrap();
    std::fs::write(
        app.join("mse.toml"),
        toml.replace("mse-flask:20230124182826", "mse-other:1"),
    )
    .unwrap();
    let output = ctx
        .mse_in(&app)
        .args(["test", "--port", &free_port().to_string()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = texts(&output).1;
    assert!(
        stderr.contains("`ghcr.io/cosmian/mse-other:1` is not in the runtime catalog"),
        "{stderr}"
    );
}

#[test]
fn mse_test_shows_the_traceback_when_the_app_cannot_be_imported() {
    let ctx = TestContext::new();
    let app = ctx.scaffold("app");
    std::fs::write(app.join("mse_src/app.py"), "x = 1 / 0\n").unwrap();
    let port = free_port();
    let child = mse_test(&ctx, &app, port);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ZeroDivisionError"), "{stderr}");
    assert!(
        stderr.contains("the app `app:app` cannot be imported"),
        "{stderr}"
    );
}

#[test]
fn mse_test_of_an_ssl_app_says_the_ssl_section_is_not_used_locally_without_naming_a_flag() {
    let ctx = TestContext::new();
    let app = ctx.scaffold("owned");
    let mut toml = std::fs::read_to_string(app.join("mse.toml")).unwrap();
    toml.push_str(
        "\n[ssl]\ndomain_name = \"owned.example.test\"\nprivate_key = \"privkey.pem\"\ncertificate = \"fullchain.pem\"\n",
    );
    std::fs::write(app.join("mse.toml"), toml).unwrap();
    let port = free_port();
    let mut child = mse_test(&ctx, &app, port);
    let answer = wait_until_serving(&mut child, port, Duration::from_secs(300));
    // SAFETY: signalling the child this test started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT)
    };
    wait::exit(
        "mse test stops after Ctrl-C",
        &mut child,
        Duration::from_secs(20),
    );
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(answer.is_some(), "the app is served: {stderr}");
    assert!(
        stderr.contains("the [ssl] section is not used by `mse test`"),
        "{stderr}"
    );
    assert!(!stderr.contains("--untrusted-ssl"), "{stderr}");
}
