//! The store's side of the roles in separate processes, raced for real: two
//! connections pools stand for two processes (on one SQLite file, and on
//! PostgreSQL). Each app is claimed by exactly one node; a stop request and
//! a claim never both win; a node id has one holder; a proxy finds an app in
//! the store the moment it is there.

mod common;

use std::collections::HashSet;

use mse_server::domain::app::NodeHolder;
use mse_server::domain::lifecycle::Status;
use mse_server::store::Store;

/// How many apps each race runs over.
const APPS: usize = 24;

/// Two pools on one store, the first migrated first, and `APPS` `spawning`
/// apps in it.
async fn two_processes(url: &str) -> (Store, Store, Vec<String>) {
    let first = Store::open(url).await.unwrap();
    let second = Store::open(url).await.unwrap();
    let user = first.create_user("bob", false, 0).await.unwrap();
    let room = mse_server::domain::accounts::QuotaChange {
        max_live_apps: Some(Some(APPS as i64)),
        max_stored_bytes: None,
    };
    assert!(first.set_user_quota(&user.id, &room).await.unwrap());
    let project = first.project(&user.id, "default").await.unwrap().unwrap();
    let mut ids = Vec::new();
    for i in 0..APPS {
        let app = common::new_app(
            &project.id,
            &format!("app-{i}"),
            mse_server::domain::lifecycle::CertificateOrigin::SelfSigned,
            i as i64,
        );
        let id = app.id.clone();
        first.insert_app(&app).await.unwrap();
        ids.push(id);
    }
    (first, second, ids)
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}?mode=rwc", dir.path().join("mse.db").display())
}

/// Nodes `a` and `b`, each on its own pool, claim every app at once: one
/// task per claim, all running together.
async fn claims_race(url: &str) {
    let (a, b, ids) = two_processes(url).await;
    let mut claims = tokio::task::JoinSet::new();
    for id in &ids {
        for (store, node_id) in [(a.clone(), "a"), (b.clone(), "b")] {
            let id = id.clone();
            claims.spawn(async move {
                let won = store.claim_app(&id, node_id).await.unwrap();
                (id, node_id, won)
            });
        }
    }
    let mut winners: Vec<(String, &str)> = Vec::new();
    while let Some(claim) = claims.join_next().await {
        let (id, node_id, won) = claim.unwrap();
        if won {
            winners.push((id, node_id));
        }
    }
    let claimed: HashSet<&String> = winners.iter().map(|(id, _)| id).collect();
    assert_eq!(winners.len(), APPS, "one claim wins per app: {winners:?}");
    assert_eq!(claimed.len(), APPS, "an app claimed twice: {winners:?}");
    for (id, node_id) in &winners {
        let app = b.app(id).await.unwrap().unwrap();
        assert_eq!(app.node_owner.as_deref(), Some(*node_id));
        assert_eq!(app.status, Status::Spawning);
        assert!(!a.claim_app(id, "c").await.unwrap(), "claimed again");
    }
    assert!(a.unclaimed_apps(100).await.unwrap().is_empty());
    let held_by_a = winners.iter().filter(|(_, n)| *n == "a").count();
    assert_eq!(a.node_apps("a").await.unwrap().len(), held_by_a);
}

/// One pool takes each app placed on its node (to start it) while the
/// other asks for its stop: either the node took it and the request waits
/// for it, or it stopped untaken; never both, never neither.
async fn stop_and_claim_race(url: &str) {
    let (a, b, ids) = two_processes(url).await;
    // Placed on node `a` (claimed), not yet taken: its start races the stop.
    for id in &ids {
        assert!(a.claim_app(id, "a").await.unwrap());
    }
    let races = ids.iter().map(|id| {
        let (a, b, id) = (a.clone(), b.clone(), id.clone());
        tokio::spawn(async move {
            let (taken, stopped) = tokio::join!(
                a.take_app(&id, "a", 1),
                b.request_stop(&id, "stopped by its owner", 1)
            );
            (id, taken.unwrap(), stopped.unwrap())
        })
    });
    let mut outcomes = Vec::new();
    for race in races.collect::<Vec<_>>() {
        outcomes.push(race.await.unwrap());
    }
    for (id, taken, stopped) in outcomes {
        let app = a.app(&id).await.unwrap().unwrap();
        assert!(taken != stopped, "{id}: taken {taken}, stopped {stopped}");
        if taken {
            assert_eq!(app.status, Status::Spawning);
            assert!(app.stop_requested_at.is_some(), "the request is kept");
        } else {
            assert_eq!(app.status, Status::Stopped);
            assert_eq!(app.reason.as_deref(), Some("stopped by its owner"));
        }
    }
}

