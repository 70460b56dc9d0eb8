//! Security suite: the node-host protocol. A join needs a token of this
//! platform (its secret and its CA's hash); a host's credential opens the
//! node routes only, and only for the apps placed on it; a host cannot
//! point the proxy anywhere but at its own advertised address; a package
//! goes only to the host of its app.

mod common;

use axum::http::{Method, StatusCode};
use common::{deploy_config, Platform};
use mse_api::node::JoinToken;
use serde_json::{json, Value};

/// A platform whose own node has no room, so apps go to joined hosts.
async fn platform() -> Platform {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::settings(&dir.path().join("data"));
    settings.capacity = mse_api::node::Capacity {
        memory_mb: 1,
        cores: 1,
    };
    let (state, token) = mse_server::open(&settings).await.unwrap();
    Platform {
        dir,
        router: mse_server::api::router(state.clone()),
        state,
        admin: token.unwrap(),
    }
}

async fn join_token(p: &Platform) -> String {
    let (status, body) = p.post("/nodes/tokens", &p.admin, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"].as_str().unwrap().to_string()
}

fn join_request(token: &str, name: &str, advertise: &str) -> Value {
    let key = mse_attest::simulation::QuoteKey::generate();
    json!({
        "token": token,
        "name": name,
        "advertise": advertise,
        "capacity": {"memory_mb": 4096, "cores": 4},
        "quote_key": key.public_key_pem().unwrap(),
    })
}

/// Joins host `name` at `advertise`; its credential.
async fn join(p: &Platform, token: &str, name: &str, advertise: &str) -> String {
    let (status, body) = p
        .call(
            Method::POST,
            "/nodes/join",
            None,
            Some(join_request(token, name, advertise)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["credential"].as_str().unwrap().to_string()
}

fn error(body: &Value) -> String {
    body["error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_join_needs_a_live_token_of_this_platform() {
    let p = platform().await;
    let token = join_token(&p).await;
    let parsed = JoinToken::parse(&token).unwrap();
    let other_ca = JoinToken::new(parsed.secret, b"another platform's CA").to_string();
    let unknown = JoinToken::new(rand_bytes(), &[]).to_string();
    let unknown = format!("{}_{}", &unknown[..72], hex::encode(parsed.ca_sha256));
    for bad in [
        other_ca.as_str(),
        unknown.as_str(),
        "msejoin_nope",
        "",
        &p.admin,
    ] {
        let (status, body) = p
            .call(
                Method::POST,
                "/nodes/join",
                None,
                Some(join_request(bad, "h1", "198.18.0.2")),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}: {body}");
        assert!(error(&body).contains("join token"), "{body}");
    }
    let (status, listed) = p.get("/nodes", &p.admin).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        listed.as_array().unwrap().iter().all(|n| n["node"] != "h1"),
        "{listed}"
    );
    // The token itself opens nothing else.
    let (status, _) = p.get("/apps", &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

fn rand_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    bytes
}

#[tokio::test]
async fn bad_joins_are_refused_and_change_nothing() {
    let p = platform().await;
    let token = join_token(&p).await;
    let mut zero = join_request(&token, "h1", "198.18.0.2");
    zero["capacity"] = json!({"memory_mb": 0, "cores": 4});
    let mut key = join_request(&token, "h1", "198.18.0.2");
    key["quote_key"] = json!("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
    let mut extra = join_request(&token, "h1", "198.18.0.2");
    extra["database_url"] = json!("postgres://");
    let cases = [
        (
            join_request(&token, "h1", "0.0.0.0"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            join_request(&token, "../h1", "198.18.0.2"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (zero, StatusCode::UNPROCESSABLE_ENTITY),
        (key, StatusCode::UNPROCESSABLE_ENTITY),
        (extra, StatusCode::UNPROCESSABLE_ENTITY),
        // The API machine's own live node keeps its id.
        (
            join_request(&token, "local", "198.18.0.2"),
            StatusCode::CONFLICT,
        ),
    ];
    for (request, expected) in cases {
        let (status, body) = p
            .call(Method::POST, "/nodes/join", None, Some(request.clone()))
            .await;
        assert_eq!(status, expected, "{request}: {body}");
        assert!(!error(&body).is_empty(), "{body}");
    }
    let (_, listed) = p.get("/nodes", &p.admin).await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["local"], "{listed}");
    // A live host's name is its own until its lease ends.
    join(&p, &token, "h1", "198.18.0.2").await;
    let (status, body) = p
        .call(
            Method::POST,
            "/nodes/join",
            None,
            Some(join_request(&token, "h1", "198.18.0.9")),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test]
async fn only_admins_make_join_tokens_and_list_nodes() {
    let p = platform().await;
    let (_, bob) = p.user("bob").await;
    let (status, _) = p.post("/nodes/tokens", &bob, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = p.get("/nodes", &bob).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = p
        .post("/nodes/tokens", &p.admin, json!({"ttl_hours": 0}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn a_host_reaches_only_its_own_apps_and_points_the_proxy_only_at_itself() {
    let p = platform().await;
    let token = join_token(&p).await;
    let h1 = join(&p, &token, "h1", "198.18.0.2").await;
    let h2 = join(&p, &token, "h2", "198.18.0.3").await;
    // Node routes refuse user tokens, and user routes refuse node
    // credentials.
    let (status, _) = p
        .post("/nodes/lease", &p.admin, json!({"running": []}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = p.get("/apps", &h1).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, app) = p.deploy(&p.admin, deploy_config("placed", json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let id = app["id"].as_str().unwrap().to_string();
    let sha = p
        .state
        .store
        .app(&id)
        .await
        .unwrap()
        .unwrap()
        .spec
        .code_sha256;
    let owner = p
        .state
        .store
        .app(&id)
        .await
        .unwrap()
        .unwrap()
        .node_owner
        .unwrap();
    let (mine, theirs) = if owner == "h1" {
        (&h1, &h2)
    } else {
        (&h2, &h1)
    };
    let my_address = if owner == "h1" {
        "198.18.0.2"
    } else {
        "198.18.0.3"
    };

    // The lease hands it to its host only.
    let (status, granted) = p.post("/nodes/lease", theirs, json!({"running": []})).await;
    assert_eq!(status, StatusCode::OK, "{granted}");
    assert_eq!(granted["start"], json!([]), "{granted}");
    let (status, granted) = p.post("/nodes/lease", mine, json!({"running": []})).await;
    assert_eq!(status, StatusCode::OK, "{granted}");
    assert_eq!(granted["start"][0]["app"], id.as_str(), "{granted}");
    assert_eq!(granted["start"][0]["package_sha256"], sha.as_str());

    // Its package goes to its host only, by its SHA-256.
    let (status, _) = p.get(&format!("/nodes/packages/{sha}"), theirs).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for bad in ["..%2F..%2Fmse.db", "0000", &"g".repeat(64)] {
        let (status, _) = p.get(&format!("/nodes/packages/{bad}"), mine).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
    }
    let (status, _) = p.get(&format!("/nodes/packages/{sha}"), mine).await;
    assert_eq!(status, StatusCode::OK);

    // Another host's events about it are refused; its own host cannot
    // route the proxy to the API's machine or a third address.
    let event = |listen: &str| {
        json!({"app": id, "event": {"status": "initializing", "time": "2026-12-01T00:00:00Z",
               "listen": listen}})
    };
    let (status, _) = p
        .post(
            "/nodes/events",
            theirs,
            event(&format!("{my_address}:4000")),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for listen in [
        "127.0.0.1:9443",
        "198.18.0.77:4000",
        "nowhere",
        &format!("{my_address}:0"),
    ] {
        let (status, body) = p.post("/nodes/events", mine, event(listen)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{listen}: {body}");
    }
    let stored = p.state.store.app(&id).await.unwrap().unwrap();
    assert_eq!(stored.node_addr, None);
    assert_eq!(stored.status, mse_server::store::Status::Spawning);
    let (status, _) = p
        .post("/nodes/events", mine, event(&format!("{my_address}:4000")))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stored = p.state.store.app(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.node_addr.as_deref(),
        Some(&*format!("{my_address}:4000"))
    );
    assert_eq!(stored.status, mse_server::store::Status::Initializing);

    // Logs: of its own apps only, and bounded.
    let (status, _) = p
        .call(
            Method::POST,
            &format!("/nodes/logs/{id}"),
            Some(theirs),
            Some(json!("x")),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
