//! The platform across real hosts: network namespaces with addresses of
//! their own (198.18.0.0/24), an API and proxy host and two node hosts
//! that joined with a token. Apps land on both hosts and are reached
//! through the proxy; a host whose link is cut loses its apps (`on_error`,
//! "node lost") within its lease and stops them by itself, while the other
//! host's apps keep serving; once its link is back it joins again and takes
//! new apps. The same on PostgreSQL with two API replicas. Each host runs
//! a replica of the key service (docs/keys.md): the second gets the root
//! key from the first once each attested the other, and an app whose keys
//! the service keeps comes back on the other host when its own is cut,
//! released by the replica that is left, with no client involved.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::deploy::*;
use common::kept::{count, count_kept, secrets_app, served_pem, COUNT};
use common::platform::{login, Platform};
use common::TestContext;
use mse_testkit::netns::Network;
use mse_testkit::platform::{self, Server};
use mse_testkit::wait;
use serde_json::{json, Value};

/// The lease of these tests' nodes, seconds: short, so a cut is seen soon.
const LEASE: &str = "6";
/// The port of the API's HTTPS listener on the API host.
const TLS_PORT: u16 = 9444;

/// A node host process on a host of the network.
struct NodeHost {
    /// Stopped when dropped, before its folder is removed (the fields are
    /// dropped in order).
    server: Server,
    nodes_dir: tempfile::TempDir,
}

impl NodeHost {
    /// `mse-server --roles node --join …` on `host`, as node `host`.
    fn start(network: &Network, host: &str, api: &[String], token: &str) -> NodeHost {
        let nodes_dir = tempfile::Builder::new()
            .prefix("mse-host-")
            .tempdir()
            .expect("a temporary folder");
        let mut command = platform::command(None, &["--roles", "node", "--node-id", host], |c| {
            c.arg("--join")
                .arg(api.join(","))
                .args(["--node-token", token])
                .arg("--advertise")
                .arg(network.address(host).to_string())
                .arg("--nodes-dir")
                .arg(nodes_dir.path())
                .args(["--cores", "8", "--memory-mb", "8192"]);
        });
        network.on(host, &mut command);
        NodeHost {
            server: Server::start(command),
            nodes_dir,
        }
    }
}

/// `GET /nodes` as the admin, by node id.
fn nodes(platform: &Platform) -> Vec<Value> {
    let (status, body) = platform.get(&platform.admin, "/nodes");
    assert_eq!(status, 200, "GET /nodes: {body}");
    body.as_array().cloned().unwrap_or_default()
}

fn node<'a>(nodes: &'a [Value], id: &str) -> Option<&'a Value> {
    nodes.iter().find(|n| n["node"] == id)
}

fn live(platform: &Platform, id: &str) -> bool {
    node(&nodes(platform), id).is_some_and(|n| n["live"] == true)
}

