//! The apps API with real `mse-run` nodes: the seed's rules, ownership,
//! the state machine, logs, stop and recovery after a restart.

mod common;

use axum::http::{Method, StatusCode};
use common::{deploy_config, multipart, platform, scaffold_package, settings, Platform};
use mse_testkit::wait;
use serde_json::{json, Value};

fn app_folders(p: &Platform) -> Vec<String> {
    std::fs::read_dir(p.dir.path().join("data/apps"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn bad_deployments_are_refused_with_the_reason_and_leave_nothing() {
    let p = platform().await;
    let (_, bob) = p.user("bob").await;
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "unknown project",
            json!({"project": "nope"}),
            StatusCode::NOT_FOUND,
            "project `nope` not found",
        ),
        (
            "ungranted resource",
            json!({"resource": "standard"}),
            StatusCode::FORBIDDEN,
            "not granted",
        ),
        (
            "unknown resource",
            json!({"resource": "huge"}),
            StatusCode::NOT_FOUND,
            "resource `huge` not found",
        ),
        (
            "unlisted image",
            json!({"docker": "ghcr.io/other/image:1.0"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not in the runtime catalog",
        ),
        (
            "latest",
            json!({"docker": "ghcr.io/cosmian/mse-flask:latest"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "pinned",
        ),
        (
            "untagged",
            json!({"docker": "ghcr.io/cosmian/mse-flask"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "pinned",
        ),
        (
            "local image",
            json!({"docker": "mse-flask:1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "registry",
        ),
        (
            "bad name",
            json!({"name": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            "bad application",
            json!({"python_application": "app"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "python_application",
        ),
        (
            "bad health check",
            json!({"healthcheck_endpoint": "health"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "healthcheck_endpoint",
        ),
        (
            "unknown key",
            json!({"code_secret_key": "00"}),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            "both trust modes",
            json!({"untrusted_ssl": true, "ssl": {"domain_name": "a.example.com", "certificate": "x"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "exclude each other",
        ),
    ];
    for (what, changes, status, message) in cases {
        let (got, body) = p.deploy(&bob, deploy_config("app", changes)).await;
        assert_eq!(got, status, "{what}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(message),
            "{what}: `{error}` lacks `{message}`"
        );
    }
    let config = deploy_config("app", json!({})).to_string();
    let (status, body) = p
        .deploy_raw(&bob, multipart(&[("config", config.as_bytes())]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("code.tar"));

    let (_, apps) = p.get("/apps", &bob).await;
    assert_eq!(apps, json!([]));
    assert!(app_folders(&p).is_empty(), "nothing stored");
    let incoming = std::fs::read_dir(p.dir.path().join("data/apps/.incoming"))
        .unwrap()
        .count();
    assert_eq!(incoming, 0, "no upload left behind");
}

#[tokio::test]
async fn expiry_is_four_hours_for_free_else_the_date_else_the_resource_default() {
    let p = platform().await;
    let (bob_id, bob) = p.user("bob").await;
    p.post(
        &format!("/users/{bob_id}/grants"),
        &p.admin,
        json!({"resource": "standard"}),
    )
    .await;

    let far = "2099-01-01T00:00:00Z";
    let (status, free) = p
        .deploy(
            &bob,
            deploy_config("free-app", json!({"expiration_date": far})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{free}");
    assert_eq!(
        free["expires_at"].as_i64().unwrap() - free["created_at"].as_i64().unwrap(),
        4 * 3600
    );

    let (status, dated) = p
        .deploy(
            &bob,
            deploy_config(
                "dated",
                json!({"resource": "standard", "expiration_date": far}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{dated}");
    assert_eq!(dated["expires_at"].as_i64().unwrap(), 4070908800);
    assert_eq!(dated["enclave_size"], "4G");

    let (status, default) = p
        .deploy(
            &bob,
            deploy_config("default", json!({"resource": "standard"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{default}");
    assert_eq!(
        default["expires_at"].as_i64().unwrap() - default["created_at"].as_i64().unwrap(),
        168 * 3600
    );

    let (status, body) = p
        .deploy(
            &bob,
            deploy_config(
                "past",
                json!({"resource": "standard", "expiration_date": "2001-01-01T00:00:00Z"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (_, page) = p.get("/apps?limit=2", &bob).await;
    assert_eq!(page.as_array().unwrap().len(), 2, "{page}");
    let (status, _) = p.get("/apps?limit=many", &bob).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    for app in [&free, &dated, &default] {
        let id = app["id"].as_str().unwrap();
        p.stop_app(&bob, id).await;
    }
}

#[tokio::test]
async fn a_name_runs_once_per_project_even_under_concurrent_deploys_and_keeps_its_domain() {
    let p = platform().await;
    let (_, bob) = p.user("bob").await;
    let config = deploy_config("twin", json!({}));
    let (a, b) = tokio::join!(
        p.deploy(&bob, config.clone()),
        p.deploy(&bob, config.clone())
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::CREATED, StatusCode::CONFLICT],
        "{a:?} {b:?}"
    );
    let (winner, loser) = if a.0 == StatusCode::CREATED {
        (a.1, b.1)
    } else {
        (b.1, a.1)
    };
    let id = winner["id"].as_str().unwrap();
    assert!(
        loser["error"].as_str().unwrap().contains("stop it first"),
        "{loser}"
    );
    assert_eq!(winner["domain_name"], format!("{id}.localhost"));

    let (status, _) = p.deploy(&bob, config.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    p.stop_app(&bob, id).await;

    let (status, second) = p.deploy(&bob, config).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_ne!(second["id"], winner["id"]);
    assert_eq!(
        second["domain_name"], winner["domain_name"],
        "a redeploy keeps the first domain"
    );
    assert_eq!(
        second["config_domain_name"],
        format!("{}.localhost", second["id"].as_str().unwrap())
    );
    let id = second["id"].as_str().unwrap();
    p.stop_app(&bob, id).await;
}

#[tokio::test]
async fn a_node_starts_reports_initializing_keeps_logs_stops_and_never_comes_back() {
    let p = platform().await;
    let (_, bob) = p.user("bob").await;
    let (status, app) = p.deploy(&bob, deploy_config("hello", json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    assert!(
        matches!(app["status"].as_str(), Some("spawning" | "initializing")),
        "{app}"
    );
    let id = app["id"].as_str().unwrap();

    p.wait_app(&bob, id, "initializing", |a| a["status"] == "initializing")
        .await;
    let route = p
        .state
        .routes
        .get(&format!("{id}.localhost"))
        .expect("the proxy knows the node");
    assert!(
        std::net::TcpStream::connect(route.addr).is_ok(),
        "the node listens"
    );
    let (status, logs) = p.get(&format!("/apps/{id}/logs"), &bob).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        logs.as_str()
            .unwrap()
            .contains("waiting for the configuration"),
        "{logs}"
    );

    let (status, _) = p
        .call(Method::DELETE, &format!("/apps/{id}"), Some(&bob), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a live app is not removed");
    let stopped = p.stop_app(&bob, id).await;
    assert!(stopped["stopped_at"].as_i64().is_some());
    assert!(
        p.state.routes.get(&format!("{id}.localhost")).is_none(),
        "route removed"
    );
    let (status, _) = p.post(&format!("/apps/{id}/stop"), &bob, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        !p.state
            .store
            .transition(id, mse_server::domain::lifecycle::Status::Running, None, 0)
            .await
            .unwrap(),
        "no way back from stopped"
    );
    let (status, _) = p
        .call(Method::DELETE, &format!("/apps/{id}"), Some(&bob), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = p.get(&format!("/apps/{id}"), &bob).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_users_apps_are_invisible() {
    let p = platform().await;
    let (_, alice) = p.user("alice").await;
    let (_, bob) = p.user("bob").await;
    let (_, app) = p.deploy(&bob, deploy_config("mine", json!({}))).await;
    let id = app["id"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, format!("/apps/{id}")),
        (Method::GET, format!("/apps/{id}/logs")),
        (Method::POST, format!("/apps/{id}/stop")),
        (Method::DELETE, format!("/apps/{id}")),
    ] {
        let (status, body) = p.call(method.clone(), &path, Some(&alice), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    let (_, list) = p.get("/apps", &alice).await;
    assert_eq!(list, json!([]));
    let (_, list) = p.get("/apps?status=spawning", &bob).await;
    let (_, all) = p.get("/apps?project=default&name=mine", &bob).await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert!(list.as_array().unwrap().len() <= 1);
    let (status, _) = p.get("/apps?status=sleeping", &bob).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    p.stop_app(&bob, id).await;
}

#[tokio::test]
async fn after_a_restart_apps_whose_node_is_gone_are_on_error_and_their_node_is_stopped() {
    let p = platform().await;
    let (_, bob) = p.user("bob").await;
    let (_, app) = p.deploy(&bob, deploy_config("survivor", json!({}))).await;
    let id = app["id"].as_str().unwrap().to_string();
    p.wait_app(&bob, &id, "initializing", |a| a["status"] == "initializing")
        .await;
    let pid = p
        .state
        .store
        .app(&id)
        .await
        .unwrap()
        .unwrap()
        .node_pid
        .unwrap();

    // A second platform on the same folder, as after a crash and restart.
    let mse_server::Opened {
        state: restarted,
        admin_token: token,
        ..
    } = mse_server::open(&settings(&p.dir.path().join("data")))
        .await
        .unwrap();
    assert!(token.is_none());
    let app = restarted.store.app(&id).await.unwrap().unwrap();
    assert_eq!(app.status, mse_server::domain::lifecycle::Status::OnError);
    assert_eq!(app.reason.as_deref(), Some("node lost"));
    wait::until_async(
        "the old node ends",
        std::time::Duration::from_secs(30),
        async || {
            // The old node may linger as a zombie of the first platform
            // until reaped.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            !std::path::Path::new(&format!("/proc/{pid}")).exists() || stat.contains(") Z ")
        },
    )
    .await;
    let _ = scaffold_package;
}

#[tokio::test]
async fn an_app_past_its_expiry_is_stopped_and_says_expired() {
    let p = platform().await;
    let (bob_id, bob) = p.user("bob").await;
    p.post(
        &format!("/users/{bob_id}/grants"),
        &p.admin,
        json!({"resource": "standard"}),
    )
    .await;
    let reaper = p.runner.clone();
    tokio::spawn(async move { reaper.reap(std::time::Duration::from_millis(200)).await });
    let soon = chrono::Utc::now() + chrono::Duration::seconds(4);
    let (status, app) = p
        .deploy(
            &bob,
            deploy_config(
                "brief",
                json!({"resource": "standard", "expiration_date": soon.to_rfc3339()}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let id = app["id"].as_str().unwrap();
    let stopped = p
        .wait_app(&bob, id, "stopped at expiry", |a| {
            a["status"] != "spawning" && a["status"] != "initializing" && a["status"] != "running"
        })
        .await;
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    assert_eq!(stopped["reason"], "expired");
    assert!(stopped["stopped_at"].as_i64().unwrap() >= stopped["expires_at"].as_i64().unwrap());
}

#[tokio::test]
async fn a_node_is_reached_through_the_proxy_by_its_domain() {
    let p = platform().await;
    let (_, bob) = p.user("bob").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    tokio::spawn(mse_server::roles::proxy::serve(
        listener,
        p.state.routes.clone(),
        None,
        mse_server::roles::proxy::ProxyLimits::default(),
        std::future::pending(),
    ));
    let (_, app) = p.deploy(&bob, deploy_config("proxied", json!({}))).await;
    let id = app["id"].as_str().unwrap();
    p.wait_app(&bob, id, "initializing", |a| a["status"] == "initializing")
        .await;

    // The client sees the node's own RA-TLS certificate through the proxy.
    let domain = app["domain_name"].as_str().unwrap().to_string();
    let (config, seen) = mse_attest::pin::capture_config(&[b"http/1.1"]);
    let stream = tokio::net::TcpStream::connect(proxy_addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(domain.clone()).unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, stream)
        .await
        .unwrap();
    let cert = seen.seen().unwrap();
    let inspected = mse_attest::ratls::inspect(&cert).unwrap();
    assert_eq!(inspected.dns_names, vec![domain]);

    p.stop_app(&bob, id).await;
}

#[tokio::test]
async fn an_app_deployed_for_acme_is_not_started_without_an_acme_ca_and_says_why() {
    use mse_server::domain::lifecycle::CertificateOrigin;
    let platform = common::platform().await;
    let (user_id, _) = platform.user("alice").await;
    let store = &platform.state.store;
    let project = store.project(&user_id, "default").await.unwrap().unwrap();
    let new = common::new_app(&project.id, "browser", CertificateOrigin::Acme, 1);
    let id = new.id.clone();
    store.insert_app(&new).await.unwrap();
    let app = store.app(&id).await.unwrap().unwrap();
    assert_eq!(
        mse_server::domain::assignment::assignment(&app, 512, 1, None).unwrap_err(),
        mse_server::domain::assignment::NO_ACME_CA
    );
    let ca = mse_api::node::AcmeCa {
        directory: "https://acme.example.test/dir".into(),
        ca_bundle_pem: None,
        lifetime_secs: None,
    };
    let assignment = mse_server::domain::assignment::assignment(&app, 512, 1, Some(&ca)).unwrap();
    assert_eq!(assignment.tls, mse_api::node::AppTls::Acme(ca));
}
