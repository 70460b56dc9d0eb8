//! The platform's roles as separate `mse-server` processes on one data
//! folder (one SQLite store): the API accepts and records, nodes claim and
//! run, the proxy routes by what the store says.

mod common;

use std::sync::Arc;

use common::{deploy_config, http, http_deploy, http_wait_app, PROCESS_WAIT};
use mse_testkit::platform::Server;
use mse_testkit::wait;
use serde_json::json;

/// The store of a data folder, opened as one more process would.
async fn store(data: &std::path::Path) -> mse_server::store::Store {
    let url = format!("sqlite://{}?mode=rwc", data.join("mse.db").display());
    mse_server::store::Store::open(&url).await.unwrap()
}

/// The `mse-run` processes of this host whose command line names `app_id`.
fn node_processes(app_id: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_node = args.first().is_some_and(|exe| exe.ends_with(b"mse-run"));
        // Its launch file is in the app's folder.
        let launch = format!("/{app_id}/{}", mse_api::launch::LAUNCH_FILE);
        let names_app = args.iter().any(|a| a.ends_with(launch.as_bytes()));
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if is_node && names_app && !stat.contains(") Z ") {
            pids.push(pid);
        }
    }
    pids
}

/// Connects to `proxy` by TLS with server name `name`: the certificate the
/// client sees, or the TLS error (an alert) it got.
async fn through_proxy(proxy: std::net::SocketAddr, name: &str) -> Result<Vec<u8>, std::io::Error> {
    let (config, seen) = mse_attest::pin::capture_config(&[b"http/1.1"]);
    let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, stream)
        .await?;
    Ok(seen.seen().unwrap())
}

#[tokio::test]
async fn api_node_and_proxy_as_three_processes_deploy_route_and_stop_an_app() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Started together on a new data folder: one of them creates it, the
    // others wait and share it.
    let mut api = Server::spawn(&data, &["--roles", "api", "--listen-api", "127.0.0.1:0"]);
    let mut node = Server::spawn(&data, &["--roles", "node", "--node-id", "n1"]);
    let mut proxy = Server::spawn(
        &data,
        &["--roles", "proxy", "--listen-proxy", "127.0.0.1:0"],
    );
    let port = api.api_port();
    let token = api.admin_token();
    node.wait_line("node `n1` running apps");
    let proxy_addr = proxy.proxy_addr();
    for (what, process) in [("node", &node), ("proxy", &proxy)] {
        assert!(
            !process
                .seen()
                .iter()
                .any(|l| l.starts_with("API listening")),
            "the {what} serves no API"
        );
    }
    assert!(!node.seen().iter().any(|l| l.starts_with("proxy listening")));
    assert!(!node.seen().iter().any(|l| l.starts_with("admin token")));

    let (status, app) = http_deploy(port, &token, &deploy_config("split", json!({}))).await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["status"], "spawning", "the API starts no node: {app}");
    let id = app["id"].as_str().unwrap().to_string();
    let domain = app["domain_name"].as_str().unwrap().to_string();

    http_wait_app(port, &token, &id, "initializing", |a| {
        a["status"] == "initializing"
    })
    .await;
    let stored = store(&data).await.app(&id).await.unwrap().unwrap();
    assert_eq!(stored.node_owner.as_deref(), Some("n1"));
    assert!(stored.node_addr.is_some());
    assert_eq!(node_processes(&id).len(), 1, "one node runs the app");

    // The proxy process routes by the store: the client sees the node's
    // own RA-TLS certificate.
    let cert = through_proxy(proxy_addr, &domain)
        .await
        .expect("the proxy routes to the node");
    let inspected = mse_attest::ratls::inspect(&cert).unwrap();
    assert_eq!(inspected.dns_names, vec![domain.clone()]);
    let (status, logs) = http(port, "GET", &format!("/apps/{id}/logs"), &token, None).await;
    assert_eq!(status, 200);
    assert!(
        logs.as_str()
            .unwrap_or_default()
            .contains("waiting for the configuration"),
        "the API reads the node's log: {logs}"
    );

    // Stopped through the API: the node process acts on the request.
    let (status, stopping) = http(port, "POST", &format!("/apps/{id}/stop"), &token, None).await;
    assert_eq!(status, 202, "{stopping}");
    let stopped = http_wait_app(port, &token, &id, "stopped", |a| a["status"] == "stopped").await;
    assert!(stopped["stopped_at"].as_i64().is_some(), "{stopped}");
    wait::until_async("the node ends", PROCESS_WAIT, async || {
        node_processes(&id).is_empty()
    })
    .await;
    // …and the proxy forgets the route (within its refresh): the name is
    // unknown again.
    wait::until_async("the proxy forgets the name", PROCESS_WAIT, async || {
        let alert = match through_proxy(proxy_addr, &domain).await {
            Ok(_) => None,
            Err(e) => e
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .cloned(),
        };
        let unknown = rustls::Error::AlertReceived(rustls::AlertDescription::UnrecognisedName);
        if alert.as_ref() == Some(&unknown) {
            Ok(())
        } else {
            Err(format!("the proxy still knows the name: {alert:?}"))
        }
    })
    .await;

    for (what, process) in [
        ("api", &mut api),
        ("node", &mut node),
        ("proxy", &mut proxy),
    ] {
        let status = process.terminate();
        assert!(status.success(), "the {what} process stopped with {status}");
    }
    // A clean stop gives the node id up.
    let holder = store(&data).await.node_holder("n1").await.unwrap();
    assert_eq!(holder, None);
}

