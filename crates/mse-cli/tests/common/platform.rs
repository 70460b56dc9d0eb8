//! A real platform for end-to-end tests: the `mse-server` binary in a
//! temporary data folder, on free ports, with simulated quotes; plus the
//! raw-API helpers a test needs around the `mse` binary (users, deployments
//! without `mse deploy`, status polling).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::TestContext;

/// How long the platform may take to print its addresses.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long it may take to stop after SIGTERM (it gives its nodes 20 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `mse-server`, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Platform {
    /// Holds the data folder (`data`) and the nodes' folder (`data.nodes`).
    pub dir: tempfile::TempDir,
    child: Child,
    /// The API's URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// The proxy's address.
    pub proxy: String,
    /// The address the proxy was asked to listen on (`--listen-proxy`).
    listen_proxy: String,
    /// The first admin's token.
    pub admin: String,
    output: Arc<Mutex<String>>,
    /// Earlier processes killed by [`Platform::crash_and_restart`], reaped
    /// on drop.
    crashed: Vec<Child>,
    http: reqwest::blocking::Client,
}

/// What a starting platform printed.
struct Started {
    admin: Option<String>,
    url: String,
    proxy: String,
}

/// Starts `mse-server` on `dir/data` and waits (bounded) until it listens
/// (and, with `first`, prints the admin token).
fn spawn(
    dir: &Path,
    listen_proxy: &str,
    configure: impl FnOnce(&mut Command),
    output: &Arc<Mutex<String>>,
    first: bool,
) -> (Child, Started) {
    let data = dir.join("data");
    let mut command = Command::new(mse_testkit::workspace_binary("mse-server"));
    // The shared cache through `$MSE_CACHE_DIR`, as an operator's shell
    // would set it; `configure` may name another.
    command.envs(mse_testkit::runtime_env());
    configure(&mut command);
    // The API on a free port, the proxy on `listen_proxy`, unless
    // `configure` named others.
    // Room for many apps of one core on this small machine, unless
    // `configure` declared another capacity.
    for (flag, address) in [
        ("--listen-api", "127.0.0.1:0"),
        ("--listen-proxy", listen_proxy),
        ("--cores", "64"),
    ] {
        if command.get_args().all(|a| a != flag) {
            command.args([flag, address]);
        }
    }
    // Its own data folder, unless `configure` shares another's (a replica).
    if command.get_args().all(|a| a != "--data-dir") {
        command.arg("--data-dir").arg(&data);
    }
    let mut child = command
        .arg("--mse-run")
        .arg(mse_testkit::workspace_binary("mse-run"))
        .args(["--quote-provider", "simulation"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mse-server starts");
    let (sender, receiver) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    {
        let output = output.clone();
        std::thread::spawn(move || drain(stdout, output, Some(sender)));
    }
    {
        let output = output.clone();
        std::thread::spawn(move || drain(stderr, output, None));
    }

    let deadline = Instant::now() + START_TIMEOUT;
    let (mut admin, mut url, mut proxy) = (None, None, None);
    while (first && admin.is_none()) || url.is_none() || proxy.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(Line::Token(t)) => admin = Some(t),
            Ok(Line::Api(u)) => url = Some(u),
            Ok(Line::Proxy(p)) => proxy = Some(p),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let output = output.lock().map(|o| o.clone()).unwrap_or_default();
                panic!("mse-server did not start ({e}); its output:\n{output}");
            }
        }
    }
    (
        child,
        Started {
            admin,
            url: url.unwrap_or_default(),
            proxy: proxy.unwrap_or_default(),
        },
    )
}

enum Line {
    Token(String),
    Api(String),
    Proxy(String),
}

/// Copies `stream` into `output` line by line, reporting the start-up lines.
fn drain(stream: impl Read, output: Arc<Mutex<String>>, lines: Option<mpsc::Sender<Line>>) {
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if let Some(sender) = &lines {
            let found = if let Some(token) = line.strip_prefix("admin token: ") {
                Some(Line::Token(token.trim().to_string()))
            } else if let Some(url) = line.strip_prefix("API listening on ") {
                Some(Line::Api(url.trim().to_string()))
            } else {
                line.strip_prefix("proxy listening on ").map(|rest| {
                    Line::Proxy(rest.split_whitespace().next().unwrap_or("").to_string())
                })
            };
            if let Some(found) = found {
                let _ = sender.send(found);
            }
        }
        if let Ok(mut output) = output.lock() {
            output.push_str(&line);
            output.push('\n');
        }
    }
}