/// Two processes take one node id from the same previous holder: one wins.
async fn node_id_race(url: &str) {
    let (a, b, _) = two_processes(url).await;
    let holder = |pid: i64| NodeHolder {
        id: "n".into(),
        host: "h".into(),
        pid,
        started_at: 1,
        seen_at: 1,
    };
    let (one, two, three, four) = (holder(1), holder(2), holder(3), holder(4));
    let (first, second) = tokio::join!(a.take_node(&one, None), b.take_node(&two, None));
    assert!(first.unwrap() != second.unwrap(), "one insert wins");
    let previous = a.node_holder("n").await.unwrap().unwrap();
    let (first, second) = tokio::join!(
        a.take_node(&three, Some(&previous)),
        b.take_node(&four, Some(&previous))
    );
    assert!(first.unwrap() != second.unwrap(), "one takeover wins");
    let now = a.node_holder("n").await.unwrap().unwrap();
    assert!(now.pid == 3 || now.pid == 4);
    assert!(a.renew_node("n", "h", now.pid, 5).await.unwrap());
    assert!(!a.renew_node("n", "h", previous.pid, 5).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_app_is_claimed_by_exactly_one_node_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    claims_race(&sqlite_url(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_app_is_claimed_by_exactly_one_node_on_postgresql() {
    claims_race(&mse_testkit::postgres_database()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_request_and_a_start_never_both_win_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    stop_and_claim_race(&sqlite_url(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_request_and_a_start_never_both_win_on_postgresql() {
    stop_and_claim_race(&mse_testkit::postgres_database()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_id_has_one_holder_on_sqlite_and_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    node_id_race(&sqlite_url(&dir)).await;
    node_id_race(&mse_testkit::postgres_database()).await;
}

#[tokio::test]
async fn apps_of_a_node_whose_lease_ran_out_are_lost_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, ids) = two_processes(&sqlite_url(&dir)).await;
    let holder = |id: &str, seen_at: i64| NodeHolder {
        id: id.into(),
        host: "h".into(),
        pid: 1,
        started_at: 0,
        seen_at,
    };
    assert!(store.take_node(&holder("alive", 100), None).await.unwrap());
    assert!(store.take_node(&holder("dead", 10), None).await.unwrap());
    for (id, node) in ids.iter().zip(["alive", "dead", "me", "gone"]) {
        assert!(store.claim_app(id, node).await.unwrap());
    }
    // At 80, with leases of 30 s: `dead` last renewed at 10, `gone` never
    // did; `me` is the caller, which is alive by definition.
    let lost = store.fail_lost_nodes("me", 80).await.unwrap();
    assert_eq!(lost, 2);
    let status = |i: usize| {
        let store = store.clone();
        let id = ids[i].clone();
        async move { store.app(&id).await.unwrap().unwrap() }
    };
    assert_eq!(status(0).await.status, Status::Spawning);
    assert_eq!(status(1).await.status, Status::OnError);
    assert_eq!(status(1).await.reason.as_deref(), Some("node lost"));
    assert_eq!(status(2).await.status, Status::Spawning);
    assert_eq!(status(3).await.status, Status::OnError);
    assert_eq!(status(4).await.node_owner, None, "unclaimed apps wait");
}

#[tokio::test]
async fn a_proxy_following_the_store_finds_an_app_the_moment_the_store_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, other, ids) = two_processes(&sqlite_url(&dir)).await;
    let routes = mse_server::state::Routes::default();
    routes.follow(store.clone());
    routes.load().await.unwrap();
    let name = format!("{}.localhost", ids[0]);
    assert!(routes.resolve(&name).await.is_none(), "spawning: no route");

    // Another process's node: its address and state reach the store only.
    assert!(other.claim_app(&ids[0], "n").await.unwrap());
    other
        .set_node(&ids[0], 1, Some("127.0.0.1:4242"))
        .await
        .unwrap();
    assert!(other
        .transition(&ids[0], Status::Initializing, None, 1)
        .await
        .unwrap());
    let route = routes.resolve(&name.to_uppercase()).await.expect("found");
    assert_eq!(route.addr.port(), 4242);
    assert_eq!(route.app_id, ids[0]);

    other
        .transition(&ids[0], Status::Stopped, Some("stopped"), 2)
        .await
        .unwrap();
    routes.load().await.unwrap();
    assert!(routes.get(&name).is_none(), "a stopped app has no route");
}
