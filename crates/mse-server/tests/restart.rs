//! The real `mse-server` process killed in the middle of a deployment and
//! started again: nothing is corrupted and the app is never left stuck.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{deploy_config, multipart, scaffold_package};
use serde_json::{json, Value};

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `mse-server` on `data`; returns it and the admin token if printed.
fn start(data: &std::path::Path) -> (Server, Option<String>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(mse_testkit::workspace_binary("mse-server"))
        .arg("--data-dir")
        .arg(data)
        .arg("--nodes-dir")
        .arg(data.with_extension("nodes"))
        .arg("--cache-dir")
        .arg(mse_testkit::runtime_cache_dir())
        .arg("--mse-run")
        .arg(mse_testkit::workspace_binary("mse-run"))
        .args(["--listen-api", &format!("127.0.0.1:{port}")])
        .args(["--listen-proxy", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut token = None;
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(t) = line.strip_prefix("admin token: ") {
            token = Some(t.to_string());
        }
        if line.starts_with("API listening") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (Server { child, port }, token)
}

async fn request(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<(String, Vec<u8>)>,
) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {token}"));
    let request = match body {
        Some((content_type, bytes)) => builder
            .header("content-type", content_type)
            .body(http_body_util::Full::new(bytes::Bytes::from(bytes))),
        None => builder.body(http_body_util::Full::new(bytes::Bytes::new())),
    }
    .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    use http_body_util::BodyExt;
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_server_killed_mid_deploy_restarts_cleanly_and_the_app_is_not_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, token) = start(&data);
    let token = token.expect("the first start prints the admin token");
    let (code, _) = scaffold_package();
    let config = deploy_config("interrupted", json!({})).to_string();
    let body = multipart(&[("config", config.as_bytes()), ("code", &code)]);
    let content_type = "multipart/form-data; boundary=mse-test-boundary-7d1f".to_string();
    let (status, app) = request(
        server.port,
        "POST",
        "/apps",
        &token,
        Some((content_type, body)),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_string();

    // Killed at once: the node is spawning or initializing.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);

    let (server, token_again) = start(&data);
    assert!(token_again.is_none(), "no second admin");
    let (status, app) = request(server.port, "GET", &format!("/apps/{id}"), &token, None).await;
    assert_eq!(status, 200, "{app}");
    assert_eq!(app["status"], "on_error", "{app}");
    assert_eq!(app["reason"], "node lost");

    // The platform still works: the name is free again and deploys.
    let (code, _) = scaffold_package();
    let body = multipart(&[("config", config.as_bytes()), ("code", &code)]);
    let content_type = "multipart/form-data; boundary=mse-test-boundary-7d1f".to_string();
    let (status, second) = request(
        server.port,
        "POST",
        "/apps",
        &token,
        Some((content_type, body)),
    )
    .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["domain_name"], app["domain_name"]);
    let second_id = second["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, now) = request(
            server.port,
            "GET",
            &format!("/apps/{second_id}"),
            &token,
            None,
        )
        .await;
        if now["status"] == "initializing" {
            break;
        }
        assert!(Instant::now() < deadline, "{now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = request(
        server.port,
        "POST",
        &format!("/apps/{second_id}/stop"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 202);
}