#[tokio::test]
async fn an_api_alone_refuses_deploys_saying_how_to_add_a_node_and_a_node_started_later_runs_them()
{
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut api = Server::spawn(&data, &["--roles", "api", "--listen-api", "127.0.0.1:0"]);
    let port = api.api_port();
    let token = api.admin_token();

    // No node: nothing is stored, and the answer says what to do.
    let (status, refused) = http_deploy(port, &token, &deploy_config("waits", json!({}))).await;
    assert_eq!(status, 503, "{refused}");
    let message = refused["error"].as_str().unwrap();
    assert!(message.contains("no node host is running"), "{message}");
    assert!(message.contains("--join"), "{message}");
    let (status, listed) = http(port, "GET", "/apps", &token, None).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");

    // A node started later takes the next deploy.
    let mut node = Server::spawn(&data, &["--roles", "node", "--node-id", "late"]);
    node.wait_line("node `late` running apps");
    let (status, placed) = http_deploy(port, &token, &deploy_config("waits", json!({}))).await;
    assert_eq!(status, 201, "{placed}");
    let id = placed["id"].as_str().unwrap().to_string();
    http_wait_app(port, &token, &id, "initializing", |a| {
        a["status"] == "initializing"
    })
    .await;
    let app = store(&data).await.app(&id).await.unwrap().unwrap();
    assert_eq!(app.node_owner.as_deref(), Some("late"));
    assert_eq!(node_processes(&id).len(), 1);

    let (status, _) = http(port, "POST", &format!("/apps/{id}/stop"), &token, None).await;
    assert_eq!(status, 202);
    http_wait_app(port, &token, &id, "stopped", |a| a["status"] == "stopped").await;
    assert!(node.terminate().success());
    assert!(api.terminate().success());
}

#[tokio::test]
async fn two_node_processes_never_both_run_an_app_and_a_node_id_has_one_holder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut api = Server::spawn(&data, &["--roles", "api", "--listen-api", "127.0.0.1:0"]);
    let port = api.api_port();
    let token = api.admin_token();
    let mut a = Server::spawn(&data, &["--roles", "node", "--node-id", "a"]);
    let mut b = Server::spawn(&data, &["--roles", "node", "--node-id", "b"]);
    a.wait_line("node `a` running apps");
    b.wait_line("node `b` running apps");

    // A second process under a held node id is refused.
    let mut twin = Server::spawn(&data, &["--roles", "node", "--node-id", "a"]);
    let status = wait::exit("the twin ends", &mut twin.child, PROCESS_WAIT);
    assert!(!status.success());

    let mut ids = Vec::new();
    for i in 0..4 {
        let (status, app) =
            http_deploy(port, &token, &deploy_config(&format!("app-{i}"), json!({}))).await;
        assert_eq!(status, 201, "{app}");
        ids.push(app["id"].as_str().unwrap().to_string());
    }
    let store = store(&data).await;
    for id in &ids {
        http_wait_app(port, &token, id, "initializing", |a| {
            a["status"] == "initializing"
        })
        .await;
        let app = store.app(id).await.unwrap().unwrap();
        assert!(
            matches!(app.node_owner.as_deref(), Some("a" | "b")),
            "{:?}",
            app.node_owner
        );
        assert_eq!(node_processes(id).len(), 1, "exactly one node runs {id}");
    }
    for id in &ids {
        let (status, _) = http(port, "POST", &format!("/apps/{id}/stop"), &token, None).await;
        assert_eq!(status, 202);
    }
    for id in &ids {
        http_wait_app(port, &token, id, "stopped", |a| a["status"] == "stopped").await;
    }
    for process in [&mut a, &mut b, &mut api] {
        assert!(process.terminate().success());
    }
}
