//! The same store on PostgreSQL: the schema migrates, the rules that rest on
//! the database (unique names, the partial unique index on live apps, scoped
//! reads, state transitions) hold, and a restart keeps everything.

mod common;

use axum::http::{Method, StatusCode};
use common::{deploy_config, platform_on, settings};
use serde_json::json;

#[tokio::test]
async fn the_platform_runs_on_postgresql() {
    let url = mse_testkit::postgres_database();
    let p = platform_on(Some(url.clone())).await;
    let (bob_id, bob) = p.user("bob").await;
    let (_, alice) = p.user("alice").await;
    let (status, _) = p.post("/users", &p.admin, json!({"name": "bob"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = p.post("/projects", &bob, json!({"name": "p"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = p.post("/projects", &bob, json!({"name": "p"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = p.get("/resources/standard", &bob).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    p.post(
        &format!("/users/{bob_id}/grants"),
        &p.admin,
        json!({"resource": "standard"}),
    )
    .await;
    let (status, _) = p.get("/resources/standard", &bob).await;
    assert_eq!(status, StatusCode::OK);

    let config = deploy_config("twin", json!({"project": "p"}));
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
    let app = if a.0 == StatusCode::CREATED { a.1 } else { b.1 };
    let id = app["id"].as_str().unwrap();
    let (status, _) = p.get(&format!("/apps/{id}"), &alice).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = p.get("/apps?project=p&status=spawning", &bob).await;
    assert!(list.as_array().unwrap().len() <= 1);
    p.wait_app(&bob, id, "initializing", |a| a["status"] == "initializing")
        .await;
    let stopped = p.stop_app(&bob, id).await;
    assert!(stopped["stopped_at"].as_i64().is_some());
    assert!(!p
        .state
        .store
        .transition(id, mse_server::domain::lifecycle::Status::Running, None, 0)
        .await
        .unwrap());
    let (status, _) = p
        .call(Method::DELETE, &format!("/apps/{id}"), Some(&bob), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Tokens: scope and expiry stored, listed, revoked by an administrator;
    // a disabled user's tokens refused, an enabled one's accepted again.
    let (status, made) = p
        .post(
            "/tokens",
            &bob,
            json!({"name": "ci", "scope": "read", "expires_in": 600}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (_, listed) = p.get(&format!("/users/{bob_id}/tokens"), &p.admin).await;
    let ci = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .unwrap_or_else(|| panic!("{listed}"))
        .clone();
    assert_eq!(ci["scope"], "read");
    assert_eq!(
        ci["expires_at"].as_i64().unwrap(),
        ci["created_at"].as_i64().unwrap() + 600
    );
    let (status, _) = p
        .call(
            Method::DELETE,
            &format!("/tokens/{}", ci["id"].as_str().unwrap()),
            Some(&p.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = p.get("/me", made["token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = p
        .post(&format!("/users/{bob_id}/disable"), &p.admin, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = p.get("/me", &bob).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = p
        .post(&format!("/users/{bob_id}/enable"), &p.admin, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = p.get("/me", &bob).await;
    assert_eq!(status, StatusCode::OK);

    // A restart on the same database keeps the users and makes no new admin.
    let mut again = settings(&p.dir.path().join("data"));
    again.database_url = Some(url);
    let mse_server::Opened {
        state,
        admin_token: token,
        ..
    } = mse_server::open(&again).await.unwrap();
    assert!(token.is_none());
    assert_eq!(state.store.user_count().await.unwrap(), 3);
}
