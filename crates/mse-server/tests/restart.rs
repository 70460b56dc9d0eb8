//! The real `mse-server` process killed in the middle of a deployment and
//! started again: nothing is corrupted and the app is never left stuck.

mod common;

use common::{deploy_config, http, http_deploy, http_wait_app};
use mse_testkit::platform::Server;
use serde_json::json;

/// Starts `mse-server` with every role on `data`.
fn start(data: &std::path::Path) -> Server {
    Server::spawn(
        data,
        &[
            "--listen-api",
            "127.0.0.1:0",
            "--listen-proxy",
            "127.0.0.1:0",
        ],
    )
}

#[tokio::test]
async fn a_server_killed_mid_deploy_restarts_cleanly_and_the_app_is_not_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = start(&data);
    let port = server.api_port();
    let token = server.admin_token();
    let config = deploy_config("interrupted", json!({}));
    let (status, app) = http_deploy(port, &token, &config).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_string();

    // Killed at once: the node is spawning or initializing.
    server.kill();
    drop(server);

    let server = start(&data);
    let port = server.api_port();
    assert!(
        !server.seen().iter().any(|l| l.starts_with("admin token")),
        "no second admin"
    );
    let (status, app) = http(port, "GET", &format!("/apps/{id}"), &token, None).await;
    assert_eq!(status, 200, "{app}");
    assert_eq!(app["status"], "on_error", "{app}");
    assert_eq!(app["reason"], "node lost");

    // The platform still works: the name is free again and deploys.
    let (status, second) = http_deploy(port, &token, &config).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["domain_name"], app["domain_name"]);
    let second_id = second["id"].as_str().unwrap();
    http_wait_app(port, &token, second_id, "initializing", |a| {
        a["status"] == "initializing"
    })
    .await;
    let (status, _) = http(
        port,
        "POST",
        &format!("/apps/{second_id}/stop"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn node_folders_left_from_before_are_removed_at_start_and_their_logs_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let nodes = dir.path().join("data.nodes");
    // What an earlier version left for each app it ran: its certificate and
    // its log in the node's folder.
    let id = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
    std::fs::create_dir_all(nodes.join(id)).unwrap();
    std::fs::write(nodes.join(id).join("ratls.pem"), "certificate").unwrap();
    std::fs::write(
        nodes.join(id).join("app.log"),
        "[mse-run] stopped: SIGTERM\n",
    )
    .unwrap();

    let server = start(&data);
    // Listening: the node role has recovered by then.
    server.api_port();
    assert!(!nodes.join(id).exists(), "the node's folder is removed");
    assert_eq!(
        std::fs::read_to_string(nodes.join("logs").join(format!("{id}.log"))).unwrap(),
        "[mse-run] stopped: SIGTERM\n",
        "its log is kept"
    );
    drop(server);
}
