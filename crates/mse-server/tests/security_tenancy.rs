//! One account against another on a shared platform, replayed against the
//! server: a custom domain belongs to its first deployer, no name under the
//! base domain is a custom domain, a domain leads to one live app, and
//! quotas bound what each account runs and stores. Each attack fails while
//! the victim's app keeps serving.

mod common;

use std::collections::HashSet;

use axum::http::{Method, StatusCode};
use common::{deploy_config, owner_certificate, pinned_request, platform, platform_as, Platform};
use mse_server::domain::app::{AppSpec, NewApp};
use mse_server::store::{Store, StoreError};
use mse_testkit::wait;
use serde_json::{json, Value};

/// A platform whose process is the API alone: deploys are stored as
/// `spawning` (live) and no node runs them, so a quota is reached without
/// starting a node per app.
async fn api_only() -> Platform {
    platform_as(mse_server::Roles {
        api: true,
        proxy: false,
        node: false,
    })
    .await
}

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

fn ssl(domain: &str, chain: &str) -> Value {
    json!({"ssl": {"domain_name": domain, "certificate": chain}})
}

/// The victim's app, through the proxy by its domain: the certificate it
/// shows is `cert` (a handshake pinned to it succeeds) and the app answers.
async fn serves(proxy: std::net::SocketAddr, domain: &str, cert: &[u8]) {
    let status = pinned_request(proxy, domain, cert, "GET", "/health", Vec::new())
        .await
        .unwrap_or_else(|e| panic!("{domain} through the proxy: {e}"));
    assert_eq!(status, StatusCode::OK, "{domain} through the proxy");
}

async fn live_apps(p: &Platform, token: &str) -> usize {
    let (_, apps) = p.get("/apps", token).await;
    apps.as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            matches!(
                a["status"].as_str(),
                Some("spawning" | "initializing" | "running")
            )
        })
        .count()
}

