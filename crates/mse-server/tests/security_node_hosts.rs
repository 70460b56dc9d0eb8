//! Security suite: the node-host protocol. A join needs a token of this
//! platform (its secret and its CA's hash); a host's credential opens the
//! node routes only, and only for the apps placed on it; a host cannot
//! point the proxy anywhere but at its own advertised address; a package
//! goes only to the host of its app. What a host says is not believed: it
//! advertises the address its join comes from, is granted what its token
//! allows, stays out once revoked, and what it reports is cleaned and only
//! moves an app forward.

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{deploy_config, Platform};
use http_body_util::BodyExt;
use mse_api::node::JoinToken;
use mse_server::state::Connection;
use serde_json::{json, Value};
use tower::ServiceExt;

/// The address of the API's listener the hosts of these tests reach.
const API_ADDRESS: &str = "198.18.0.1:9444";

/// A platform whose own node has no room, so apps go to joined hosts.
async fn platform() -> Platform {
    platform_on(None).await
}

/// [`platform`] on the store at `database_url` (SQLite in its folder when
/// `None`).
async fn platform_on(database_url: Option<String>) -> Platform {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::settings(&dir.path().join("data"));
    settings.database_url = database_url;
    settings.capacity = mse_api::node::Capacity {
        memory_mb: 1,
        cores: 1,
    };
    let mse_server::Opened {
        state,
        runner,
        admin_token: token,
    } = mse_server::open(&settings).await.unwrap();
    Platform {
        dir,
        router: mse_server::api::router(state.clone()),
        state,
        runner,
        admin: token.unwrap(),
    }
}

/// A join token made with `options` (`POST /nodes/tokens`).
async fn join_token_with(p: &Platform, options: Value) -> String {
    let (status, body) = p.post("/nodes/tokens", &p.admin, options).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"].as_str().unwrap().to_string()
}

/// A join token for up to four hosts.
async fn join_token(p: &Platform) -> String {
    join_token_with(p, json!({"max_hosts": 4})).await
}

