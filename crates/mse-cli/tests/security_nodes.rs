//! Security suite, nodes: attacks by a tenant's app on the platform and on
//! other tenants, replayed against the real binaries (`mse`, `mse-server`,
//! `mse-run`) as a second, ordinary user. Each attack once worked; each test
//! asserts it fails while the victim keeps working.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::deploy::{assert_nowhere_in, call_app, deploy_ok};
use common::platform::{login, user, Platform, PlatformExt};
use common::TestContext;
use mse_testkit::wait;
use serde_json::{json, Value};

/// An environment variable of the platform's process that no app may see.
const CANARY: (&str, &str) = ("MSE_TEST_CANARY", "canary-5d1f0a77");
/// The victim's secret.
const VICTIM_SECRET: &str = "victim-secret-9b2e41c6";

/// An app that tries, on request, everything a hostile tenant would: each
/// attempt answers `{"ok": true|false, ...}`.
const HOSTILE_APP: &str = r#"import os
import signal
import socket

from flask import Flask, request

app = Flask(__name__)


@app.route("/health")
def health():
    return ""


def attempt(action):
    try:
        return {"ok": True, "value": repr(action())[:300]}
    except Exception as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}


def read(path):
    with open(path, "rb") as f:
        return f.read(4096)


def write(path):
    with open(path, "w") as f:
        return f.write("written by another tenant")