/// The apps GET /nodes places on node `id`.
fn apps_on(platform: &Platform, id: &str) -> Vec<String> {
    node(&nodes(platform), id)
        .and_then(|n| n["apps"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.as_str().map(String::from))
        .collect()
}

/// The processes whose command line names `needle`.
fn processes_naming(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

/// Deploys a new app named `name` with `mse deploy` as `ctx`; its output.
fn deploy(platform: &Platform, ctx: &TestContext, name: &str) -> Value {
    let app = ctx.scaffold(name);
    deploy_ok(platform, ctx, &app, &[])
}

/// What must be in no file of a node host: the platform's secrets.
fn secrets(data_dir: &Path, extra: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = [
        "admin.token",
        "signer.key",
        "simulation-ca.key",
        "operator-ca.key",
    ]
    .iter()
    .filter_map(|name| {
        let bytes = std::fs::read(data_dir.join(name)).ok()?;
        // The private part itself: PEM bodies of one key type share their
        // first bytes (the algorithm's), and a private key holds its public
        // key too, which the host may have. In a P-256 PKCS#8 key the
        // private scalar is at bytes 36 to 68 (base64 characters 48 to 90);
        // in an RSA key, the last quarter is private (primes, exponents).
        let text = String::from_utf8_lossy(&bytes).to_string();
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("");
        let window = if !text.contains("-----BEGIN") {
            0..body.len()
        } else if body.len() < 300 {
            52..84
        } else {
            body.len() * 3 / 4..body.len() * 3 / 4 + 32
        };
        let needle = body.get(window).unwrap_or(&body).as_bytes().to_vec();
        Some((name.to_string(), needle))
    })
    .collect();
    for value in extra {
        out.push(("a secret".to_string(), value.as_bytes().to_vec()));
    }
    out
}

fn data_dir(platform: &Platform) -> PathBuf {
    platform.data_dir()
}

/// A join token for both hosts, granting what they declare.
fn join_token(platform: &Platform) -> String {
    let (status, created) = platform.post(
        &platform.admin,
        "/nodes/tokens",
        json!({"max_hosts": 2, "max_memory_mb": 8192, "max_cores": 8}),
    );
    assert_eq!(status, 201, "POST /nodes/tokens: {created}");
    created["token"].as_str().expect("a token").to_string()
}

/// The whole journey on one network: `start` gives the platform (on the API
/// host, entered by this thread) and the API URLs hosts join.
fn journey(network: &Network, platform: &Platform, api: &[String], second: Option<&Platform>) {
    let token = join_token(platform);
    let n1 = NodeHost::start(network, "n1", api, &token);
    let n2 = NodeHost::start(network, "n2", api, &token);
    wait::until("both hosts live", Duration::from_secs(60), || {
        (live(platform, "n1") && live(platform, "n2")).then_some(())
    });
    let listed = nodes(platform);
    for (id, host) in [("n1", "n1"), ("n2", "n2")] {
        let n = node(&listed, id).expect("listed");
        assert_eq!(n["kind"], "remote");
        assert_eq!(n["address"], network.address(host).to_string());
        assert_eq!(n["capacity"], json!({"memory_mb": 8192, "cores": 8}));
    }

    // Apps land on both hosts (the least loaded first) and are reached
    // through the proxy.
    let ctx = TestContext::new();
    login(platform, &ctx, &platform.admin, true);
    let outs: Vec<Value> = ["one", "two", "three", "four"]
        .iter()
        .map(|name| deploy(platform, &ctx, name))
        .collect();
    let on_n1 = apps_on(platform, "n1");
    let on_n2 = apps_on(platform, "n2");
    assert_eq!(
        (on_n1.len(), on_n2.len()),
        (2, 2),
        "n1 {on_n1:?}, n2 {on_n2:?}"
    );
    for out in &outs {
        assert_eq!(out["status"], "running", "{out}");
        assert_eq!(out["verified"], true, "{out}");
        let (status, body) = call_app(platform, out, "/");
        assert_eq!(status, 200, "{body}");
        let id = out["uuid"].as_str().unwrap();
        let app = platform.app(&platform.admin, id);
        let expected = if on_n1.iter().any(|a| a == id) {
            "n1"
        } else {
            "n2"
        };
        assert_eq!(app["node"], expected, "{app}");
        if let Some(second) = second {
            // The other replica sees the same app, on the same node.
            assert_eq!(second.app(&platform.admin, id)["node"], expected);
        }
    }
    // `mse logs` of an app on another machine.
    let logs = wait::until("the logs of an app on n1", Duration::from_secs(20), || {
        let (code, stdout, _) = run_in(&ctx, &ctx.work(), &["logs", &on_n1[0]]);
        (code == 0 && stdout.contains("[mse-run]")).then_some(stdout)
    });
    assert!(
        logs.contains("healthy") || logs.contains("[mse-run]"),
        "{logs}"
    );

    // The hosts hold none of the platform's secrets.
    for host in [&n1, &n2] {
        for (what, needle) in secrets(&data_dir(platform), &[&token, &platform.admin]) {
            assert_nowhere_in(host.nodes_dir.path(), &needle, &what);
        }
    }

    // n1's cable is pulled: its apps are lost within the lease, its own
    // nodes stop by themselves, n2's apps keep serving.
    let cut = Instant::now();
    network.cut("n1");
    for id in &on_n1 {
        let app = platform.wait_app(&platform.admin, id, Duration::from_secs(20), |a| {
            a["status"] == "on_error"
        });
        assert_eq!(app["reason"], "node lost", "{app}");
    }
    // The lease ends at most its length after the last renewal (renewed
    // every 250 ms while a lease call waits), counted in whole seconds (up
    // to one more), and the API looks every 500 ms; the rest is this busy
    // machine's scheduling, and this test's polling.
    let lost_after = cut.elapsed();
    assert!(
        lost_after <= Duration::from_secs(6 + 4),
        "lost after {lost_after:?}, the lease is {LEASE} s"
    );
    wait::until("n1's nodes gone", Duration::from_secs(15), || {
        on_n1
            .iter()
            .all(|id| processes_naming(&format!("/{id}/launch.json")).is_empty())
            .then_some(())
    });
    for out in outs
        .iter()
        .filter(|o| on_n2.iter().any(|a| a == o["uuid"].as_str().unwrap()))
    {
        let (status, body) = call_app(platform, out, "/");
        assert_eq!(status, 200, "an app on n2 while n1 is cut: {body}");
        assert_eq!(
            platform.app(&platform.admin, out["uuid"].as_str().unwrap())["status"],
            "running"
        );
    }

    // The link is back: n1 joins again and takes the next app (it is the
    // least loaded).
    network.restore("n1");
    wait::until("n1 live again", Duration::from_secs(30), || {
        live(platform, "n1").then_some(())
    });
    let out = deploy(platform, &ctx, "five");
    assert_eq!(out["status"], "running", "{out}");
    let id = out["uuid"].as_str().unwrap();
    assert_eq!(platform.app(&platform.admin, id)["node"], "n1");
    let (status, _) = call_app(platform, &out, "/");
    assert_eq!(status, 200);
    drop(n1);
    drop(n2);
}

/// `GET /keys`' replicas once `done` holds of them.
fn replicas_when(platform: &Platform, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    wait::until(what, Duration::from_secs(60), || {
        let (status, info) = platform.get("", "/keys");
        let replicas = info["replicas"].as_array().cloned().unwrap_or_default();
        (status == 200 && done(&replicas)).then_some(replicas)
    })
}

fn holds_root(replicas: &[Value], node: &str) -> bool {
    replicas
        .iter()
        .any(|r| r["node"] == node && r["live"] == true && r["holds_root"] == true)
}

/// The secret of the app of [`secrets_app`] nothing but its nodes may hold.
const API_KEY: &str = "k-4f1c2a9e";

/// The key service across hosts: n1 starts first and makes the root key,
/// n2 gets it from n1; an app kept by the service runs on n1 (the
/// leader's host); n1's cable is pulled; the app serves again from n2,
/// same domain, its keys released by n2's replica, and nothing in the
/// platform's folder or output holds its secret.
fn kept_app_outlives_its_host(
    network: &Network,
    platform: &Platform,
    api: &[String],
    database_url: Option<&str>,
) {
    let token = join_token(platform);
    let n1 = NodeHost::start(network, "n1", api, &token);
    replicas_when(platform, "n1's replica makes the root key", |r| {
        holds_root(r, "n1")
    });
    let n2 = NodeHost::start(network, "n2", api, &token);
    let replicas = replicas_when(platform, "n2's replica gets the root key", |r| {
        holds_root(r, "n1") && holds_root(r, "n2")
    });
    assert_eq!(replicas[0]["node"], "n1", "the leader: {replicas:?}");
    assert!(
        n2.server
            .output()
            .contains("the root key was handed over by the replica on node n1"),
        "{}",
        n2.server.output()
    );
    assert!(n1
        .server
        .output()
        .contains("handed the root key to another replica"));

    // The kept app lands on n1 (both hosts are empty: the first by name),
    // another app on n2.
    let ctx = TestContext::new();
    login(platform, &ctx, &platform.admin, true);
    // Persistent storage implies --keep-running.
    let out = deploy_ok(platform, &ctx, &secrets_app(&ctx, true), &[]);
    let id = out["uuid"].as_str().unwrap().to_string();
    let domain = out["domain_name"].as_str().unwrap().to_string();
    assert_eq!(platform.app(&platform.admin, &id)["keep_running"], true);
    // The app counts in its home; the platform holds it, encrypted.
    assert_eq!(
        count_kept(platform, &platform.admin, &id, &domain, COUNT),
        COUNT
    );
    assert_eq!(platform.app(&platform.admin, &id)["node"], "n1");
    let other = deploy(platform, &ctx, "other");
    assert_eq!(
        platform.app(&platform.admin, other["uuid"].as_str().unwrap())["node"],
        "n2"
    );

    // n1 — the app's host and the key service's leader — is cut off.
    let cut = Instant::now();
    network.cut("n1");
    let lost = platform.wait_app(&platform.admin, &id, Duration::from_secs(30), |a| {
        a["node"] != "n1"
    });
    let lost_after = cut.elapsed();
    let back = platform.wait_app(&platform.admin, &id, Duration::from_secs(60), |a| {
        a["status"] == "running"
    });
    let back_after = cut.elapsed();
    eprintln!(
        "n1 cut: its app was rescheduled after {:.2} s (lease {LEASE} s), and runs again on {} \
         {:.2} s after that",
        lost_after.as_secs_f64(),
        back["node"],
        (back_after - lost_after).as_secs_f64()
    );
    let note = lost["rescheduled"].as_str().unwrap_or_default();
    assert!(note.contains("rescheduled from n1: node lost"), "{lost}");
    assert_eq!(back["node"], "n2", "{back}");
    assert_eq!(back["domain_name"], domain.as_str());
    let note = back["rescheduled"].as_str().unwrap_or_default();
    assert!(note.contains("keys released by the key service"), "{back}");
    // How long it took is printed above, not asserted: a slower machine
    // takes longer (the target, under 10 s, is checked by reading it).
    let replicas = replicas_when(platform, "n2 leads", |r| {
        r.first().is_some_and(|r| r["node"] == "n2")
    });
    assert!(holds_root(&replicas, "n2"));
    let output = n2.server.output();
    let released = output
        .lines()
        .find(|l| l.contains(&format!("released the keys of app {id} to node n2")))
        .unwrap_or_else(|| panic!("n2's replica released the keys: {output}"));
    eprintln!("{released}");

    // An app user verifies the new node through the proxy (same domain)
    // and reads the secret it was configured with, without its owner.
    let user = TestContext::new();
    let (_, revoked) = platform.get("", "/simulation-revoked");
    let revoked_file = user.write("revoked.json", &revoked.to_string());
    let output = user
        .mse()
        .args(["verify", &format!("{domain}:{}", proxy_port(platform))])
        .args(["--fingerprint", out["fingerprint"].as_str().unwrap()])
        .arg("--signer-key")
        .arg(data_dir(platform).join("signer.pub"))
        .arg("--simulation-ca")
        .arg(data_dir(platform).join("simulation-ca.pem"))
        .arg("--simulation-revoked")
        .arg(&revoked_file)
        .args(["--allow-simulation", "--json"])
        .output()
        .unwrap();
    let (stdout, stderr) = common::texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let pem = std::fs::read_to_string(user.work().join("cert.pem")).unwrap();
    let (status, body) = https_get(pinned(&pem), &domain, proxy_port(platform), "/greeting");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Bonjour"), "{body}");
    // Its home came back from what the platform held: the counter goes on
    // from the first write or the second.
    let restored = count(platform, &domain, 1);
    assert!(
        [COUNT + 1, COUNT + 2].contains(&restored),
        "the counter is {restored} after the move, it was {COUNT} or {} before",
        COUNT + 1
    );

    // The platform kept only sealed bytes: its folder (the store included)
    // and its output hold neither the secret, the code key nor the app's
    // data.
    let code_key = code_key_of(&out);
    let dump = database_url.map(store_dump).unwrap_or_default();
    let data: Vec<String> = (0..4).map(|n| (COUNT + n).to_string()).collect();
    for (what, needle) in [
        ("the app's secret", API_KEY),
        ("the code key", code_key.as_str()),
        ("the app's data", data[0].as_str()),
        ("the app's data", data[1].as_str()),
        ("the app's data", data[2].as_str()),
        ("the app's data", data[3].as_str()),
    ] {
        assert_nowhere_in(&data_dir(platform), needle.as_bytes(), what);
        assert!(
            !platform.output().contains(needle),
            "{what} in the platform's output"
        );
        // The cut host stopped its node and wiped what it decrypted.
        assert_nowhere_in(n1.nodes_dir.path(), needle.as_bytes(), what);
        assert!(!dump.contains(needle), "{what} in the PostgreSQL store");
    }

    // n1 is back; n2 is drained: the kept app moves back to n1 (keys
    // released again), the other app stays on n2, and nothing new lands
    // there.
    network.restore("n1");
    wait::until("n1 live again", Duration::from_secs(30), || {
        live(platform, "n1").then_some(())
    });
    let kept = count_kept(platform, &platform.admin, &id, &domain, 1);
    let (status, drained) = platform.post(&platform.admin, "/nodes/n2/drain", Value::Null);
    assert_eq!(status, 200, "{drained}");
    assert_eq!(drained["moved"], json!([id]), "{drained}");
    assert_eq!(drained["staying"], json!([other["uuid"]]), "{drained}");
    moved_to(platform, &id, "n1", "rescheduled from n2: node drained");
    assert_eq!(node(&nodes(platform), "n2").unwrap()["draining"], true);
    // Its node on n2 stopped first and wrote its home back; n1's node
    // restored that: nothing written before the drain is lost.
    let after = count(platform, &domain, 1);
    assert_eq!(
        after,
        kept + 2,
        "the counter after the drain: {kept} then one more were written before it"
    );
    let (status, body) = https_get(
        pinned(&served_pem(&domain, platform)),
        &domain,
        proxy_port(platform),
        "/greeting",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        processes_naming(&format!("/{id}/launch.json")).len(),
        1,
        "one node of the app that moved"
    );
    assert_eq!(
        platform.app(&platform.admin, other["uuid"].as_str().unwrap())["status"],
        "running"
    );
    let next = deploy(platform, &ctx, "next");
    assert_eq!(
        platform.app(&platform.admin, next["uuid"].as_str().unwrap())["node"],
        "n1"
    );

    // n1 — the kept app's host again, and the leading replica's — is
    // revoked: fenced at once, the app starts again on n2 (drained no more)
    // with its keys from n2's replica, and n1 gets nothing more and wipes
    // what it decrypted.
    let (status, body) = platform.delete(&platform.admin, "/nodes/n2/drain");
    assert!((200..300).contains(&status), "{body}");
    let held = count_kept(platform, &platform.admin, &id, &domain, 1);
    let released_before = released_lines(&n2.server.output(), &id, "n2");
    let released_to_n1 = released_lines(&n1.server.output(), &id, "n1")
        + released_lines(&n2.server.output(), &id, "n1");
    let (status, body) = platform.post(&platform.admin, "/nodes/n1/revoke", Value::Null);
    assert_eq!(status, 200, "{body}");
    let moved = moved_to(
        platform,
        &id,
        "n2",
        "rescheduled from n1: node host revoked",
    );
    assert!(
        moved["rescheduled"]
            .as_str()
            .is_some_and(|n| n.contains("keys released by the key service")),
        "{moved}"
    );
    assert_eq!(
        released_lines(&n2.server.output(), &id, "n2"),
        released_before + 1,
        "n2's replica, the leader now, released the keys"
    );
    let counted = count(platform, &domain, 1);
    assert!(
        [held + 1, held + 2].contains(&counted),
        "the counter is {counted} after the revocation; {held} or one more was kept"
    );
    wait::until(
        "n1 wipes what it decrypted",
        Duration::from_secs(30),
        || (!contains_bytes(n1.nodes_dir.path(), API_KEY.as_bytes())).then_some(()),
    );
    assert_eq!(
        released_lines(&n1.server.output(), &id, "n1")
            + released_lines(&n2.server.output(), &id, "n1"),
        released_to_n1,
        "nothing was released to the revoked host"
    );
    drop(n1);
    drop(n2);
}

/// Waits (60 s at most) until app `id` runs on `node`, its note saying
/// `why`; the app.
fn moved_to(platform: &Platform, id: &str, node: &str, why: &str) -> Value {
    let moved = platform.wait_app(&platform.admin, id, Duration::from_secs(60), |a| {
        a["status"] == "running" && a["node"] == node
    });
    let note = moved["rescheduled"].as_str().unwrap_or_default();
    assert!(note.contains(why), "{moved}");
    moved
}

/// How many times `output` says the keys of app `id` were released to a
/// node on `host`.
fn released_lines(output: &str, id: &str, host: &str) -> usize {
    let said = format!("released the keys of app {id} to node {host}");
    output.lines().filter(|l| l.contains(&said)).count()
}

/// Whether any file under `dir` holds `needle`.
fn contains_bytes(dir: &Path, needle: &[u8]) -> bool {
    mse_testkit::files_under(dir).iter().any(|path| {
        std::fs::read(path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
    })
}

/// Every row of the PostgreSQL store at `url` (`pg_dump --data-only`).
fn store_dump(url: &str) -> String {
    let output = std::process::Command::new("pg_dump")
        .args(["--data-only", "--dbname", url])
        .output()
        .expect("pg_dump runs");
    assert!(
        output.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dump = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(dump.contains("storage_blobs"), "a dump of the store");
    dump
}

/// The code key `mse deploy` saved in the app's context.
fn code_key_of(out: &Value) -> String {
    let dir = Path::new(out["context_path"].as_str().unwrap());
    mse_testkit::files_under(dir)
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("code_secret_key = "))
                .map(|k| k.trim_matches('"').to_string())
        })
        .expect("the context holds the code key")
}

fn api_host_platform(network: &Network, extra: &[&str], database_url: Option<&str>) -> Platform {
    let address = network.address("api");
    Platform::start_with(|command| {
        command
            .args(["--roles", "api,proxy", "--node-lease", LEASE])
            .arg("--listen-api-tls")
            .arg(format!("{address}:{TLS_PORT}"))
            .args(extra);
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
    })
}

#[test]
fn apps_run_on_two_node_hosts_and_a_cut_host_is_fenced_then_rejoins() {
    let network = Network::create(&["api", "n1", "n2"]);
    // This test's thread, and so the platform and the client, are on the
    // API host from here on.
    network.enter("api");
    let platform = api_host_platform(&network, &[], None);
    let api = vec![format!("https://{}:{TLS_PORT}", network.address("api"))];
    journey(&network, &platform, &api, None);
}

#[test]
fn on_postgresql_two_api_replicas_serve_one_platform_across_node_hosts() {
    let url = mse_testkit::postgres_socket_database();
    let network = Network::create(&["api", "n1", "n2"]);
    network.enter("api");
    let first = api_host_platform(&network, &[], Some(&url));
    let second = Platform::start_replica(|command| {
        command
            .args(["--roles", "api,proxy", "--node-lease", LEASE])
            .arg("--listen-api-tls")
            .arg(format!("{}:{}", network.address("api"), TLS_PORT + 1))
            .args(["--database-url", &url])
            .arg("--data-dir")
            .arg(first.data_dir());
    });
    let address = network.address("api");
    let api = vec![
        format!("https://{address}:{}", TLS_PORT + 1),
        format!("https://{address}:{TLS_PORT}"),
    ];
    journey(&network, &first, &api, Some(&second));
}

#[test]
fn a_kept_app_on_a_cut_host_serves_again_from_the_other_host() {
    let network = Network::create(&["api", "n1", "n2"]);
    network.enter("api");
    let platform = api_host_platform(&network, &[], None);
    let api = vec![format!("https://{}:{TLS_PORT}", network.address("api"))];
    kept_app_outlives_its_host(&network, &platform, &api, None);
}

#[test]
fn on_postgresql_a_kept_app_on_a_cut_host_serves_again_from_the_other_host() {
    let url = mse_testkit::postgres_socket_database();
    let network = Network::create(&["api", "n1", "n2"]);
    network.enter("api");
    let platform = api_host_platform(&network, &[], Some(&url));
    let api = vec![format!("https://{}:{TLS_PORT}", network.address("api"))];
    kept_app_outlives_its_host(&network, &platform, &api, Some(&url));
}
