//! A running platform for end-to-end tests: the `mse-server` binary of this
//! build, started the way an operator starts it, and reached over its REST
//! API the way a client does.
//!
//! - [`command`] is the `mse-server` command line every test starts from
//!   (this build's `mse-run`, the shared runtime cache, room for many apps);
//! - [`Server`] is one running process of it: what it printed, its
//!   addresses and admin token from its start-up lines, stopped (SIGTERM,
//!   then SIGKILL) when dropped;
//! - [`Platform`] is a whole platform in a temporary folder (API and proxy
//!   on free ports, simulated quotes) with the raw-API calls a test needs
//!   around the `mse` binary: users, apps, waits on an app's status.
//!
//! What it prints is shown when a test fails while it runs.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::wait;

/// The bound on waiting for a start-up line (the first start may build the
/// catalog's runtime environments on this small machine).
pub const START_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a process may take to stop after SIGTERM (it gives its nodes
/// 20 s) before it gets SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The `mse-server` command on data folder `data` (none for a node host,
/// which has no data folder), with `configure` applied, then `args`.
///
/// Unless they name it already, it gets this build's `mse-run`
/// (`--mse-run`), the data folder (`--data-dir`) and room for many apps of
/// one core on a small machine (`--cores 64`); the shared runtime cache
/// and `uv` come through the environment ([`crate::runtime_env`]), as an
/// operator's shell would set them.
pub fn command(
    data: Option<&Path>,
    args: &[&str],
    configure: impl FnOnce(&mut Command),
) -> Command {
    let mut command = Command::new(crate::workspace_binary("mse-server"));
    command.envs(crate::runtime_env());
    configure(&mut command);
    command.args(args);
    if let Some(data) = data {
        default_arg(&mut command, "--data-dir", data.as_os_str());
    }
    default_arg(
        &mut command,
        "--mse-run",
        crate::workspace_binary("mse-run").as_os_str(),
    );
    default_arg(&mut command, "--cores", "64".as_ref());
    command
}

/// Adds `flag value` to `command` unless it names `flag` already.
fn default_arg(command: &mut Command, flag: &str, value: &std::ffi::OsStr) {
    if command.get_args().all(|a| a != flag) {
        command.arg(flag).arg(value);
    }
}

/// Where the lines of a standard output go, and the flag set once it is
/// closed.
type Stdout = (Arc<Mutex<Vec<String>>>, Arc<AtomicBool>);

/// A running `mse-server` process. Dropped, it gets SIGTERM (so it stops
/// its nodes), then SIGKILL if it is still there after [`STOP_TIMEOUT`].
pub struct Server {
    /// The process (to signal it or look whether it still runs).
    pub child: Child,
    /// Its standard output, line by line.
    lines: Arc<Mutex<Vec<String>>>,
    /// Set once its standard output is closed: no line comes any more.
    closed: Arc<AtomicBool>,
    /// Its standard output and standard error, as they came.
    output: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `mse-server` on data folder `data` with `args` ([`command`]).
    pub fn spawn(data: &Path, args: &[&str]) -> Server {
        Self::spawn_with(data, args, |_| {})
    }

    /// [`Server::spawn`], with `configure` applied to the command first
    /// (limits, environment).
    pub fn spawn_with(data: &Path, args: &[&str], configure: impl FnOnce(&mut Command)) -> Server {
        Self::start(command(Some(data), args, configure))
    }

    /// Starts `command` (from [`command`]), reading what it prints.
    pub fn start(mut command: Command) -> Server {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let lines = Arc::<Mutex<Vec<String>>>::default();
        let closed = Arc::<AtomicBool>::default();
        let output = Arc::<Mutex<String>>::default();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        Self::drain(
            stdout,
            output.clone(),
            Some((lines.clone(), closed.clone())),
        );
        Self::drain(stderr, output.clone(), None);
        Server {
            child,
            lines,
            closed,
            output,
        }
    }

    /// Reads `stream` into `output` (and `lines`, for its standard output)
    /// until it closes.
    fn drain(
        stream: impl Read + Send + 'static,
        output: Arc<Mutex<String>>,
        stdout: Option<Stdout>,
    ) {
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut output) = output.lock() {
                    output.push_str(&line);
                    output.push('\n');
                }
                if let Some((lines, _)) = &stdout {
                    if let Ok(mut lines) = lines.lock() {
                        lines.push(line);
                    }
                }
            }
            if let Some((_, closed)) = &stdout {
                closed.store(true, Ordering::SeqCst);
            }
        });
    }

    /// Every line of its standard output so far.
    pub fn seen(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// What it printed so far (standard output and standard error).
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Waits (at most [`START_TIMEOUT`]) until a line of its standard
    /// output starts with `prefix`; returns that line. Panics if its output
    /// ends first (it exited).
    pub fn wait_line(&self, prefix: &str) -> String {
        wait::until(
            &format!("mse-server prints `{prefix}…`"),
            START_TIMEOUT,
            || {
                // Whether the output was closed before looking: a line read
                // just before it closed is still found.
                let closed = self.closed.load(Ordering::SeqCst);
                let found = self
                    .seen()
                    .into_iter()
                    .find(|line| line.starts_with(prefix));
                assert!(
                    found.is_some() || !closed,
                    "mse-server ended without printing `{prefix}…`; its output:\n{}",
                    self.output()
                );
                found.ok_or_else(|| format!("its output:\n{}", self.output()))
            },
        )
    }

    /// The URL of its REST API (`http://127.0.0.1:PORT`).
    pub fn api_url(&self) -> String {
        let line = self.wait_line("API listening on ");
        line["API listening on ".len()..].trim().to_string()
    }

    /// The port of its REST API.
    pub fn api_port(&self) -> u16 {
        let url = self.api_url();
        let address = url.trim_start_matches("http://");
        address
            .parse::<SocketAddr>()
            .unwrap_or_else(|e| panic!("the API's address `{address}`: {e}"))
            .port()
    }

    /// The address of its proxy.
    pub fn proxy_addr(&self) -> SocketAddr {
        let line = self.wait_line("proxy listening on ");
        let address = line["proxy listening on ".len()..]
            .split_whitespace()
            .next()
            .unwrap_or_default();
        address
            .parse()
            .unwrap_or_else(|e| panic!("the proxy's address `{address}`: {e}"))
    }

    /// The admin token it printed (on the first start of an API).
    pub fn admin_token(&self) -> String {
        let line = self.wait_line("admin token: ");
        line["admin token: ".len()..].trim().to_string()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it `signal`.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling the child this helper started.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (at most [`STOP_TIMEOUT`] twice over) until
    /// it exits; returns how.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        wait::exit(
            "mse-server stops on SIGTERM",
            &mut self.child,
            STOP_TIMEOUT * 2,
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- mse-server (pid {}) output ---\n{}",
                self.child.id(),
                self.output()
            );
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGTERM);
            let child = &mut self.child;
            let _ = wait::within(STOP_TIMEOUT, || !matches!(child.try_wait(), Ok(None)));
        }
        self.kill();
    }
}