def bind(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return s.getsockname()
    finally:
        s.close()


def chmod(path):
    # To the mode it has: harmless if it were allowed.
    return os.chmod(path, os.stat(path).st_mode & 0o7777)


def unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return s.recv(64)
    finally:
        s.close()


@app.route("/attack", methods=["POST"])
def attack():
    plan = request.get_json()
    out = {}
    for path in plan["read"]:
        out["read " + path] = attempt(lambda: read(path))
    for path in plan["list"]:
        out["list " + path] = attempt(lambda: os.listdir(path))
    for path in plan["write"]:
        out["write " + path] = attempt(lambda: write(path))
    for pid in plan["signal"]:
        out["signal %d" % pid] = attempt(lambda: os.kill(pid, 0))
    for port in plan["bind"]:
        out["bind %d" % port] = attempt(lambda: bind(port))
    for path in plan["chmod"]:
        out["chmod " + path] = attempt(lambda: chmod(path))
    for path in plan["unix"]:
        out["unix " + path] = attempt(lambda: unix(path))
    # The shared install of its requirements.txt is the node's, not its own.
    import six
    out["chmod its shared requirements"] = attempt(lambda: chmod(six.__file__))
    out["uid 0"] = attempt(lambda: 1 // int(os.getuid() == 0))
    return {"attempts": out, "environ": dict(os.environ)}


@app.route("/own", methods=["POST"])
def own():
    home, tmp = os.environ["HOME"], os.environ["TMPDIR"]
    return {
        "secrets": attempt(lambda: read(os.environ["SECRETS_PATH"])),
        "home": attempt(lambda: write(os.path.join(home, "note.txt"))),
        "tmp": attempt(lambda: write(os.path.join(tmp, "scratch.csv"))),
        "private /tmp": attempt(
            lambda: write("/tmp/upload.bin")
            and os.path.exists(os.path.join(tmp, "upload.bin"))
            or 1 // 0
        ),
        "code": attempt(lambda: read(os.path.join(os.environ["MODULE_PATH"], "app.py"))),
        "devnull": attempt(lambda: write(os.devnull)),
        "cpus": attempt(lambda: 1 // (os.cpu_count() or 0)),
    }
"#;

/// An app with a secret, as its owner deploys it.
const VICTIM_APP: &str = r#"import json
import os

from flask import Flask

app = Flask(__name__)


@app.route("/health")
def health():
    return ""


@app.route("/secret")
def secret():
    with open(os.environ["SECRETS_PATH"]) as f:
        return json.load(f)
"#;

/// Scaffolds app `name` for `ctx` with `code` as its `app.py` and, when
/// given, `secrets` as its secrets file.
fn write_app(ctx: &TestContext, name: &str, code: &str, secrets: Option<&Value>) -> PathBuf {
    let app = ctx.scaffold(name);
    std::fs::write(app.join("mse_src/app.py"), code).unwrap();
    if let Some(secrets) = secrets {
        std::fs::write(app.join("secrets.json"), secrets.to_string()).unwrap();
        let toml = std::fs::read_to_string(app.join("mse.toml"))
            .unwrap()
            .replace(
                "healthcheck_endpoint = \"/health\"",
                "healthcheck_endpoint = \"/health\"\nsecrets = \"secrets.json\"",
            );
        std::fs::write(app.join("mse.toml"), toml).unwrap();
    }
    app
}

/// `POST {url}{path}` with a JSON body to an app deployed as `out`, trusting
/// the certificate its deployment verified.
fn post_app(platform: &Platform, out: &Value, path: &str, body: &Value) -> Value {
    let pem = std::fs::read_to_string(out["cert_path"].as_str().unwrap()).unwrap();
    let der = mse_attest::ratls::pem_to_der(pem.as_bytes()).unwrap();
    let tls = mse_attest::pin::client_config(&der, &[b"http/1.1"]);
    let url = out["url"].as_str().unwrap();
    let host = url
        .trim_start_matches("https://")
        .rsplit_once(':')
        .unwrap()
        .0
        .to_string();
    let proxy: std::net::SocketAddr = platform.proxy.parse().unwrap();
    let client = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve(&host, proxy)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let response = client
        .post(format!("{url}{path}"))
        .json(body)
        .send()
        .unwrap_or_else(|e| panic!("POST {url}{path}: {e:?}\n{}", platform.output()));
    assert_eq!(response.status().as_u16(), 200, "POST {path}");
    response.json().unwrap()
}

/// Process ids whose command line holds every one of `words`.
fn pids_with(words: &[&str]) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if words.iter().all(|w| cmdline.contains(w)) {
            found.push(pid);
        }
    }
    found
}

/// Nothing a node decrypted is left: no private folder of `node`, and the
/// secret in no file of the nodes' folder.
fn assert_no_plaintext(platform: &Platform, node: &Path) {
    for dir in mse_api::launch::private_dirs(node) {
        assert!(!dir.exists(), "{} is left", dir.display());
    }
    assert_nowhere_in(
        &platform.nodes_dir(),
        VICTIM_SECRET.as_bytes(),
        "the secret",
    );
}

/// `path` as the process `pid` sees it (in its mount namespace).
fn seen_by(pid: i32, path: &Path) -> PathBuf {
    Path::new(&format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap_or(path))
}

fn path(p: &Path) -> String {
    p.to_string_lossy().to_string()
}

#[test]
fn a_hostile_app_finds_no_platform_key_token_or_other_tenants_secret() {
    let platform = Platform::start_with(|command| {
        command.env(CANARY.0, CANARY.1);
    });
    let data = platform.data_dir();
    let nodes = platform.nodes_dir();

    // The victim: an ordinary user with a secret.
    let (victim, _) = user(&platform, "victim");
    let secrets = json!({ "key": VICTIM_SECRET });
    let victim_app = write_app(&victim, "payroll", VICTIM_APP, Some(&secrets));
    let victim_out = deploy_ok(&platform, &victim, &victim_app, &[]);
    let victim_id = victim_out["uuid"].as_str().unwrap().to_string();
    let victim_node = nodes.join(&victim_id);
    let victim_runtime = pids_with(&["mse-run", &victim_id]);
    assert_eq!(victim_runtime.len(), 1, "one mse-run for the victim");
    let victim_context = victim
        .root
        .path()
        .join("home/conf/context")
        .join(&victim_id)
        .join("context.mse");
    assert!(victim_context.is_file());

    // The attacker: another ordinary user, deploying through `mse deploy`.
    let (mallory, _) = user(&platform, "mallory");
    let hostile = write_app(&mallory, "hostile", HOSTILE_APP, Some(&json!({"own": 1})));
    std::fs::write(hostile.join("mse_src/requirements.txt"), "six==1.16.0\n").unwrap();
    let hostile_out = deploy_ok(&platform, &mallory, &hostile, &[]);
    assert!(
        hostile_out["sandbox"]
            .as_str()
            .is_some_and(|s| s.starts_with("landlock")),
        "the deploy says how the app is confined: {hostile_out}"
    );

    let hostile_id = hostile_out["uuid"].as_str().unwrap();
    let status = mallory.ok_in(&mallory.work(), &["status", hostile_id]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("sandbox") && l.contains("landlock ABI")),
        "`mse status` says how the app is confined:\n{status}"
    );
    assert!(
        status.lines().any(|l| l.starts_with("limits")
            && l.contains("processes")
            && l.contains("open files")
            && l.contains("disk")),
        "`mse status` says the app's limits:\n{status}"
    );

    // What its own sandbox leaves it: its secrets, home, temporary folder
    // and code (so the attempts below can succeed when nothing stops them).
    let own = post_app(&platform, &hostile_out, "/own", &json!({}));
    for what in [
        "secrets",
        "home",
        "tmp",
        "private /tmp",
        "code",
        "devnull",
        "cpus",
    ] {
        assert_eq!(own[what]["ok"], true, "the app uses its own {what}: {own}");
    }
    // The host's /tmp is not the app's: what it writes there lands in its own.
    assert!(!Path::new("/tmp/upload.bin").exists());

    let cache = mse_testkit::runtime_cache_dir();
    let envs: Vec<PathBuf> = std::fs::read_dir(cache.join("envs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let mut read = vec![
        data.join("admin.token"),
        data.join("signer.key"),
        data.join("simulation-ca.key"),
        nodes.join("quote-keys/local/quote-key.pem"),
        data.join("operator-ca.key"),
        data.join("wildcard.key"),
        data.join("mse.db"),
        victim_node.join("home/.cache/mse/secrets.json"),
        victim_node.join("tls/key.pem"),
        victim_node.join("app/app.py"),
        victim_context.clone(),
        PathBuf::from("/etc/shadow"),
        PathBuf::from(format!("/proc/{}/environ", platform.pid())),
        PathBuf::from(format!("/proc/{}/environ", victim_runtime[0])),
        PathBuf::from(format!("/proc/{}/mem", victim_runtime[0])),
    ];
    read.extend(
        mse_testkit::files_under(&data.join("apps"))
            .into_iter()
            .take(4),
    );
    let list = [
        data.clone(),
        nodes.clone(),
        victim_node.clone(),
        PathBuf::from("/proc"),
        victim.root.path().to_path_buf(),
    ];
    let mut write = vec![
        data.join("planted"),
        victim_node.join("home/planted"),
        cache.join("planted"),
    ];
    // Files of the platform and of the victim, and the shared runtime.
    let chmod = [
        victim_node.join("app"),
        victim_node.join("app/app.py"),
        data.join("admin.token"),
        std::fs::canonicalize(envs[0].join("venv/bin/python")).unwrap(),
        mse_testkit::workspace_binary("mse-run"),
    ];
    // A UNIX socket that trusts its peers (as PostgreSQL's peer
    // authentication does), open to every user, and the database's own.
    let socket_path = PathBuf::from(format!("/run/mse-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket_path);
    let listener = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    listener.set_nonblocking(true).unwrap();
    let mut unix = vec![socket_path.clone()];
    unix.extend(
        [
            "/var/run/postgresql/.s.PGSQL.5432",
            "/run/dbus/system_bus_socket",
        ]
        .map(PathBuf::from)
        .into_iter()
        .filter(|p| p.exists()),
    );
    write.extend(envs.iter().map(|env| env.join("venv/planted.py")));
    // Nothing of an earlier run may pass for a write of this one.
    for planted in &write {
        let _ = std::fs::remove_file(planted);
    }
    let plan = json!({
        "read": read.iter().map(|p| path(p)).collect::<Vec<_>>(),
        "list": list.iter().map(|p| path(p)).collect::<Vec<_>>(),
        "write": write.iter().map(|p| path(p)).collect::<Vec<_>>(),
        "signal": [platform.pid(), victim_runtime[0]],
        "bind": [free_port()],
        "chmod": chmod.iter().map(|p| path(p)).collect::<Vec<_>>(),
        "unix": unix.iter().map(|p| path(p)).collect::<Vec<_>>(),
    });
    let answer = post_app(&platform, &hostile_out, "/attack", &plan);

    let attempts = answer["attempts"].as_object().unwrap();
    assert_eq!(
        attempts.len(),
        read.len() + list.len() + write.len() + chmod.len() + unix.len() + 5,
        "every attempt was made: {answer}"
    );
    assert!(
        listener.accept().is_err(),
        "no app connected to the UNIX socket"
    );
    // Refused, not missing: the app saw each file and socket it attacked
    // outside the host's /tmp (its own /tmp hides the test platform's
    // folders, which are there).
    for target in chmod.iter().chain(&unix).filter(|t| !t.starts_with("/tmp")) {
        let error = attempts
            .iter()
            .find(|(what, _)| what.ends_with(&path(target)))
            .map(|(_, outcome)| outcome["error"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("PermissionError") || error.contains("Read-only"),
            "{}: {error}",
            target.display()
        );
    }
    let _ = std::fs::remove_file(&socket_path);
    // In the app's own mount namespace the nodes folder holds only the way
    // to its own folders: listing it shows its own uuid, never another's.
    let own_way = format!("list {}", path(&nodes));
    let succeeded: Vec<_> = attempts
        .iter()
        .filter(|(what, outcome)| {
            outcome["ok"] != false
                && !(**what == own_way
                    && outcome["value"].as_str()
                        == Some(&format!("[{:?}]", hostile_id).replace('"', "'")))
        })
        .map(|(what, outcome)| format!("{what} -> {outcome}"))
        .collect();
    assert!(
        succeeded.is_empty(),
        "a tenant's app could:\n{}",
        succeeded.join("\n")
    );
    let text = answer.to_string();
    let admin_token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    for needle in [VICTIM_SECRET, admin_token.trim(), CANARY.1] {
        assert!(!text.contains(needle), "the app saw `{needle}`");
    }
    let environ = answer["environ"].as_object().unwrap();
    assert!(
        environ.keys().all(|k| !k.starts_with("MSE_")),
        "nothing of the platform's environment reaches the app: {environ:?}"
    );
    for planted in &write {
        assert!(!planted.exists(), "{} was written", planted.display());
    }

    // The victim is unharmed.
    let (status, body) = call_app(&platform, &victim_out, "/secret");
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), secrets);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_unconfigured_node_stops_at_its_configuration_deadline_and_says_why() {
    let platform = Platform::start_with(|command| {
        command.args(["--config-timeout", "10"]);
    });
    let ctx = TestContext::new();
    let app = platform.deploy_scaffold(&ctx, &platform.admin, "neverconfigured");
    let id = app["id"].as_str().unwrap().to_string();
    platform.wait_initializing(&platform.admin, &id);
    let started = Instant::now();
    let app = platform.wait_app(&platform.admin, &id, Duration::from_secs(60), |a| {
        a["status"] == "on_error"
    });
    assert!(
        app["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no valid configuration arrived within 10 s")),
        "{app}"
    );
    assert!(started.elapsed() < Duration::from_secs(40));
    // Its node reported why, then ends (its app's cgroup removed first).
    wait::until("its node ends", Duration::from_secs(10), || {
        pids_with(&["mse-run", &id]).is_empty()
    });
}

#[test]
fn a_node_killed_with_sigkill_leaves_no_plaintext_behind() {
    let platform = Platform::start();
    let (owner, token) = user(&platform, "owner");
    let secrets = json!({ "key": VICTIM_SECRET });
    let app = write_app(&owner, "killed", VICTIM_APP, Some(&secrets));
    let out = deploy_ok(&platform, &owner, &app, &[]);
    let id = out["uuid"].as_str().unwrap().to_string();
    let node = platform.nodes_dir().join(&id);
    assert!(node.join("app/app.py").is_file(), "decrypted while it runs");

    let runtime = pids_with(&["mse-run", &id]);
    assert_eq!(runtime.len(), 1);
    // The app server leads a process group of its own; what it forks
    // (workers of older hypercorns) is in it too.
    let server = pids_with(&["hypercorn", &node.to_string_lossy()]);
    assert_eq!(server.len(), 1, "one app server");
    let group = server[0] as u32;
    // The cgroup of the app's limits, where this machine has one.
    let cgroups: Vec<PathBuf> = std::fs::read_to_string(format!("/proc/{group}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            // `mse/<uuid>-<hash of the node's folder>`.
            let ours = path.rsplit_once('/').is_some_and(|(parent, last)| {
                parent.ends_with("/mse") && last.starts_with(&format!("{id}-"))
            });
            ours.then(|| {
                Path::new("/sys/fs/cgroup")
                    .join(controllers)
                    .join(path.trim_start_matches('/'))
            })
        })
        .collect();
    let limited = out["limits"]
        .as_str()
        .or(platform.app(&token, &id)["limits"].as_str())
        .is_some_and(|l| !l.starts_with("UNLIMITED"));
    assert_eq!(limited, !cgroups.is_empty(), "{cgroups:?}");
    // SAFETY: killing the node runtime this test's platform started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(runtime[0], libc::SIGKILL);
    }
    let app = platform.wait_app(&token, &id, Duration::from_secs(30), |a| {
        a["status"] == "on_error"
    });
    assert!(app["reason"].is_string(), "{app}");
    assert_no_plaintext(&platform, &node);
    assert!(!node.exists(), "its folder goes");
    assert!(platform.log_file(&id).is_file(), "the log stays");
    wait::until(
        "the app server, and every process it started, end with its runtime",
        Duration::from_secs(30),
        || match mse_testkit::live_group_members(group) {
            left if left.is_empty() => Ok(()),
            left => Err(format!("still running: {left:?}")),
        },
    );
    for cgroup in &cgroups {
        assert!(!cgroup.exists(), "its cgroup {} is left", cgroup.display());
    }
}

#[test]
fn after_a_sigkill_of_the_platform_it_restarts_at_once_its_nodes_die_and_no_plaintext_stays() {
    let mut platform = Platform::start();
    let (owner, token) = user(&platform, "owner");
    let secrets = json!({ "key": VICTIM_SECRET });
    let code = write_app(&owner, "crashed", VICTIM_APP, Some(&secrets));
    let out = deploy_ok(&platform, &owner, &code, &[]);
    let id = out["uuid"].as_str().unwrap().to_string();
    let node = platform.nodes_dir().join(&id);
    let runtime = pids_with(&["mse-run", &id]);
    assert_eq!(runtime.len(), 1);
    // The secrets are in the node's home: a tmpfs of the node's own mount
    // namespace, seen through its root.
    let secrets = node.join("home/.cache/mse/secrets.json");
    assert!(seen_by(runtime[0], &secrets).is_file());
    assert!(!secrets.exists(), "the home is the node's alone");

    // Killed, and still a zombie while the new process starts: the restart
    // is not refused for a node id "held" by the dead process.
    platform.crash_and_restart(|_| {});
    // The new process listens on new ports: the owner logs in again.
    login(&platform, &owner, &token, true);
    let app = platform.wait_app(&token, &id, Duration::from_secs(30), |a| {
        a["status"] == "on_error"
    });
    assert_eq!(app["reason"], "node lost", "{app}");

    // The node died with the platform, its app server with it, and what it
    // decrypted is gone.
    wait::until(
        "the node ends with its platform",
        Duration::from_secs(30),
        || pids_with(&["mse-run", &id]).is_empty(),
    );
    assert!(pids_with(&["hypercorn", &node.to_string_lossy()]).is_empty());
    assert_no_plaintext(&platform, &node);

    // And the platform works: the name deploys again.
    let again = deploy_ok(&platform, &owner, &code, &["-y"]);
    assert_eq!(again["status"], "running");
}