impl Platform {
    /// Starts a new platform and waits (bounded) until it listens.
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// Starts a new platform, letting `configure` add arguments or
    /// variables to its command first.
    pub fn start_with(configure: impl FnOnce(&mut Command)) -> Self {
        Self::start_with_proxy("127.0.0.1:0", configure)
    }

    /// Starts a new platform whose proxy listens on `listen_proxy` (a free
    /// port when it is `127.0.0.1:0`).
    pub fn start_with_proxy(listen_proxy: &str, configure: impl FnOnce(&mut Command)) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mse-platform-")
            .tempdir()
            .expect("a temporary folder");
        Self::spawned(dir, listen_proxy, configure, true)
    }

    /// Starts another process of an existing platform (an API replica on
    /// its store and data folder, which `configure` names): it prints no
    /// admin token.
    pub fn start_replica(configure: impl FnOnce(&mut Command)) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mse-replica-")
            .tempdir()
            .expect("a temporary folder");
        Self::spawned(dir, "127.0.0.1:0", configure, false)
    }

    fn spawned(
        dir: tempfile::TempDir,
        listen_proxy: &str,
        configure: impl FnOnce(&mut Command),
        first: bool,
    ) -> Self {
        let output = Arc::new(Mutex::new(String::new()));
        let (child, started) = spawn(dir.path(), listen_proxy, configure, &output, first);
        Platform {
            dir,
            child,
            url: started.url,
            proxy: started.proxy,
            listen_proxy: listen_proxy.to_string(),
            admin: started.admin.unwrap_or_default(),
            output,
            crashed: Vec::new(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
        }
    }

    /// Kills the platform with SIGKILL, leaving it unreaped (a zombie, as
    /// under a supervisor that has not looked yet), and starts it again at
    /// once on the same data folder with the same `configure`.
    pub fn crash_and_restart(&mut self, configure: impl FnOnce(&mut Command)) {
        // SAFETY: killing the child this platform started.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL);
        }
        let (child, started) = spawn(
            self.dir.path(),
            &self.listen_proxy,
            configure,
            &self.output,
            false,
        );
        let old = std::mem::replace(&mut self.child, child);
        self.crashed.push(old);
        self.url = started.url;
        self.proxy = started.proxy;
    }

    /// What the platform printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// The platform's data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The local nodes' folder (beside the data folder).
    pub fn nodes_dir(&self) -> PathBuf {
        self.dir.path().join("data.nodes")
    }

    /// Where the node runner keeps app `id`'s log (it outlives the node's
    /// folder).
    pub fn log_file(&self, id: &str) -> PathBuf {
        self.nodes_dir().join("logs").join(format!("{id}.log"))
    }

    /// Waits (bounded) until app `id`'s node folder is gone: its runner
    /// removes it once the node process has exited.
    pub fn wait_node_dir_gone(&self, id: &str) {
        let dir = self.nodes_dir().join(id);
        let deadline = Instant::now() + Duration::from_secs(30);
        while dir.exists() {
            assert!(
                Instant::now() < deadline,
                "{} is left: {:?}",
                dir.display(),
                std::fs::read_dir(&dir)
                    .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `mse-server` process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn send(&self, request: reqwest::blocking::RequestBuilder, token: &str) -> (u16, Value) {
        let response = request
            .bearer_auth(token)
            .send()
            .unwrap_or_else(|e| panic!("the API does not answer: {e}\n{}", self.output()));
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// `GET path` with `token`: (status, JSON body or text).
    pub fn get(&self, token: &str, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.url)), token)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        self.send(
            self.http.post(format!("{}{path}", self.url)).json(&body),
            token,
        )
    }

    /// A new (non-admin) user; returns its token.
    pub fn create_user(&self, name: &str) -> String {
        let (status, body) = self.post(&self.admin, "/users", json!({ "name": name }));
        assert_eq!(status, 201, "POST /users: {body}");
        body["token"]
            .as_str()
            .expect("a new user comes with its token")
            .to_string()
    }

    /// Deploys app `name` through the raw API, as `user` (a context of that
    /// user): `mse scaffold`, `mse package`, then `POST /apps` with the
    /// config of its `mse.toml`. Nobody sends the node its key, so the app
    /// stays `initializing`. Returns the app as the API describes it.
    pub fn deploy_scaffold(&self, user: &TestContext, token: &str, name: &str) -> Value {
        let app = user.scaffold(name);
        let out = app.join("package");
        user.ok_in(
            &app,
            &[
                "package",
                "--path",
                &app.join("mse.toml").to_string_lossy(),
                "--output",
                &out.to_string_lossy(),
            ],
        );
        let config = deploy_config(&app.join("mse.toml"));
        let code = std::fs::read(out.join("code.tar")).expect("mse package wrote code.tar");
        let form = reqwest::blocking::multipart::Form::new()
            .part(
                "config",
                reqwest::blocking::multipart::Part::text(config.to_string())
                    .mime_str("application/json")
                    .unwrap(),
            )
            .part(
                "code",
                reqwest::blocking::multipart::Part::bytes(code)
                    .file_name("code.tar")
                    .mime_str("application/x-tar")
                    .unwrap(),
            );
        let (status, body) = self.send(
            self.http.post(format!("{}/apps", self.url)).multipart(form),
            token,
        );
        assert_eq!(status, 201, "POST /apps: {body}\n{}", self.output());
        body
    }

    /// `GET /apps/{id}` as `token`.
    pub fn app(&self, token: &str, id: &str) -> Value {
        let (status, body) = self.get(token, &format!("/apps/{id}"));
        assert_eq!(status, 200, "GET /apps/{id}: {body}");
        body
    }

    /// Polls app `id` (every 100 ms, at most `timeout`) until `done` holds;
    /// returns it.
    pub fn wait_app(
        &self,
        token: &str,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let app = self.app(token, id);
            if done(&app) {
                return app;
            }
            assert!(
                Instant::now() < deadline,
                "app {id} is still {} after {timeout:?}: {app}\n{}",
                app["status"],
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until app `id`'s node listens: `initializing` (or later).
    pub fn wait_initializing(&self, token: &str, id: &str) -> Value {
        self.wait_app(token, id, Duration::from_secs(120), |a| {
            a["status"] != "spawning"
        })
    }

    /// Stops app `id` through the API and waits until it is final.
    pub fn stop_app(&self, token: &str, id: &str) -> Value {
        let (status, body) = self.post(token, &format!("/apps/{id}/stop"), json!({}));
        assert_eq!(status, 202, "POST /apps/{id}/stop: {body}");
        self.wait_app(token, id, Duration::from_secs(60), |a| {
            a["status"] == "stopped" || a["status"] == "on_error"
        })
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- mse-server output ---\n{}", self.output());
        }
        for mut crashed in self.crashed.drain(..) {
            let _ = crashed.wait();
        }
        // SAFETY: signalling the child this platform started.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The deployment config of an `mse.toml`, as `POST /apps` takes it.
pub fn deploy_config(mse_toml: &Path) -> Value {
    let text = std::fs::read_to_string(mse_toml).expect("mse.toml is readable");
    let toml: toml::Value = toml::from_str(&text).expect("mse.toml is TOML");
    let field = |table: &toml::Value, key: &str| -> String {
        table
            .get(key)
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("mse.toml has no `{key}`"))
            .to_string()
    };
    let code = toml.get("code").expect("mse.toml has [code]");
    json!({
        "name": field(&toml, "name"),
        "project": field(&toml, "project"),
        "resource": field(&toml, "resource"),
        "docker": field(code, "docker"),
        "python_application": field(code, "python_application"),
        "healthcheck_endpoint": field(code, "healthcheck_endpoint"),
    })
}

/// `mse login --url … --token … [--allow-simulation]` as `user`; panics
/// unless it succeeds.
pub fn login(platform: &Platform, user: &TestContext, token: &str, allow_simulation: bool) {
    let mut command = user.mse();
    command.args(["login", "--url", &platform.url, "--token", token]);
    if allow_simulation {
        command.arg("--allow-simulation");
    }
    let output = command.output().expect("mse runs");
    assert!(output.status.success(), "mse login failed: {output:?}");
}

/// A user of the platform: a home of their own, logged in with a new token.
pub fn user(platform: &Platform, name: &str) -> (TestContext, String) {
    let ctx = TestContext::new();
    let token = platform.create_user(name);
    login(platform, &ctx, &token, true);
    (ctx, token)
}