/// A whole platform: `mse-server` with every role in a temporary data
/// folder, its API and proxy on free ports, with simulated quotes. Stopped
/// when dropped.
pub struct Platform {
    /// The running process (stopped when dropped: before `dir` is removed,
    /// the fields being dropped in order).
    server: Server,
    /// Earlier processes killed by [`Platform::crash_and_restart`], reaped
    /// on drop.
    crashed: Vec<Server>,
    /// Holds the data folder (`data`) and the nodes' folder (`data.nodes`).
    pub dir: tempfile::TempDir,
    /// The API's URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// The proxy's address.
    pub proxy: String,
    /// The address the proxy was asked to listen on (`--listen-proxy`).
    listen_proxy: String,
    /// The first admin's token.
    pub admin: String,
    http: reqwest::blocking::Client,
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
        Self::started(dir, listen_proxy, configure, true)
    }

    /// Starts another process of an existing platform (an API replica on
    /// its store and data folder, which `configure` names): it prints no
    /// admin token.
    pub fn start_replica(configure: impl FnOnce(&mut Command)) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mse-replica-")
            .tempdir()
            .expect("a temporary folder");
        Self::started(dir, "127.0.0.1:0", configure, false)
    }

    /// `mse-server` on `dir/data`, its API on a free port, its proxy on
    /// `listen_proxy`, unless `configure` names others.
    fn spawn(dir: &Path, listen_proxy: &str, configure: impl FnOnce(&mut Command)) -> Server {
        Server::start(command(Some(&dir.join("data")), &[], |command| {
            configure(command);
            default_arg(command, "--listen-api", "127.0.0.1:0".as_ref());
            default_arg(command, "--listen-proxy", listen_proxy.as_ref());
            default_arg(command, "--quote-provider", "simulation".as_ref());
        }))
    }

    fn started(
        dir: tempfile::TempDir,
        listen_proxy: &str,
        configure: impl FnOnce(&mut Command),
        first: bool,
    ) -> Self {
        let server = Self::spawn(dir.path(), listen_proxy, configure);
        let admin = if first {
            server.admin_token()
        } else {
            String::new()
        };
        Platform {
            url: server.api_url(),
            proxy: server.proxy_addr().to_string(),
            dir,
            server,
            listen_proxy: listen_proxy.to_string(),
            admin,
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
        self.server.signal(libc::SIGKILL);
        let server = Self::spawn(self.dir.path(), &self.listen_proxy, configure);
        self.url = server.api_url();
        self.proxy = server.proxy_addr().to_string();
        let old = std::mem::replace(&mut self.server, server);
        self.crashed.push(old);
    }

    /// What the platform printed so far (stdout and stderr), across
    /// restarts.
    pub fn output(&self) -> String {
        self.crashed
            .iter()
            .chain([&self.server])
            .map(Server::output)
            .collect()
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
        wait::until(
            &format!("{} is removed", dir.display()),
            Duration::from_secs(30),
            || match std::fs::read_dir(&dir) {
                Ok(entries) => Err(format!(
                    "it holds {:?}",
                    entries.flatten().map(|e| e.file_name()).collect::<Vec<_>>()
                )),
                Err(_) => Ok(()),
            },
        );
    }

    /// The `mse-server` process id.
    pub fn pid(&self) -> u32 {
        self.server.pid()
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

    /// `DELETE path` with `token`.
    pub fn delete(&self, token: &str, path: &str) -> (u16, Value) {
        self.send(self.http.delete(format!("{}{path}", self.url)), token)
    }

    /// `POST path` with a multipart form (a deployment's config and code).
    pub fn post_form(
        &self,
        token: &str,
        path: &str,
        form: reqwest::blocking::multipart::Form,
    ) -> (u16, Value) {
        self.send(
            self.http
                .post(format!("{}{path}", self.url))
                .multipart(form),
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

    /// `GET /apps/{id}` as `token`.
    pub fn app(&self, token: &str, id: &str) -> Value {
        let (status, body) = self.get(token, &format!("/apps/{id}"));
        assert_eq!(status, 200, "GET /apps/{id}: {body}");
        body
    }

    /// Polls app `id` (at most `timeout`) until `done` holds; returns it.
    pub fn wait_app(
        &self,
        token: &str,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        wait::until(
            &format!("app {id} reaches the awaited status"),
            timeout,
            || {
                let app = self.app(token, id);
                if done(&app) {
                    Ok(app)
                } else {
                    Err(format!("{} {app}", app["status"]))
                }
            },
        )
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