/// `request` as it reaches the API over a connection from `source`.
async fn call_from(p: &Platform, source: &str, request: Request<Body>) -> (StatusCode, Value) {
    let mut request = request;
    request.extensions_mut().insert(Connection {
        peer: SocketAddr::new(source.parse().unwrap(), 40_000),
        local: API_ADDRESS.parse().unwrap(),
    });
    let response = p.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// `POST /nodes/join` of `request` from `source`.
async fn join_from(p: &Platform, source: &str, request: &Value) -> (StatusCode, Value) {
    let http = Request::post("/nodes/join")
        .header("content-type", "application/json")
        .body(Body::from(request.to_string()))
        .unwrap();
    call_from(p, source, http).await
}

/// `POST /nodes/join` of `request` from the address it advertises (a
/// made-up one when it advertises none that parses).
async fn join_call(p: &Platform, request: &Value) -> (StatusCode, Value) {
    let source = request["advertise"]
        .as_str()
        .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
        .unwrap_or("198.18.0.2")
        .to_string();
    join_from(p, &source, request).await
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

/// Joins host `name` at `advertise`, from there; its credential.
async fn join(p: &Platform, token: &str, name: &str, advertise: &str) -> String {
    let (status, body) = join_call(p, &join_request(token, name, advertise)).await;
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
        let (status, body) = join_call(&p, &join_request(bad, "h1", "198.18.0.2")).await;
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
    // One host only: no refused join uses it up.
    let token = join_token_with(&p, json!({})).await;
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
            StatusCode::BAD_REQUEST,
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
        let (status, body) = join_call(&p, &request).await;
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
    let (status, body) = join_call(&p, &join_request(&token, "h1", "198.18.0.9")).await;
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
    assert_eq!(
        stored.status,
        mse_server::domain::lifecycle::Status::Spawning
    );
    let (status, _) = p
        .post("/nodes/events", mine, event(&format!("{my_address}:4000")))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stored = p.state.store.app(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.node_addr.as_deref(),
        Some(&*format!("{my_address}:4000"))
    );
    assert_eq!(
        stored.status,
        mse_server::domain::lifecycle::Status::Initializing
    );

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

/// Deploys an app as the admin; its id.
async fn deploy(p: &Platform, name: &str) -> String {
    let (status, app) = p.deploy(&p.admin, deploy_config(name, json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    app["id"].as_str().unwrap().to_string()
}

/// The node an app was placed on.
async fn node_of(p: &Platform, id: &str) -> Option<String> {
    p.state.store.app(id).await.unwrap().unwrap().node_owner
}

/// `GET /nodes`, node `id`.
async fn listed_node(p: &Platform, id: &str) -> Option<Value> {
    let (status, listed) = p.get("/nodes", &p.admin).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == id)
        .cloned()
}

/// A status event of app `id` as a host sends it.
fn event(id: &str, status: &str, extra: Value) -> Value {
    let mut event = json!({"status": status, "time": "2026-12-01T00:00:00Z"});
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            event[k] = v;
        }
    }
    json!({"app": id, "event": event})
}

/// The status of app `id` as its owner (the admin) reads it.
async fn app_status(p: &Platform, id: &str) -> Value {
    let (status, app) = p.get(&format!("/apps/{id}"), &p.admin).await;
    assert_eq!(status, StatusCode::OK, "{app}");
    app
}

#[tokio::test]
async fn a_host_advertises_only_the_address_its_join_comes_from() {
    let p = platform().await;
    let token = join_token(&p).await;
    // A listener of the platform, as `mse-server` records its own.
    p.state
        .routes
        .add_platform_listener("198.18.0.50:9443".parse().unwrap());
    let api_ip = API_ADDRESS.split(':').next().unwrap();
    // (source, advertised): the attacks of a host holding a valid token.
    for (source, advertise) in [
        ("127.0.0.1", "127.0.0.1"),
        ("198.18.0.2", "127.0.0.1"),
        ("::1", "::1"),
        ("198.18.0.2", "::ffff:127.0.0.1"),
        ("169.254.169.254", "169.254.169.254"),
        ("198.18.0.2", "169.254.169.254"),
        ("fe80::1", "fe80::1"),
        ("198.18.0.2", "10.9.9.9"),
        ("198.18.0.2", "224.0.0.1"),
        // The API's own address, as the join reached it, and another
        // listener of the platform.
        (api_ip, api_ip),
        ("198.18.0.50", "198.18.0.50"),
    ] {
        let (status, body) = join_from(&p, source, &join_request(&token, "evil", advertise)).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{source} advertising {advertise}: {body}"
        );
        assert!(error(&body).contains("advertise"), "{body}");
    }
    assert!(listed_node(&p, "evil").await.is_none());

    // The victim platform keeps working: an honest host joins from its
    // address and takes the next app.
    join(&p, &token, "honest", "198.18.0.3").await;
    let id = deploy(&p, "victim").await;
    assert_eq!(node_of(&p, &id).await.as_deref(), Some("honest"));
    let (status, _) = p.get("/health", &p.admin).await;
    assert_eq!(status, StatusCode::OK);

    // A host behind NAT advertises the address an admin approved on its
    // token, and no other; an admin cannot approve a platform address.
    let (status, body) = p
        .post(
            "/nodes/tokens",
            &p.admin,
            json!({"advertise": "169.254.169.254"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let natted = join_token_with(&p, json!({"advertise": "203.0.113.7"})).await;
    let (status, body) = join_from(
        &p,
        "198.18.0.9",
        &join_request(&natted, "nat", "203.0.113.8"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = join_from(
        &p,
        "198.18.0.9",
        &join_request(&natted, "nat", "203.0.113.7"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        listed_node(&p, "nat").await.unwrap()["address"],
        "203.0.113.7"
    );
}

#[tokio::test]
async fn a_host_is_granted_no_more_than_its_token_allows() {
    let p = platform().await;
    let token = join_token_with(&p, json!({"max_memory_mb": 1024, "max_cores": 2})).await;
    let mut liar = join_request(&token, "liar", "198.18.0.2");
    liar["capacity"] = json!({"memory_mb": 1_048_576, "cores": 1024});
    let (status, joined) = join_call(&p, &liar).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["capacity"], json!({"memory_mb": 1024, "cores": 2}));
    let listed = listed_node(&p, "liar").await.unwrap();
    assert_eq!(listed["capacity"], json!({"memory_mb": 1024, "cores": 2}));

    // Two apps of 512 MB and one core fill what it was granted; the third
    // goes nowhere rather than to the liar.
    for name in ["one", "two"] {
        let id = deploy(&p, name).await;
        assert_eq!(node_of(&p, &id).await.as_deref(), Some("liar"));
    }
    let (status, body) = p.deploy(&p.admin, deploy_config("three", json!({}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        listed_node(&p, "liar").await.unwrap()["apps"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A token that names no grant grants the default; a host declaring
    // less keeps its own.
    let plain = join_token_with(&p, json!({"max_hosts": 2})).await;
    let mut big = join_request(&plain, "big", "198.18.0.3");
    big["capacity"] = json!({"memory_mb": 1_048_576, "cores": 1024});
    let (status, joined) = join_call(&p, &big).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["capacity"], json!({"memory_mb": 4096, "cores": 4}));
    let mut small = join_request(&plain, "small", "198.18.0.4");
    small["capacity"] = json!({"memory_mb": 512, "cores": 1});
    let (_, joined) = join_call(&p, &small).await;
    assert_eq!(joined["capacity"], json!({"memory_mb": 512, "cores": 1}));
}

#[tokio::test]
async fn a_revoked_host_is_fenced_at_once_and_stays_out() {
    revoked_host_stays_out(platform().await).await;
}

#[tokio::test]
async fn a_revoked_host_is_fenced_at_once_and_stays_out_on_postgresql() {
    revoked_host_stays_out(platform_on(Some(mse_testkit::postgres_database())).await).await;
}

async fn revoked_host_stays_out(p: Platform) {
    let token = join_token_with(&p, json!({})).await;
    let host = join(&p, &token, "h1", "198.18.0.2").await;
    let id = deploy(&p, "placed").await;
    assert_eq!(node_of(&p, &id).await.as_deref(), Some("h1"));
    let (status, granted) = p.post("/nodes/lease", &host, json!({"running": []})).await;
    assert_eq!(status, StatusCode::OK, "{granted}");
    assert_eq!(granted["start"][0]["app"], id.as_str());
    let (status, body) = p
        .post(
            "/nodes/events",
            &host,
            event(&id, "initializing", json!({"listen": "198.18.0.2:4000"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let domain = app_status(&p, &id).await["domain_name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(p.state.routes.get(&domain).is_some());

    let (status, _) = p.post("/nodes/h1/revoke", &p.admin, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    // At once: its lease is refused, its app ended, its route gone.
    let (status, _) = p
        .post("/nodes/lease", &host, json!({"running": [id]}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = p
        .post("/nodes/events", &host, event(&id, "running", json!({})))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let app = app_status(&p, &id).await;
    assert_eq!(app["status"], "on_error", "{app}");
    assert_eq!(app["reason"], "node host revoked", "{app}");
    assert!(p.state.routes.get(&domain).is_none());
    let listed = listed_node(&p, "h1").await.unwrap();
    assert_eq!(listed["barred"], true, "{listed}");
    assert_eq!(listed["live"], false, "{listed}");
    // No new app goes there.
    let (status, body) = p.deploy(&p.admin, deploy_config("next", json!({}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    // It cannot come back: not with its token, not with a new one, not
    // under its name.
    let (status, body) = join_call(&p, &join_request(&token, "h1", "198.18.0.2")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(error(&body).contains("/nodes/h1/allow"), "{body}");
    let fresh = join_token_with(&p, json!({})).await;
    let (status, body) = join_call(&p, &join_request(&fresh, "h1", "198.18.0.2")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Its single-use token has no use left for another name either.
    let (status, body) = join_call(&p, &join_request(&token, "h1b", "198.18.0.2")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(listed_node(&p, "h1b").await.is_none());

    // Until an admin allows it (only an admin).
    let (_, bob) = p.user("bob").await;
    let (status, _) = p.post("/nodes/h1/allow", &bob, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = p.post("/nodes/h1/allow", &p.admin, json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = p.post("/nodes/h1/allow", &p.admin, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    join(&p, &token, "h1", "198.18.0.2").await;
    let listed = listed_node(&p, "h1").await.unwrap();
    assert_eq!(listed["barred"], false, "{listed}");
    assert_eq!(listed["live"], true, "{listed}");
}

#[tokio::test]
async fn a_join_token_joins_at_most_its_count_and_can_be_listed_and_revoked() {
    join_token_count(platform().await).await;
}

#[tokio::test]
async fn a_join_token_joins_at_most_its_count_and_can_be_listed_and_revoked_on_postgresql() {
    join_token_count(platform_on(Some(mse_testkit::postgres_database())).await).await;
}

async fn join_token_count(p: Platform) {
    let (status, created) = p.post("/nodes/tokens", &p.admin, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["max_hosts"], 1);
    join(&p, &token, "h1", "198.18.0.2").await;
    let (status, body) = join_call(&p, &join_request(&token, "h2", "198.18.0.3")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(error(&body).contains("h1"), "{body}");
    // Its one host joins again under its name once its lease ran out.
    p.state.store.fence_remote("h1").await.unwrap();
    join(&p, &token, "h1", "198.18.0.2").await;

    // Concurrent joins never exceed the count.
    let pair = join_token_with(&p, json!({"max_hosts": 2})).await;
    let requests: Vec<Value> = (0..6)
        .map(|i| join_request(&pair, &format!("c{i}"), &format!("198.18.0.{}", 10 + i)))
        .collect();
    let joins = futures_join(&p, &requests).await;
    let joined = joins.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(joined, 2, "{joins:?}");
    assert!(joins
        .iter()
        .all(|s| *s == StatusCode::OK || *s == StatusCode::FORBIDDEN));

    // Listed (admins only, never the secret) and revoked.
    let (_, bob) = p.user("bob").await;
    let (status, _) = p.get("/nodes/tokens", &bob).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, listed) = p.get("/nodes/tokens", &p.admin).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let secret = JoinToken::parse(&token).unwrap();
    assert!(!listed.to_string().contains(&hex::encode(secret.secret)));
    let mine = listed_token(&listed, &id);
    assert_eq!(mine["hosts"], json!(["h1"]), "{mine}");
    assert_eq!(mine["usable"], false, "{mine}");
    assert_eq!(mine["revoked"], false, "{mine}");

    let (status, created) = p
        .post("/nodes/tokens", &p.admin, json!({"max_hosts": 3}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let spare = created["token"].as_str().unwrap().to_string();
    let spare_id = created["id"].as_str().unwrap().to_string();
    let (_, listed) = p.get("/nodes/tokens", &p.admin).await;
    let entry = listed_token(&listed, &spare_id);
    assert_eq!(entry["usable"], true, "{listed}");
    let (status, _) = p
        .call(
            Method::DELETE,
            &format!("/nodes/tokens/{spare_id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = p
        .call(
            Method::DELETE,
            &format!("/nodes/tokens/{spare_id}"),
            Some(&p.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for unknown in ["0000000000000000", "nothex", "..%2F.."] {
        let (status, _) = p
            .call(
                Method::DELETE,
                &format!("/nodes/tokens/{unknown}"),
                Some(&p.admin),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
    }
    let (status, body) = join_call(&p, &join_request(&spare, "late", "198.18.0.30")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(error(&body).contains("revoked"), "{body}");
    let (_, listed) = p.get("/nodes/tokens", &p.admin).await;
    let entry = listed_token(&listed, &spare_id);
    assert_eq!(entry["revoked"], true, "{listed}");
    assert_eq!(entry["usable"], false, "{listed}");
}

/// The join token `id` in the answer of `GET /nodes/tokens` (tokens made
/// in the same second list in any order).
fn listed_token<'a>(listed: &'a Value, id: &str) -> &'a Value {
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("{id} is listed: {listed}"))
}

/// Joins `requests` at once; their statuses.
async fn futures_join(p: &Platform, requests: &[Value]) -> Vec<StatusCode> {
    let mut tasks = tokio::task::JoinSet::new();
    for request in requests {
        let router = p.router.clone();
        let request = request.clone();
        tasks.spawn(async move {
            let mut http = Request::post("/nodes/join")
                .header("content-type", "application/json")
                .body(Body::from(request.to_string()))
                .unwrap();
            http.extensions_mut().insert(Connection {
                peer: SocketAddr::new(request["advertise"].as_str().unwrap().parse().unwrap(), 1),
                local: API_ADDRESS.parse().unwrap(),
            });
            router.oneshot(http).await.unwrap().status()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = tasks.join_next().await {
        statuses.push(status.unwrap());
    }
    statuses
}

#[tokio::test]
async fn node_names_are_host_names() {
    let p = platform().await;
    let token = join_token_with(&p, json!({})).await;
    for name in [
        "..",
        ".",
        "a..b",
        "a/b",
        "../h1",
        "-x",
        "x-",
        "a_b",
        "\u{1b}[2J",
        &"x".repeat(64),
        "tokens",
    ] {
        let (status, body) = join_call(&p, &join_request(&token, name, "198.18.0.2")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}: {body}");
        assert!(
            error(&body).contains("host name") || error(&body).contains("route"),
            "{body}"
        );
        assert!(!error(&body).contains('\u{1b}'), "{body}");
    }
    // None of them used the token.
    join(&p, &token, "node-1.example", "198.18.0.2").await;
}

#[tokio::test]
async fn deleting_a_host_ends_its_apps_first() {
    let p = platform().await;
    let token = join_token(&p).await;
    let host = join(&p, &token, "h1", "198.18.0.2").await;
    let id = deploy(&p, "placed").await;
    assert_eq!(node_of(&p, &id).await.as_deref(), Some("h1"));
    let (_, bob) = p.user("bob").await;
    let (status, _) = p.call(Method::DELETE, "/nodes/h1", Some(&bob), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = p
        .call(Method::DELETE, "/nodes/h1", Some(&p.admin), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let app = app_status(&p, &id).await;
    assert_eq!(app["status"], "on_error", "{app}");
    assert_eq!(app["reason"], "node host removed", "{app}");
    assert!(listed_node(&p, "h1").await.is_none());
    let (status, _) = p.post("/nodes/lease", &host, json!({"running": []})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = p
        .call(Method::DELETE, "/nodes/h1", Some(&p.admin), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The platform's own live node is not removed under it.
    let (status, body) = p
        .call(Method::DELETE, "/nodes/local", Some(&p.admin), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // A removed host may join again.
    join(&p, &token, "h1", "198.18.0.2").await;
}

/// Takes app `id` as its host and reports it initializing.
async fn take_and_initialize(p: &Platform, host: &str, id: &str, address: &str) {
    let (status, granted) = p.post("/nodes/lease", host, json!({"running": []})).await;
    assert_eq!(status, StatusCode::OK, "{granted}");
    assert_eq!(granted["start"][0]["app"], id, "{granted}");
    let (status, body) = p
        .post(
            "/nodes/events",
            host,
            event(
                id,
                "initializing",
                json!({"listen": format!("{address}:4000")}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

#[tokio::test]
async fn a_host_writes_no_escape_sequence_into_a_log_or_a_status() {
    let p = platform().await;
    let token = join_token(&p).await;
    let host = join(&p, &token, "h1", "198.18.0.2").await;
    let id = deploy(&p, "victim").await;
    take_and_initialize(&p, &host, &id, "198.18.0.2").await;

    let hostile = "clear\u{1b}[2J title\u{1b}]0;owned\u{7} link \u{1b}]8;;https://evil.test\u{1b}\\click\u{1b}]8;;\u{1b}\\ csi\u{9b}31m bell\u{7}\r\n\tnext line\n";
    let request = Request::post(format!("/nodes/logs/{id}"))
        .header("authorization", format!("Bearer {host}"))
        .body(Body::from(hostile.as_bytes().to_vec()))
        .unwrap();
    let (status, body) = call_from(&p, "198.18.0.2", request).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, log) = p.get(&format!("/apps/{id}/logs"), &p.admin).await;
    assert_eq!(status, StatusCode::OK);
    let log = log.as_str().unwrap().to_string();
    assert!(
        !log.chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'),
        "{log:?}"
    );
    assert!(
        log.contains("click") && log.contains("\tnext line\n"),
        "{log:?}"
    );

    // Status texts: on one line, no control character, bounded.
    let (status, body) = p
        .post(
            "/nodes/events",
            &host,
            event(
                &id,
                "running",
                json!({"certificate": {"issuer": "\u{1b}]0;owned\u{7}CN=x",
                        "not_after": "soon\u{1b}[2J", "error": "e".repeat(100_000)}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = p
        .post(
            "/nodes/events",
            &host,
            event(
                &id,
                "on_error",
                json!({"reason": format!("\u{1b}[2Jforged\n{}", "r".repeat(100_000))}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let app = app_status(&p, &id).await;
    for text in [
        &app["reason"],
        &app["certificate"]["issuer"],
        &app["certificate"]["not_after"],
        &app["certificate"]["error"],
    ] {
        let text = text.as_str().unwrap_or_default();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(
            text.len() <= mse_api::text::MAX_STATUS_TEXT,
            "{}",
            text.len()
        );
    }
    assert!(
        app["reason"].as_str().unwrap().starts_with("[2Jforged r"),
        "{app}"
    );
    assert_eq!(app["node"], "h1", "{app}");
}

#[tokio::test]
async fn a_host_report_moves_an_app_forward_only() {
    let p = platform().await;
    let token = join_token(&p).await;
    let host = join(&p, &token, "h1", "198.18.0.2").await;
    let id = deploy(&p, "victim").await;
    // `running` straight from `spawning` skips a state.
    let (status, granted) = p.post("/nodes/lease", &host, json!({"running": []})).await;
    assert_eq!(status, StatusCode::OK, "{granted}");
    let (status, body) = p
        .post("/nodes/events", &host, event(&id, "running", json!({})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(app_status(&p, &id).await["status"], "spawning");
    let (status, _) = p
        .post(
            "/nodes/events",
            &host,
            event(&id, "initializing", json!({"listen": "198.18.0.2:4000"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // The owner stops it; the host says so; then it claims it runs again.
    let (status, _) = p
        .post(&format!("/apps/{id}/stop"), &p.admin, json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = p
        .post("/nodes/events", &host, event(&id, "stopped", json!({})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app_status(&p, &id).await["status"], "stopped");
    for state in ["running", "initializing", "on_error", "stopped"] {
        let (status, body) = p
            .post(
                "/nodes/events",
                &host,
                event(
                    &id,
                    state,
                    json!({"listen": "198.18.0.2:4000", "reason": "forged"}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{state}: {body}");
    }
    let app = app_status(&p, &id).await;
    assert_eq!(app["status"], "stopped", "{app}");
    assert_ne!(app["reason"], "forged", "{app}");
}

/// `PUT /nodes/storage/{app}/blobs/{blob}` as `host`, the blob's bytes
/// being `body` as JSON.
async fn put_blob(
    p: &Platform,
    host: &str,
    app: &str,
    blob: &str,
    body: Value,
) -> (StatusCode, Value) {
    let path = format!("/nodes/storage/{app}/blobs/{blob}");
    p.call(Method::PUT, &path, Some(host), Some(body)).await
}

/// The bytes a blob sent as the JSON `value` is (what `Platform::call`
/// sends), and their name.
fn blob(value: &Value) -> (Vec<u8>, String) {
    use sha2::Digest as _;
    let bytes = value.to_string().into_bytes();
    let id = hex::encode(sha2::Sha256::digest(&bytes));
    (bytes, id)
}

#[tokio::test]
async fn a_host_reaches_only_the_storage_of_its_own_apps_and_cannot_roll_it_back() {
    let p = platform().await;
    let token = join_token(&p).await;
    let h1 = join(&p, &token, "h1", "198.18.0.2").await;
    let h2 = join(&p, &token, "h2", "198.18.0.3").await;
    let cap: u64 = 1024 * 1024;
    let (status, app) = p
        .deploy(
            &p.admin,
            deploy_config("kept", json!({ "storage_bytes": cap })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let id = app["id"].as_str().unwrap().to_string();
    let (mine, theirs) = if node_of(&p, &id).await.as_deref() == Some("h1") {
        (&h1, &h2)
    } else {
        (&h2, &h1)
    };
    // Its host is told where its storage is; nothing is held yet.
    let (status, granted) = p.post("/nodes/lease", mine, json!({"running": []})).await;
    assert_eq!(status, StatusCode::OK, "{granted}");
    let storage = &granted["start"][0]["storage"];
    assert_eq!(storage["cap_bytes"], cap, "{granted}");
    assert_eq!(storage["version"], 0, "{granted}");
    assert!(storage["scope"]
        .as_str()
        .unwrap()
        .ends_with("/default/kept"));

    let head = format!("/nodes/storage/{id}");
    let (status, _) = p.get(&head, theirs).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, held) = p.get(&head, mine).await;
    assert_eq!(status, StatusCode::OK, "{held}");
    assert_eq!(held["version"], 0);

    // A blob: named by its hash, by its app's host only.
    let first = json!("sealed chunk one");
    let (bytes, first_id) = blob(&first);
    let (status, _) = put_blob(&p, theirs, &id, &first_id, first.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (other_bytes, other_id) = blob(&json!("another chunk"));
    let (status, body) = put_blob(&p, mine, &id, &other_id, first.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = put_blob(&p, mine, &id, &first_id, first.clone()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // A commit: a later version, naming held blobs only, within the cap.
    let commit = |version: u64, blobs: Vec<&str>, size: u64| json!({"version": version, "manifest": "bWFuaWZlc3Q=", "blobs": blobs, "size": size});
    let head_path = format!("{head}/head");
    let (status, body) = p
        .post(&head_path, theirs, commit(1, vec![&first_id], 10))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = p
        .post(&head_path, mine, commit(1, vec![&first_id, &other_id], 10))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(error(&body).contains("is not stored"), "{body}");
    let (status, body) = p
        .post(&head_path, mine, commit(1, vec![&first_id], cap + 1))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = p
        .post(&head_path, mine, commit(2, vec![&first_id], 10))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // A replay, or an older snapshot, never replaces it.
    for version in [1, 2] {
        let (status, body) = p
            .post(&head_path, mine, commit(version, vec![&first_id], 10))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{version}: {body}");
        assert!(error(&body).contains("holds version 2"), "{body}");
    }
    let (status, held) = p.get(&head, mine).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(held["version"], 2);
    assert_eq!(held["blobs"], json!([first_id]));
    let blob_path = format!("{head}/blobs/{first_id}");
    let (status, _) = p.get(&blob_path, theirs).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = p
        .router
        .clone()
        .oneshot(
            Request::builder()
                .uri(&blob_path)
                .header("authorization", format!("Bearer {mine}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let served = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(served.as_ref(), bytes.as_slice());
    let _ = other_bytes;

    // The blobs a storage holds are bounded by its cap.
    let mut refused = None;
    for n in 0..8 {
        let big = json!(format!("{n}{}", "a".repeat(1024 * 1024 - 16)));
        let (_, big_id) = blob(&big);
        let (status, body) = put_blob(&p, mine, &id, &big_id, big).await;
        if status != StatusCode::NO_CONTENT {
            refused = Some((n, status, body));
            break;
        }
    }
    let (n, status, body) = refused.expect("a storage over its budget is refused");
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        (2..=4).contains(&n),
        "refused after {n} blobs of 1 MiB: {body}"
    );
}