#[tokio::test]
async fn another_users_custom_domain_is_refused_and_its_owner_keeps_serving_it() {
    let p = platform().await;
    let (_, bob) = p.user("bob").await;
    let (_, mallory) = p.user("mallory").await;
    let proxy = p.proxy().await;
    let (chain, key, der) = owner_certificate("shop.example.com");
    let (status, app, code_key) = p
        .deploy_keyed(&bob, deploy_config("shop", ssl("shop.example.com", &chain)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    p.configure(&bob, &app, &code_key, Some(&key)).await;
    serves(proxy, "shop.example.com", &der).await;

    // The attack: the victim's domain with its public chain, no key needed;
    // in any case, under any name or project.
    p.post("/projects", &mallory, json!({"name": "p"})).await;
    for (name, project, domain) in [
        ("shop", "default", "shop.example.com"),
        ("other", "p", "SHOP.Example.COM"),
    ] {
        let config = deploy_config(name, ssl(domain, &chain));
        let config = deploy_config(name, json!({"project": project, "ssl": config["ssl"]}));
        let (status, body) = p.deploy(&mallory, config).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(
            error(&body).contains("domain shop.example.com belongs to another account")
                && error(&body).contains("release"),
            "{body}"
        );
    }
    let (_, apps) = p.get("/apps", &mallory).await;
    assert_eq!(apps, json!([]), "nothing of the attacker's is stored");

    let app = p
        .wait_app(&bob, app["id"].as_str().unwrap(), "still running", |_| true)
        .await;
    assert_eq!(app["status"], "running");
    let route = p.state.routes.get("shop.example.com").unwrap();
    assert_eq!(route.app_id, app["id"].as_str().unwrap());
    serves(proxy, "shop.example.com", &der).await;
    let (_, mine) = p.get("/domains", &bob).await;
    assert_eq!(mine[0]["name"], "shop.example.com");
    let (_, theirs) = p.get("/domains", &mallory).await;
    assert_eq!(theirs, json!([]));
    p.stop_app(&bob, app["id"].as_str().unwrap()).await;
}

#[tokio::test]
async fn an_app_uuid_domain_or_any_name_under_the_base_domain_is_refused_as_a_custom_domain() {
    let p = platform().await;
    let (_, bob) = p.user("bob").await;
    let (_, mallory) = p.user("mallory").await;
    let proxy = p.proxy().await;
    let (status, app, code_key) = p.deploy_keyed(&bob, deploy_config("site", json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let (app, ratls) = p.configure(&bob, &app, &code_key, None).await;
    let domain = app["domain_name"].as_str().unwrap().to_string();
    assert!(domain.ends_with(".localhost"));
    serves(proxy, &domain, &ratls).await;

    // The attack: the victim's uuid domain as an `[ssl]` domain, with a
    // certificate the attacker made for it; and other names of the platform.
    for name in [
        domain.clone(),
        domain.to_uppercase(),
        format!("cfg.{domain}"),
        "anything.localhost".to_string(),
    ] {
        let (chain, _, _) = owner_certificate(&name.to_ascii_lowercase());
        let (status, body) = p
            .deploy(&mallory, deploy_config("squat", ssl(&name, &chain)))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
        assert!(
            error(&body).contains("is the platform's")
                && error(&body).contains("use a domain of your own"),
            "{name}: {body}"
        );
    }
    let (_, apps) = p.get("/apps", &mallory).await;
    assert_eq!(apps, json!([]));

    let id = app["id"].as_str().unwrap();
    let (_, app) = p.get(&format!("/apps/{id}"), &bob).await;
    assert_eq!(app["status"], "running");
    assert_eq!(p.state.routes.get(&domain).unwrap().app_id, id);
    serves(proxy, &domain, &ratls).await;
    p.stop_app(&bob, id).await;
}

#[tokio::test]
async fn a_domain_leads_to_one_live_app_even_of_its_owner() {
    let p = api_only().await;
    let (_, bob) = p.user("bob").await;
    let (chain, _, _) = owner_certificate("one.example.com");
    let (status, first) = p
        .deploy(&bob, deploy_config("first", ssl("one.example.com", &chain)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    p.post("/projects", &bob, json!({"name": "p"})).await;
    for (name, project) in [("second", "default"), ("first", "p")] {
        let config = json!({"project": project, "ssl": ssl("one.example.com", &chain)["ssl"]});
        let (status, body) = p.deploy(&bob, deploy_config(name, config)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(
            error(&body).contains("leads to your live app `first` in project `default`"),
            "{body}"
        );
    }
    p.stop_app(&bob, first["id"].as_str().unwrap()).await;
    let (status, second) = p
        .deploy(
            &bob,
            deploy_config("second", ssl("one.example.com", &chain)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["domain_name"], "one.example.com");
}

#[tokio::test]
async fn a_redeploy_of_the_same_name_keeps_its_custom_domain_and_its_route() {
    let p = platform().await;
    let (_, bob) = p.user("bob").await;
    let (chain, _, _) = owner_certificate("again.example.com");
    let config = deploy_config("again", ssl("again.example.com", &chain));
    let (status, first) = p.deploy(&bob, config.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let first_id = first["id"].as_str().unwrap();
    p.wait_app(&bob, first_id, "initializing", |a| {
        a["status"] == "initializing"
    })
    .await;
    // As `mse deploy -y` replaces it: stop, then deploy the same name.
    p.stop_app(&bob, first_id).await;
    let (status, second) = p.deploy(&bob, config).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["domain_name"], "again.example.com");
    let second_id = second["id"].as_str().unwrap();
    p.wait_app(&bob, second_id, "initializing", |a| {
        a["status"] == "initializing"
    })
    .await;
    let route = p.state.routes.get("again.example.com").unwrap();
    assert_eq!(route.app_id, second_id, "the domain leads to the new app");
    p.stop_app(&bob, second_id).await;
}

#[tokio::test]
async fn an_administrator_lists_and_releases_a_domain_and_only_then_another_user_takes_it() {
    let p = api_only().await;
    let (_, bob) = p.user("bob").await;
    let (_, mallory) = p.user("mallory").await;
    let (chain, _, _) = owner_certificate("moved.example.com");
    let config = deploy_config("site", ssl("moved.example.com", &chain));
    let (status, app) = p.deploy(&bob, config.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{app}");

    let path = "/domains/moved.example.com";
    let (status, body) = p.call(Method::DELETE, path, Some(&mallory), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = p.call(Method::DELETE, path, Some(&bob), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, all) = p.get("/domains", &p.admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all[0]["name"], "moved.example.com");
    assert_eq!(all[0]["user_name"], "bob");

    // Released while bob's app is live: it keeps the domain until it stops.
    let (status, _) = p.call(Method::DELETE, path, Some(&p.admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = p.call(Method::DELETE, path, Some(&p.admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = p.deploy(&mallory, config.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        error(&body).contains("leads to another account's live app"),
        "{body}"
    );
    let (_, all) = p.get("/domains", &p.admin).await;
    assert_eq!(all, json!([]), "the refused deploy claimed nothing");

    p.stop_app(&bob, app["id"].as_str().unwrap()).await;
    let (status, body) = p.deploy(&mallory, config.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, theirs) = p.get("/domains", &mallory).await;
    assert_eq!(theirs[0]["name"], "moved.example.com");
    let (_, mine) = p.get("/domains", &bob).await;
    assert_eq!(mine, json!([]));
    let (status, body) = p.deploy(&bob, config).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        error(&body).contains("belongs to another account"),
        "{body}"
    );
}

/// A `spawning` app of `project_id` in `store`.
fn new_app(project_id: &str, name: &str, domain: &str, origin: &str) -> NewApp {
    let id = mse_server::store::new_id();
    NewApp {
        config_domain: format!("{id}.localhost"),
        id,
        project_id: project_id.to_string(),
        domain: domain.to_string(),
        spec: AppSpec {
            name: name.to_string(),
            resource: "free".into(),
            docker: common::IMAGE.into(),
            python_application: "app:app".into(),
            healthcheck_endpoint: "/health".into(),
            certificate_origin: mse_server::domain::lifecycle::CertificateOrigin::parse(origin)
                .unwrap(),
            ssl_certificate: None,
            code_sha256: "00".repeat(32),
            code_bytes: 1000,
            enclave_size: "1G".into(),
            storage_bytes: None,
        },
        created_at: chrono::DateTime::UNIX_EPOCH,
        // Far in the future: never expires in a test.
        expires_at: chrono::DateTime::from_timestamp(8_000_000_000, 0).unwrap(),
    }
}

/// Two pools on one store (two API processes), and two users whose live
/// apps are limited to 100: (first pool, second pool, the default project
/// of each user, bob's id).
async fn two_processes(url: &str) -> (Store, Store, String, String, String) {
    let first = Store::open(url).await.unwrap();
    let second = Store::open(url).await.unwrap();
    let bob = first.create_user("bob", false, 0).await.unwrap();
    let mallory = first.create_user("mallory", false, 0).await.unwrap();
    let room = mse_server::domain::accounts::QuotaChange {
        max_live_apps: Some(Some(100)),
        max_stored_bytes: None,
    };
    for id in [&bob.id, &mallory.id] {
        assert!(first.set_user_quota(id, &room).await.unwrap());
    }
    let project = |id: String| {
        let first = first.clone();
        async move { first.project(&id, "default").await.unwrap().unwrap().id }
    };
    let (bob_project, mallory_project) = (project(bob.id.clone()).await, project(mallory.id).await);
    (first, second, bob_project, mallory_project, bob.id)
}

/// How many domains each race claims.
const DOMAINS: usize = 12;

/// Bob and mallory, each through its own process, claim the same domains
/// at once: for each, exactly one wins, owns it and has the only live app
/// on it; the other is told it is another account's. Then two apps of bob
/// on one domain at once: one wins.
async fn domain_race(url: &str) {
    let (a, b, bob, mallory, _) = two_processes(url).await;
    let mut races = tokio::task::JoinSet::new();
    for i in 0..DOMAINS {
        let domain = format!("race-{i}.example.com");
        for (store, project) in [(a.clone(), bob.clone()), (b.clone(), mallory.clone())] {
            let domain = domain.clone();
            races.spawn(async move {
                let won = store
                    .insert_app(&new_app(&project, &format!("site-{i}"), &domain, "owner"))
                    .await;
                (domain, project, won)
            });
        }
    }
    let mut winners = Vec::new();
    while let Some(race) = races.join_next().await {
        let (domain, project, won) = race.unwrap();
        match won {
            Ok(app) => winners.push((domain, project, app.id)),
            Err(StoreError::DomainTaken(name)) => assert_eq!(name, domain),
            Err(e) => panic!("{domain}: {e}"),
        }
    }
    let won: HashSet<&String> = winners.iter().map(|(d, _, _)| d).collect();
    assert_eq!(winners.len(), DOMAINS, "one winner per domain: {winners:?}");
    assert_eq!(won.len(), DOMAINS, "a domain won twice: {winners:?}");
    let owners = a.domains(None).await.unwrap();
    assert_eq!(owners.len(), DOMAINS);
    for (domain, project, id) in &winners {
        let owner = owners.iter().find(|d| &d.name == domain).unwrap();
        let user = if project == &bob { "bob" } else { "mallory" };
        assert_eq!(owner.user_name, user, "{domain}");
        let (live, _) = b.live_app_on_domain(domain).await.unwrap().unwrap();
        assert_eq!(&live.id, id);
    }

    let (first, second) = (
        new_app(&bob, "one", "twice.example.com", "owner"),
        new_app(&bob, "two", "twice.example.com", "owner"),
    );
    let (one, two) = tokio::join!(a.insert_app(&first), b.insert_app(&second));
    assert!(
        one.is_ok() != two.is_ok(),
        "one live app per domain: {one:?} {two:?}"
    );
    let lost = if one.is_ok() { two } else { one };
    assert!(
        matches!(&lost, Err(e) if mse_server::store::is_conflict(e)),
        "{lost:?}"
    );
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}?mode=rwc", dir.path().join("mse.db").display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_users_claiming_one_domain_at_once_exactly_one_wins_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    domain_race(&sqlite_url(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_users_claiming_one_domain_at_once_exactly_one_wins_on_postgresql() {
    domain_race(&mse_testkit::postgres_database()).await;
}

#[tokio::test]
async fn the_eleventh_live_app_is_refused_naming_the_quota_and_a_stopped_app_frees_its_slot() {
    let p = api_only().await;
    let (_, bob) = p.user("bob").await;
    let (_, alice) = p.user("alice").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let (status, app) = p
            .deploy(&bob, deploy_config(&format!("app-{i}"), json!({})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{app}");
        ids.push(app["id"].as_str().unwrap().to_string());
    }
    let (status, body) = p.deploy(&bob, deploy_config("app-10", json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    for part in [
        "quota of live apps",
        "you have 10 live apps",
        "of at most 10",
        "mse stop",
    ] {
        assert!(error(&body).contains(part), "`{part}` missing: {body}");
    }
    assert_eq!(live_apps(&p, &bob).await, 10);
    // Another account is not held back by bob's use.
    let (status, body) = p.deploy(&alice, deploy_config("app-0", json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    p.stop_app(&bob, &ids[0]).await;
    let (status, body) = p.deploy(&bob, deploy_config("app-10", json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn removing_apps_frees_stored_bytes_and_an_upload_over_the_quota_is_not_kept() {
    let p = api_only().await;
    let (bob_id, bob) = p.user("bob").await;
    let package = common::scaffold_package().0.len() as i64;
    let (status, body) = p
        .call(
            Method::PUT,
            &format!("/users/{bob_id}/quota"),
            Some(&p.admin),
            Some(json!({"max_stored_bytes": package * 5 / 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        let (status, app) = p.deploy(&bob, deploy_config(name, json!({}))).await;
        assert_eq!(status, StatusCode::CREATED, "{app}");
        assert_eq!(app["code_bytes"], package);
        ids.push(app["id"].as_str().unwrap().to_string());
    }
    let refused = |body: &Value| {
        for part in [
            "quota of stored bytes",
            &format!("your apps keep {} bytes", 2 * package),
            &format!("of at most {}", package * 5 / 2),
            &format!("this one adds {package}"),
            "mse remove",
        ] {
            assert!(error(body).contains(part), "`{part}` missing: {body}");
        }
    };
    let (status, body) = p.deploy(&bob, deploy_config("three", json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    refused(&body);
    let incoming = p.dir.path().join("data/apps/.incoming");
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0, "not kept");

    // A stopped app still keeps its package; a removed one does not.
    p.stop_app(&bob, &ids[0]).await;
    let (status, body) = p.deploy(&bob, deploy_config("three", json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    refused(&body);
    let (status, _) = p
        .call(
            Method::DELETE,
            &format!("/apps/{}", ids[0]),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = p.deploy(&bob, deploy_config("three", json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, quota) = p.get(&format!("/users/{bob_id}/quota"), &bob).await;
    assert_eq!(quota["stored_bytes"], 2 * package, "{quota}");
    assert_eq!(quota["live_apps"], 2, "{quota}");
}

#[tokio::test]
async fn an_administrator_raises_a_users_quota_and_only_an_administrator_may() {
    let p = api_only().await;
    let (bob_id, bob) = p.user("bob").await;
    let (alice_id, alice) = p.user("alice").await;
    let path = format!("/users/{bob_id}/quota");
    let (status, quota) = p.get(&path, &bob).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        quota,
        json!({"max_live_apps": 10, "max_stored_bytes": 2_i64 << 30, "live_apps": 0, "stored_bytes": 0})
    );
    let (status, _) = p.get(&path, &alice).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another user's quota");
    let (status, _) = p
        .call(
            Method::PUT,
            &path,
            Some(&bob),
            Some(json!({"max_live_apps": 100})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let set = |n: Value| {
        p.call(
            Method::PUT,
            &path,
            Some(&p.admin),
            Some(json!({"max_live_apps": n})),
        )
    };
    let (status, body) = set(json!(1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["max_live_apps"], 1);
    assert_eq!(body["max_stored_bytes"], 2_i64 << 30, "kept");
    let (status, _) = p.deploy(&bob, deploy_config("one", json!({}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = p.deploy(&bob, deploy_config("two", json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(error(&body).contains("of at most 1"), "{body}");
    let (status, body) = set(json!(2)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = p.deploy(&bob, deploy_config("two", json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body) = set(Value::Null).await;
    assert_eq!(body["max_live_apps"], 10, "null is the default again");
    assert_eq!(body["live_apps"], 2);
    let (status, body) = p
        .call(
            Method::PUT,
            &format!("/users/{alice_id}x/quota"),
            Some(&p.admin),
            Some(json!({"max_live_apps": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, quota) = p.get(&format!("/users/{alice_id}/quota"), &p.admin).await;
    assert_eq!(quota["max_live_apps"], 10, "alice untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_deploys_at_once_start_no_more_apps_than_the_quota() {
    let p = std::sync::Arc::new(api_only().await);
    let (_, bob) = p.user("bob").await;
    let mut deploys = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (p, bob) = (p.clone(), bob.clone());
        deploys.spawn(async move {
            p.deploy(&bob, deploy_config(&format!("burst-{i}"), json!({})))
                .await
        });
    }
    let mut results = Vec::new();
    while let Some(result) = deploys.join_next().await {
        results.push(result.unwrap());
    }
    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let refused: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::FORBIDDEN)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created, 10, "{results:?}");
    assert_eq!(refused.len(), 30, "{results:?}");
    assert!(refused
        .iter()
        .all(|b| error(b).contains("quota of live apps")));
    assert_eq!(live_apps(&p, &bob).await, 10);
}

/// 32 inserts of apps of `project`, half through each pool, all at once:
/// how many won. Any refusal is a quota's.
async fn insert_race(a: &Store, b: &Store, project: &str) -> usize {
    let mut races = tokio::task::JoinSet::new();
    for i in 0..32 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let project = project.to_string();
        races.spawn(async move {
            let name = format!("app-{i}");
            let domain = format!("{name}.{project}.example.com");
            store
                .insert_app(&new_app(&project, &name, &domain, "self"))
                .await
        });
    }
    let mut won = 0;
    while let Some(race) = races.join_next().await {
        match race.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Quota(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    won
}

/// Two processes insert apps at once against a user's quota of 3 live
/// apps, then against a resource's limit of 6: exactly the room left wins.
async fn quota_race(url: &str) {
    let (a, b, bob, mallory, bob_user) = two_processes(url).await;
    let three = mse_server::domain::accounts::QuotaChange {
        max_live_apps: Some(Some(3)),
        max_stored_bytes: None,
    };
    assert!(a.set_user_quota(&bob_user, &three).await.unwrap());
    assert_eq!(insert_race(&a, &b, &bob).await, 3, "bob's quota");
    let (_, usage) = b.user_quota(&bob_user).await.unwrap().unwrap();
    assert_eq!(usage.live_apps, 3);
    assert_eq!(usage.stored_bytes, 3000);

    assert!(a.set_resource_limit("free", Some(6)).await.unwrap());
    assert_eq!(
        insert_race(&a, &b, &mallory).await,
        3,
        "the resource's limit, bob's 3 apps included"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deploys_never_overshoot_a_quota_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    quota_race(&sqlite_url(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deploys_never_overshoot_a_quota_on_postgresql() {
    quota_race(&mse_testkit::postgres_database()).await;
}

#[tokio::test]
async fn quota_numbers_out_of_bounds_are_refused_naming_the_field_and_change_nothing() {
    let p = api_only().await;
    let (bob_id, _) = p.user("bob").await;
    let path = format!("/users/{bob_id}/quota");
    let cases = [
        (
            json!({"max_live_apps": -1}),
            "max_live_apps must be an integer from 0 to 10000",
        ),
        (
            json!({"max_live_apps": 10001}),
            "max_live_apps must be an integer from 0 to 10000",
        ),
        (
            json!({"max_live_apps": 1.5}),
            "max_live_apps must be an integer",
        ),
        (
            json!({"max_live_apps": "10"}),
            "max_live_apps must be an integer",
        ),
        (
            json!({"max_live_apps": 1e300}),
            "max_live_apps must be an integer",
        ),
        (
            json!({"max_live_apps": u64::MAX}),
            "max_live_apps must be an integer",
        ),
        (
            json!({"max_live_apps": 5, "max_stored_bytes": 1_i64 << 41}),
            "max_stored_bytes must be an integer from 0 to 1099511627776",
        ),
        (
            json!({"max_stored_bytes": -5}),
            "max_stored_bytes must be an integer",
        ),
        (json!({"max_apps": 5}), "unknown field `max_apps`"),
        (json!([1, 2]), "send a JSON object"),
    ];
    for (body, message) in cases {
        let (status, answer) = p
            .call(Method::PUT, &path, Some(&p.admin), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(error(&answer).contains(message), "{body}: {answer}");
    }
    let request = axum::http::Request::builder()
        .method(Method::PUT)
        .uri(&path)
        .header("authorization", format!("Bearer {}", p.admin))
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{\"max_live_apps\": "))
        .unwrap();
    let response = tower::ServiceExt::oneshot(p.router.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "malformed JSON");
    let (_, quota) = p.get(&path, &p.admin).await;
    assert_eq!(quota["max_live_apps"], 10, "unchanged");
    assert_eq!(quota["max_stored_bytes"], 2_i64 << 30, "unchanged");

    for body in [
        json!({"max_live_apps": -1}),
        json!({"max_live_apps": 10001}),
        json!({}),
    ] {
        let (status, answer) = p
            .call(
                Method::PUT,
                "/resources/free/quota",
                Some(&p.admin),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(error(&answer).contains("max_live_apps"), "{answer}");
    }
    let resource = json!({"name": "big", "memory_mb": 1, "cores": 1, "enclave_size": "1G",
        "default_hours": 1, "max_live_apps": 10001});
    let (status, answer) = p.post("/resources", &p.admin, resource).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(error(&answer).contains("max_live_apps must be an integer from 0 to 10000"));
    let (_, free) = p.get("/resources/free", &p.admin).await;
    assert_eq!(free["max_live_apps"], Value::Null, "unchanged");
}

#[tokio::test]
async fn a_resource_limit_caps_the_live_apps_of_all_users_on_it() {
    let p = api_only().await;
    let (_, bob) = p.user("bob").await;
    let (_, alice) = p.user("alice").await;
    let (_, carol) = p.user("carol").await;
    let (status, _) = p
        .call(
            Method::PUT,
            "/resources/free/quota",
            Some(&bob),
            Some(json!({"max_live_apps": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, free) = p
        .call(
            Method::PUT,
            "/resources/free/quota",
            Some(&p.admin),
            Some(json!({"max_live_apps": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{free}");
    assert_eq!(free["max_live_apps"], 2);
    let (_, first) = p.deploy(&bob, deploy_config("a", json!({}))).await;
    let (status, _) = p.deploy(&alice, deploy_config("a", json!({}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = p.deploy(&carol, deploy_config("a", json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        error(&body).contains("quota of resource `free` reached")
            && error(&body).contains("at most 2 live apps")
            && error(&body).contains("2 are live"),
        "{body}"
    );
    p.stop_app(&bob, first["id"].as_str().unwrap()).await;
    let (status, body) = p.deploy(&carol, deploy_config("a", json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, free) = p
        .call(
            Method::PUT,
            "/resources/free/quota",
            Some(&p.admin),
            Some(json!({"max_live_apps": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(free["max_live_apps"], Value::Null);
    let (status, _) = p.deploy(&bob, deploy_config("b", json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "no limit any more");
}

/// A store made before custom domains had owners, where an attacker's
/// owner-mode apps share the victim's domains: on opening, the victim's
/// apps keep their domains, the attacker's become `on_error`, and each
/// custom domain belongs to its first deployer.
#[tokio::test]
async fn a_store_from_before_domain_owners_keeps_each_domain_to_its_first_app() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let old = dir.path().join("old-migrations");
    std::fs::create_dir(&old).unwrap();
    for name in ["0001_init.sql", "0002_roles.sql"] {
        let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        std::fs::copy(migrations.join(name), old.join(name)).unwrap();
    }
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let statements = [
        "INSERT INTO users VALUES ('u-victim', 'victim', 0, 0), ('u-mallory', 'mallory', 0, 0)",
        "INSERT INTO projects VALUES ('p-victim', 'u-victim', 'default', 0), \
         ('p-mallory', 'u-mallory', 'default', 0)",
    ];
    for sql in statements {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let apps = [
        ("v-uuid", "p-victim", "v-uuid.localhost", "self", 1),
        ("m-uuid", "p-mallory", "v-uuid.localhost", "owner", 2),
        ("v-shop", "p-victim", "shop.example.com", "owner", 3),
        ("m-shop", "p-mallory", "shop.example.com", "owner", 4),
    ];
    for (id, project, domain, origin, at) in apps {
        sqlx::query(
            "INSERT INTO apps (id, project_id, name, domain, config_domain, resource, docker, \
             python_application, healthcheck_endpoint, certificate_origin, code_sha256, \
             enclave_size, status, created_at, expires_at, node_addr, node_owner) \
             VALUES ($1, $2, $3, $4, $5, 'free', 'i', 'app:app', '/health', $6, '00', '1G', \
             'running', $7, 9999999999, '127.0.0.1:1', 'local')",
        )
        .bind(id)
        .bind(project)
        .bind(id)
        .bind(domain)
        .bind(format!("{id}.localhost"))
        .bind(origin)
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let store = Store::open(&url).await.unwrap();
    for (id, status) in [
        ("v-uuid", "running"),
        ("m-uuid", "on_error"),
        ("v-shop", "running"),
        ("m-shop", "on_error"),
    ] {
        let app = store.app(id).await.unwrap().unwrap();
        assert_eq!(app.status.as_str(), status, "{id}");
    }
    let owners = store.domains(None).await.unwrap();
    let shop = owners
        .iter()
        .find(|d| d.name == "shop.example.com")
        .unwrap();
    assert_eq!(shop.user_name, "victim");
    let routes = mse_server::domain::routing::table(&store.routed_apps().await.unwrap());
    assert_eq!(routes["v-uuid.localhost"].app_id, "v-uuid");
    assert_eq!(routes["shop.example.com"].app_id, "v-shop");
}

/// `POST /tokens` with `body`: (status, answer).
async fn make_token(p: &Platform, token: &str, body: Value) -> (StatusCode, Value) {
    p.post("/tokens", token, body).await
}

/// The secret of a new token of the caller's, asked for with `body`.
async fn token_with(p: &Platform, token: &str, body: Value) -> (String, Value) {
    let (status, made) = make_token(p, token, body).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    (made["token"].as_str().unwrap().to_string(), made)
}

#[tokio::test]
async fn a_stolen_token_mints_nothing_that_outlives_or_exceeds_it_and_a_read_token_changes_nothing()
{
    let p = api_only().await;
    let (_, bob) = p.user("bob").await;
    let (status, app) = p.deploy(&bob, deploy_config("victim", json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let app_id = app["id"].as_str().unwrap().to_string();
    // The owner's tokens: one for ten minutes, one reading for ten minutes.
    let (stolen, made) = token_with(&p, &bob, json!({"name": "ci", "expires_in": 600})).await;
    assert_eq!(made["scope"], "deploy", "{made}");
    let expires_at = made["expires_at"].as_i64().unwrap();
    assert_eq!(expires_at, made["created_at"].as_i64().unwrap() + 600);
    let (read, made) = token_with(
        &p,
        &bob,
        json!({"name": "dashboard", "scope": "read", "expires_in": 600}),
    )
    .await;
    assert_eq!(made["scope"], "read", "{made}");

    // A thief with the deploy token: nothing longer, nothing wider.
    for (body, part) in [
        (json!({"name": "mine", "expires_in": 601}), "never outlives"),
        (
            json!({"name": "mine", "expires_in": 86400}),
            "never outlives",
        ),
        (json!({"name": "mine", "scope": "admin"}), "scope"),
    ] {
        let (status, refused) = make_token(&p, &stolen, body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}: {refused}");
        assert!(error(&refused).contains(part), "{body}: {refused}");
    }
    // Without an expiry, its own is the most it gets.
    let (_, made) = token_with(&p, &stolen, json!({"name": "mine"})).await;
    assert!(made["expires_at"].as_i64().unwrap() <= expires_at, "{made}");
    assert_eq!(made["scope"], "deploy");

    // A thief with the read token reads, and changes nothing.
    let (status, apps) = p.get("/apps", &read).await;
    assert_eq!(status, StatusCode::OK, "{apps}");
    assert_eq!(apps.as_array().unwrap().len(), 1);
    let (status, refused) = p.deploy(&read, deploy_config("thief", json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(
        error(&refused).contains("needs scope `deploy`"),
        "{refused}"
    );
    let (_, tokens) = p.get("/tokens", &bob).await;
    let owners = tokens[0]["id"].as_str().unwrap().to_string();
    for (method, path, body) in [
        (
            Method::POST,
            format!("/apps/{app_id}/stop"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("/apps/{app_id}"), None),
        (Method::DELETE, format!("/tokens/{owners}"), None),
        (
            Method::POST,
            "/tokens".to_string(),
            Some(json!({"name": "mine"})),
        ),
        (
            Method::POST,
            "/projects".to_string(),
            Some(json!({"name": "p2"})),
        ),
    ] {
        let (status, refused) = p.call(method.clone(), &path, Some(&read), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {refused}");
        assert!(
            error(&refused).contains("scope is `read`"),
            "{method} {path}: {refused}"
        );
    }
    // The victim's app is live, and the owner's token works.
    let (status, app) = p.get(&format!("/apps/{app_id}"), &bob).await;
    assert_eq!(status, StatusCode::OK, "{app}");
    assert_eq!(app["status"], "spawning");
    let (status, tokens) = p.get("/tokens", &bob).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens.as_array().unwrap().len(), 4, "{tokens}");
}

#[tokio::test]
async fn an_expired_token_is_refused_saying_how_to_get_another() {
    let p = api_only().await;
    let (_, bob) = p.user("bob").await;
    let (short, made) = token_with(&p, &bob, json!({"name": "short", "expires_in": 1})).await;
    // The expiry is stored as asked.
    let stored = p
        .state
        .store
        .token_by_hash(&mse_server::state::auth::token_hash(&short))
        .await
        .unwrap()
        .unwrap()
        .1;
    assert_eq!(
        stored.expires_at,
        Some(made["created_at"].as_i64().unwrap() + 1)
    );
    // Refused once that second is over (a bounded wait on the answer).
    let refused = wait::until_async(
        "the token is refused after its expiry",
        std::time::Duration::from_secs(10),
        async || {
            let (status, body) = p.get("/me", &short).await;
            if status == StatusCode::UNAUTHORIZED {
                return Some(body);
            }
            assert_eq!(status, StatusCode::OK, "{body}");
            None
        },
    )
    .await;
    for part in ["expired at", "POST /tokens", "administrator"] {
        assert!(error(&refused).contains(part), "`{part}`: {refused}");
    }
    // It is no longer listed; the owner's other token works.
    let (status, tokens) = p.get("/tokens", &bob).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        tokens
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["name"] != "short"),
        "{tokens}"
    );
}

#[tokio::test]
async fn an_administrator_lists_and_revokes_another_users_token_only_with_scope_admin() {
    let p = api_only().await;
    let (bob_id, bob) = p.user("bob").await;
    let (alice_id, alice) = p.user("alice").await;
    let (_, tokens) = p.get(&format!("/users/{bob_id}/tokens"), &p.admin).await;
    let listed = tokens.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{tokens}");
    assert_eq!(listed[0]["scope"], "deploy");
    let bobs = listed[0]["id"].as_str().unwrap().to_string();
    // Another user may neither list nor revoke it.
    let (status, body) = p.get(&format!("/users/{bob_id}/tokens"), &alice).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = p
        .call(
            Method::DELETE,
            &format!("/tokens/{bobs}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Nor may an administrator's token of a narrower scope.
    let (admin_deploy, _) =
        token_with(&p, &p.admin, json!({"name": "ops", "scope": "deploy"})).await;
    let (status, body) = p
        .get(&format!("/users/{bob_id}/tokens"), &admin_deploy)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(error(&body).contains("needs scope `admin`"), "{body}");
    let (status, body) = p
        .call(
            Method::DELETE,
            &format!("/tokens/{bobs}"),
            Some(&admin_deploy),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, me) = p.get("/me", &admin_deploy).await;
    assert_eq!((status, &me["is_admin"]), (StatusCode::OK, &json!(false)));
    let (status, _) = p.get("/me", &bob).await;
    assert_eq!(status, StatusCode::OK);

    // The administrator revokes it: refused at once.
    let (status, body) = p
        .call(
            Method::DELETE,
            &format!("/tokens/{bobs}"),
            Some(&p.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = p.get("/me", &bob).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (_, tokens) = p.get(&format!("/users/{bob_id}/tokens"), &p.admin).await;
    assert_eq!(tokens, json!([]));
    // And makes bob a new one; alice is untouched.
    let (status, made) = p
        .post(
            &format!("/users/{bob_id}/tokens"),
            &p.admin,
            json!({"name": "again", "expires_in": 3600}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["scope"], "deploy");
    let (status, me) = p.get("/me", made["token"].as_str().unwrap()).await;
    assert_eq!((status, me["name"].as_str()), (StatusCode::OK, Some("bob")));
    let (status, _) = p.get("/me", &alice).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = p.get(&format!("/users/{alice_id}/tokens"), &p.admin).await;
    assert_eq!(
        (status, body.as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
}

#[tokio::test]
async fn unknown_query_parameters_are_refused_on_every_route() {
    let p = api_only().await;
    let (_, bob) = p.user("bob").await;
    let (status, body) = p.get("/tokens?user=admin", &bob).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error(&body).contains("unknown query parameter `user`")
            && error(&body).contains("takes no query parameters"),
        "{body}"
    );
    let (status, body) = p.get("/apps?bogus=1", &bob).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error(&body).contains("`bogus`; this route takes: project, name, status, limit, offset"),
        "{body}"
    );
    // Declared ones are served.
    let (status, body) = p.get("/apps?project=default&limit=5", &bob).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Every operation, with or without a token, before anything else.
    for operation in mse_server::api::operations() {
        let path = operation
            .path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for token in [None, Some(bob.as_str())] {
            let (status, body) = p
                .call(
                    operation.method.clone(),
                    &format!("{path}?bogus=1"),
                    token,
                    None,
                )
                .await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{} {path}: {body}",
                operation.method
            );
            assert!(
                error(&body).contains("`bogus`"),
                "{} {path}: {body}",
                operation.method
            );
        }
    }
}

#[tokio::test]
async fn a_disabled_users_tokens_stop_at_once_and_its_running_app_stops() {
    let p = platform().await;
    let (bob_id, bob) = p.user("bob").await;
    let (alice_id, alice) = p.user("alice").await;
    let (second, _) = token_with(&p, &bob, json!({"name": "second"})).await;
    let (status, app, key) = p
        .deploy_keyed(&bob, deploy_config("victim", json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let app_id = app["id"].as_str().unwrap().to_string();
    p.configure(&bob, &app, &key, None).await;
    // Only an administrator disables, and not itself.
    let (status, body) = p
        .post(&format!("/users/{alice_id}/disable"), &bob, json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, me) = p.get("/me", &p.admin).await;
    let (status, body) = p
        .post(
            &format!("/users/{}/disable", me["id"].as_str().unwrap()),
            &p.admin,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (status, user) = p
        .post(&format!("/users/{bob_id}/disable"), &p.admin, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["disabled"], true);
    // Every token of bob's is refused at once.
    for token in [&bob, &second] {
        let (status, body) = p.get("/me", token).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(error(&body).contains("user disabled"), "{body}");
    }
    let (status, body) = p.deploy(&bob, deploy_config("again", json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Its app stops (its node process ends), saying why.
    let stopped = wait::until_async(
        "bob's app stops after bob was disabled",
        std::time::Duration::from_secs(60),
        async || {
            let app = p.state.store.app(&app_id).await.unwrap().unwrap();
            if app.status.is_terminal() {
                Ok(app)
            } else {
                Err(format!("{:?}", app.status))
            }
        },
    )
    .await;
    assert_eq!(stopped.status.as_str(), "stopped");
    assert!(
        stopped
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("disabled"),
        "{:?}",
        stopped.reason
    );
    // Alice is untouched.
    let (status, _) = p.get("/me", &alice).await;
    assert_eq!(status, StatusCode::OK);
    let (_, users) = p.get("/users", &p.admin).await;
    let listed = users.as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|u| u["name"] == "bob" && u["disabled"] == true),
        "{users}"
    );

    // Enabled again: its tokens work, its app stays stopped.
    let (status, user) = p
        .post(&format!("/users/{bob_id}/enable"), &p.admin, json!({}))
        .await;
    assert_eq!((status, &user["disabled"]), (StatusCode::OK, &json!(false)));
    let (status, app) = p.get(&format!("/apps/{app_id}"), &second).await;
    assert_eq!(
        (status, &app["status"]),
        (StatusCode::OK, &json!("stopped"))
    );
}

#[tokio::test]
async fn a_live_app_s_persistent_storage_counts_against_the_stored_bytes_quota() {
    let p = api_only().await;
    let (bob_id, bob) = p.user("bob").await;
    let package = common::scaffold_package().0.len() as i64;
    const MB16: i64 = 16 << 20;
    let (status, body) = p
        .call(
            Method::PUT,
            &format!("/users/{bob_id}/quota"),
            Some(&p.admin),
            Some(json!({"max_stored_bytes": 2 * package + MB16 + MB16 / 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let kept = json!({ "storage_bytes": MB16 });
    let (status, first) = p.deploy(&bob, deploy_config("kept", kept.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (_, quota) = p.get(&format!("/users/{bob_id}/quota"), &bob).await;
    assert_eq!(quota["stored_bytes"], package + MB16, "{quota}");

    // A second persistent app of the same cap does not fit: refused,
    // saying what counts.
    let (status, body) = p.deploy(&bob, deploy_config("kept-2", kept.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    for part in [
        "quota of stored bytes",
        &format!("your apps keep {} bytes", package + MB16),
        "reserved persistent storage",
        &format!("this one adds {}", package + MB16),
        "smaller `[storage] size`",
    ] {
        assert!(error(&body).contains(part), "`{part}` missing: {body}");
    }
    // An app without persistent storage still fits.
    let (status, body) = p.deploy(&bob, deploy_config("plain", json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Stopped, the first reserves nothing more (its code stays counted).
    p.stop_app(&bob, first["id"].as_str().unwrap()).await;
    let (_, quota) = p.get(&format!("/users/{bob_id}/quota"), &bob).await;
    assert_eq!(quota["stored_bytes"], 2 * package, "{quota}");
    let (status, body) = p.deploy(&bob, deploy_config("kept-2", kept)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
