//! Load benchmark of the node runtime: requests/s and p50/p99 latency of
//! `GET /` on the scaffolded Flask app served through `mse-run` (RA-TLS mode),
//! against the same app served directly by the same hypercorn, with the same
//! flags and the same Python environment, over TLS with a P-256 key on both
//! sides. One client, one process, both sides measured alternately.
//!
//! Run it with `./scripts/bench-run.sh` (release build); `--help` lists the
//! knobs. Targets: mse-run keeps at least 90% of the direct throughput and its
//! p99 latency is at most 1.2 times the direct one. The exit code is 1 when a
//! target is missed, 2 when the benchmark cannot run or a request failed.

// The benchmark signals the servers it starts (libc::kill).
#![allow(unsafe_code)]

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use mse_api::apps::AppStatus;
use mse_api::launch::{self, Launch};
use mse_package::{CodeKey, Nonces};
use mse_run::status::Event;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const IMAGE: &str = "ghcr.io/cosmian/mse-flask:20230124182826";
const APPLICATION: &str = "app:app";
const SCAFFOLD_APP: &str = include_str!("../../mse-cli/templates/scaffold/mse_src/app.py");
/// What the scaffold's `GET /` answers.
const HELLO: &[u8] = b"Hello world";
const ALPN: &[&[u8]] = &[b"http/1.1"];

/// Throughput mse-run must keep, as a fraction of the direct one.
const TARGET_THROUGHPUT: f64 = 0.90;
/// How much worse mse-run's p99 may be, as a multiple of the direct one.
const TARGET_P99: f64 = 1.20;

/// Bound on connecting, on one request, and on a server becoming ready.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a server gets to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Benchmarks `mse-run` against the same hypercorn serving the same app directly.
#[derive(Debug, Parser)]
#[command(name = "load")]
struct Args {
    /// Concurrent keep-alive connections
    #[arg(long, short = 'c', default_value_t = 16)]
    connections: usize,
    /// Seconds of warm-up before each measurement (not counted)
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Seconds measured per round and side
    #[arg(long, short = 'd', default_value_t = 10)]
    duration: u64,
    /// Rounds; each measures direct then mse-run, and the best round per side counts
    #[arg(long, short = 'r', default_value_t = 3)]
    rounds: usize,
    /// The mse-run binary [default: next to this example's folder]
    #[arg(long, value_name = "FILE")]
    mse_run: Option<PathBuf>,
    /// Where runtime environments are built and cached [default: target/test-cache]
    #[arg(long, value_name = "DIR", env = "MSE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// The most memory the app may use under mse-run, MB [default: no limit]
    #[arg(long, value_name = "N")]
    memory_mb: Option<std::num::NonZeroU64>,
    /// The most CPU time the app gets under mse-run, in cores [default: no limit]
    #[arg(long, value_name = "N")]
    cores: Option<std::num::NonZeroU32>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.connections == 0 || args.duration == 0 || args.rounds == 0 {
        eprintln!("error: --connections, --duration and --rounds must be at least 1");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // On Ctrl-C the benchmark is dropped: its servers get SIGTERM (see `Server`).
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = bench(args) => Some(outcome),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    match outcome {
        Some(Ok(true)) => ExitCode::SUCCESS,
        Some(Ok(false)) => ExitCode::FAILURE,
        None => {
            eprintln!("interrupted");
            ExitCode::from(130)
        }
        Some(Err(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// What both sides share: the environment, the package and the operator's keys.
struct Setup {
    dir: tempfile::TempDir,
    mse_run: PathBuf,
    cache_dir: PathBuf,
    env: mse_runtime::Environment,
    code: PathBuf,
    key: CodeKey,
    quote_key: PathBuf,
    quote_chain: PathBuf,
    signer: PathBuf,
    limits: launch::Limits,
}

/// Runs the rounds and prints the results; true when both targets are met.
async fn bench(args: Args) -> anyhow::Result<bool> {
    let setup = prepare(&args).await?;
    let load = LoadOptions {
        connections: args.connections,
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
    };
    eprintln!(
        "==> {} round(s): direct hypercorn, then mse-run; {} connections, {} s warm-up, {} s measured",
        args.rounds, args.connections, args.warmup, args.duration
    );
    let mut direct = Vec::new();
    let mut node = Vec::new();
    for round in 1..=args.rounds {
        let result = run_direct(&setup, round, &load).await?;
        eprintln!("round {round} direct:  {}", result.summary());
        direct.push(result);
        let result = run_node(&setup, round, &load).await?;
        eprintln!("round {round} mse-run: {}", result.summary());
        node.push(result);
    }
    let met = report(&args, &direct, &node);
    let errors: u64 = direct.iter().chain(&node).map(|s| s.errors).sum();
    if errors > 0 {
        bail!("{errors} request(s) failed during the measurements: the results are not valid");
    }
    Ok(met)
}

async fn prepare(args: &Args) -> anyhow::Result<Setup> {
    let mse_run = match &args.mse_run {
        Some(path) => path.clone(),
        None => default_mse_run()?,
    };
    if !mse_run.is_file() {
        bail!(
            "no mse-run binary at {}; build it (cargo build --release -p mse-run) or pass --mse-run",
            mse_run.display()
        );
    }
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(mse_testkit::runtime_cache_dir);
    let spec = mse_runtime::Catalog::default_catalog()
        .find(IMAGE)
        .context("the default catalog")?
        .clone();
    eprintln!(
        "==> Python environment of {IMAGE} in {}",
        cache_dir.display()
    );
    let cache = mse_runtime::EnvCache::new(&cache_dir);
    let env = tokio::task::spawn_blocking(move || cache.ensure(&spec, &mut |m| eprintln!("{m}")))
        .await?
        .context("cannot build the Python environment")?;

    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src)?;
    std::fs::write(src.join("app.py"), SCAFFOLD_APP)?;
    let key = CodeKey::generate();
    let code = dir.path().join("code.tar");
    let out = std::fs::File::create(&code)
        .with_context(|| format!("cannot create {}", code.display()))?;
    mse_package::pack(&src, &key, Nonces::Random, std::io::BufWriter::new(out))
        .context("cannot package the scaffold app")?;

    eprintln!("==> operator keys (simulation CA, RSA-3072 signer)");
    let ca = mse_attest::simulation::SimulationCa::generate(Utc::now())
        .map_err(|e| anyhow!("cannot create the simulation CA: {e}"))?;
    let signer_pem = tokio::task::spawn_blocking(|| -> anyhow::Result<String> {
        use rsa::pkcs8::EncodePublicKey as _;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 3072)?;
        Ok(key.to_public_key().to_public_key_pem(Default::default())?)
    })
    .await??;
    let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
        let path = dir.path().join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    };
    let pck = ca
        .issue_pck("load-host", Utc::now())
        .map_err(|e| anyhow!("cannot certify a quote key: {e}"))?;
    let quote_key = pck
        .key_pem()
        .map_err(|e| anyhow!("cannot save the quote key: {e}"))?;
    Ok(Setup {
        mse_run,
        cache_dir,
        env,
        code,
        key,
        quote_key: write("quote-key.pem", &quote_key)?,
        quote_chain: write("quote-chain.pem", &pck.chain_pem)?,
        signer: write("signer.pub", &signer_pem)?,
        limits: launch::Limits {
            memory_mb: args.memory_mb,
            cores: args.cores,
        },
        dir,
    })
}

/// `target/release/mse-run` when this is `target/release/examples/load`.
fn default_mse_run() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("mse-run"))
        .ok_or_else(|| anyhow!("cannot guess where mse-run is; pass --mse-run"))
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Where the load goes, and the client configuration pinned to its certificate.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    host: String,
    tls: Arc<rustls::ClientConfig>,
}

/// The direct side: the same hypercorn command mse-run runs, with a
/// self-signed P-256 certificate, its output appended to a file.
async fn run_direct(setup: &Setup, round: usize, load: &LoadOptions) -> anyhow::Result<Sample> {
    let dir = setup.dir.path().join(format!("direct-{round}"));
    std::fs::create_dir_all(&dir)?;
    let app_dir = dir.join("app");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let code = std::fs::File::open(&setup.code)?;
    mse_package::unpack(
        std::io::BufReader::new(code),
        &setup.key,
        &app_dir,
        mse_package::Limits::default(),
    )
    .context("cannot unpack the scaffold app")?;

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])?.self_signed(&key)?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, key.serialize_pem())?;

    let addr = free_addr()?;
    let app = mse_runtime::App::new(&setup.env, APPLICATION, &app_dir, &tmp);
    let mut command = app.server(
        &addr.to_string(),
        &mse_runtime::Serving::Tls {
            cert: cert_path,
            key: key_path,
        },
    );
    let log_path = dir.join("app.log");
    let log = std::fs::File::create(&log_path)?;
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut command = Command::from(command);
    let child = command.spawn().context("cannot start hypercorn")?;
    // The group: hypercorn runs its worker in a process of its own.
    let mut server = Server::new(child, true)?;
    let target = Target {
        addr,
        host: "localhost".to_string(),
        tls: Arc::new(mse_attest::pin::client_config(cert.der(), ALPN)),
    };

    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "the direct hypercorn exited ({status}); its log:\n{}",
                read_log(&log_path)
            );
        }
        if let Ok((200, _)) = request(&target, "GET", "/health", Bytes::new()).await {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "the direct hypercorn did not answer /health within {READY_TIMEOUT:?}; its log:\n{}",
                read_log(&log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let sample = measure(&target, load).await;
    server.stop().await;
    sample
}

/// The mse-run side: start the node, configure it like the owner would, wait
/// for `running`, measure, stop it with SIGTERM.
async fn run_node(setup: &Setup, round: usize, load: &LoadOptions) -> anyhow::Result<Sample> {
    let work = setup.dir.path().join(format!("node-{round}"));
    let uuid = random_uuid();
    let domain = format!("{uuid}.localhost");
    let addr = free_addr()?;
    let expires_at = DateTime::from_timestamp(Utc::now().timestamp() + 3600, 0)
        .ok_or_else(|| anyhow!("the clock is out of range"))?;
    let launch = Launch {
        app: launch::App {
            uuid: uuid.clone(),
            application: APPLICATION.into(),
            domain: domain.clone(),
            code: setup.code.clone(),
            healthcheck: "/health".into(),
        },
        runtime: launch::Runtime {
            image: IMAGE.into(),
            enclave_size: "1G".into(),
            catalog: None,
            cache_dir: setup.cache_dir.clone(),
            installer: None,
        },
        node: launch::Node {
            listen: addr,
            work_dir: work.clone(),
            log_file: None,
        },
        timeouts: launch::Timeouts::default(),
        sandbox: launch::Sandbox::default(),
        limits: setup.limits,
        quotes: launch::Quotes::Simulation {
            quote_key: setup.quote_key.clone(),
            quote_chain: setup.quote_chain.clone(),
            signer_key: setup.signer.clone(),
        },
        pccs_url: None,
        tls: launch::Tls::Ratls { expires_at },
        storage: None,
    };
    let launch_file = setup.dir.path().join(format!("launch-{round}.json"));
    std::fs::write(&launch_file, launch.to_json())
        .with_context(|| format!("cannot write {}", launch_file.display()))?;
    let mut command = Command::new(&setup.mse_run);
    command
        .arg("--launch")
        .arg(&launch_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {}", setup.mse_run.display()))?;
    // mse-run alone: it stops its app itself.
    let mut server = Server::new(child, false)?;
    let stdout = server
        .child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("mse-run has no stdout"))?;
    let mut events = BufReader::new(stdout).lines();
    let log_path = work.join("app.log");

    let initializing = next_event(&mut events, AppStatus::Initializing, &log_path).await?;
    let expected_sha256 = initializing
        .certificate_sha256
        .ok_or_else(|| anyhow!("the initializing event has no certificate_sha256"))?;
    let (capture, seen) = mse_attest::pin::capture_config(ALPN);
    let first = Target {
        addr,
        host: domain.clone(),
        tls: Arc::new(capture),
    };
    let (status, _) = request(&first, "GET", "/", Bytes::new()).await?;
    if status != 200 {
        bail!("the configuration server answered GET / with {status}");
    }
    let cert = seen
        .seen()
        .ok_or_else(|| anyhow!("the configuration server presented no certificate"))?;
    if hex::encode(Sha256::digest(&cert)) != expected_sha256 {
        bail!("the configuration server's certificate is not the one mse-run announced");
    }
    let target = Target {
        addr,
        host: domain,
        tls: Arc::new(mse_attest::pin::client_config(&cert, ALPN)),
    };
    let body = serde_json::to_vec(&mse_api::config::ConfigRequest {
        uuid: uuid.clone(),
        code_secret_key: setup.key.to_hex(),
        ssl_private_key: None,
        app_secrets: None,
        storage_key: None,
        previous_storage_key: None,
    })?;
    let (status, answer) = request(&target, "POST", "/", Bytes::from(body)).await?;
    if status != 200 {
        bail!(
            "mse-run refused the configuration ({status}): {}",
            String::from_utf8_lossy(&answer)
        );
    }
    next_event(&mut events, AppStatus::Running, &log_path).await?;

    let sample = measure(&target, load).await;
    stop_node(&mut server, &mut events).await;
    sample
}

fn random_uuid() -> String {
    use rsa::rand_core::RngCore as _;
    let mut bytes = [0u8; 16];
    rsa::rand_core::OsRng.fill_bytes(&mut bytes);
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The next status event of mse-run, which must be `state`.
async fn next_event(
    events: &mut Lines<BufReader<ChildStdout>>,
    state: AppStatus,
    log_path: &Path,
) -> anyhow::Result<Event> {
    let line = tokio::time::timeout(READY_TIMEOUT, events.next_line())
        .await
        .map_err(|_| {
            anyhow!(
                "mse-run said nothing for {READY_TIMEOUT:?} (waiting for {state:?}); its log:\n{}",
                read_log(log_path)
            )
        })??
        .ok_or_else(|| {
            anyhow!(
                "mse-run exited before {state:?}; its log:\n{}",
                read_log(log_path)
            )
        })?;
    let event: Event = serde_json::from_str(&line)
        .with_context(|| format!("mse-run printed `{line}`, not a status event"))?;
    if event.status != state {
        bail!(
            "mse-run reported {:?} ({}) instead of {state:?}; its log:\n{}",
            event.status,
            event.reason.unwrap_or_default(),
            read_log(log_path)
        );
    }
    Ok(event)
}

/// The end of a log, for error messages.
fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A server this program started. Dropped before it was seen to exit (an
/// error, Ctrl-C), it gets SIGTERM, so that nothing outlives the benchmark.
struct Server {
    child: Child,
    /// The pid, or minus the process group id, to signal.
    signal_target: i32,
    exited: bool,
}

impl Server {
    fn new(child: Child, group: bool) -> anyhow::Result<Self> {
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("a server exited at once"))?;
        let pid = i32::try_from(pid)?;
        Ok(Server {
            child,
            signal_target: if group { -pid } else { pid },
            exited: false,
        })
    }

    fn terminate(&self) {
        // SAFETY: signalling a process (or group) this program started and
        // has not seen exit, so its id is not reused yet.
        unsafe {
            libc::kill(self.signal_target, libc::SIGTERM);
        }
    }

    /// SIGTERM, then SIGKILL if it lingers; the exit status when it came in time.
    async fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.terminate();
        let status = match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                eprintln!(
                    "warning: a server did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed"
                );
                let _ = self.child.kill().await;
                None
            }
        };
        self.exited = true;
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.exited {
            self.terminate();
        }
    }
}

/// SIGTERM to mse-run, which stops its app and reports `stopped`.
async fn stop_node(server: &mut Server, events: &mut Lines<BufReader<ChildStdout>>) {
    let status = server.stop().await;
    let mut last = None;
    while let Ok(Ok(Some(line))) = tokio::time::timeout(STOP_TIMEOUT, events.next_line()).await {
        last = serde_json::from_str::<Event>(&line).ok();
    }
    let clean = last
        .as_ref()
        .is_some_and(|e| e.status == AppStatus::Stopped)
        && status.is_some_and(|s| s.success());
    if !clean {
        eprintln!(
            "warning: mse-run did not stop cleanly on SIGTERM (last event {last:?}, exit {status:?})"
        );
    }
}

/// One TLS connection ready for HTTP/1.1 requests.
async fn connect(target: &Target) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(target.addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())?;
        let tls = tokio_rustls::TlsConnector::from(target.tls.clone())
            .connect(name, tcp)
            .await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        anyhow::Ok(sender)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| {
            anyhow!(
                "no connection to {} within {CONNECT_TIMEOUT:?}",
                target.addr
            )
        })?
}

/// An answer: the status, the whole body, and whether the server closes the
/// connection after it (`Connection: close`, as hypercorn says after the
/// 1,000th request of a keep-alive connection).
struct Answer {
    status: u16,
    body: Bytes,
    closes: bool,
}

/// Sends one request on `sender` and reads the whole answer.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    host: &str,
    method: &str,
    path: &str,
    body: Bytes,
) -> anyhow::Result<Answer> {
    sender.ready().await?;
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, host);
    if !body.is_empty() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let response = sender.send_request(request.body(Full::new(body))?).await?;
    let status = response.status().as_u16();
    let closes = response
        .headers()
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"));
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        body,
        closes,
    })
}

/// One request on a connection of its own.
async fn request(
    target: &Target,
    method: &str,
    path: &str,
    body: Bytes,
) -> anyhow::Result<(u16, Bytes)> {
    let mut sender = connect(target).await?;
    let answer = tokio::time::timeout(
        REQUEST_TIMEOUT,
        send(&mut sender, &target.host, method, path, body),
    )
    .await
    .map_err(|_| anyhow!("no answer within {REQUEST_TIMEOUT:?}"))??;
    Ok((answer.status, answer.body))
}

struct LoadOptions {
    connections: usize,
    warmup: Duration,
    duration: Duration,
}

/// What one side did in one measurement window.
struct Sample {
    /// Latencies of the requests completed in the window, sorted (ns).
    latencies: Vec<u64>,
    /// Failed requests and connections in the window.
    errors: u64,
    /// Answers in the window after which the server closed the connection
    /// (`Connection: close`; not errors).
    closed: u64,
    window: Duration,
}

impl Sample {
    fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.window.as_secs_f64()
    }

    /// The `q` quantile (nearest rank), in milliseconds.
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank =
            ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1] as f64 / 1e6
    }

    fn p50(&self) -> f64 {
        self.quantile_ms(0.50)
    }

    fn p99(&self) -> f64 {
        self.quantile_ms(0.99)
    }

    fn summary(&self) -> String {
        format!(
            "{:8.1} req/s  p50 {:7.2} ms  p99 {:7.2} ms  ({} requests, {} errors, {} closed by the server)",
            self.rps(),
            self.p50(),
            self.p99(),
            self.latencies.len(),
            self.errors,
            self.closed
        )
    }
}

/// Closed-loop load: `connections` keep-alive connections each sending
/// `GET /` back to back. Requests completing during the warm-up are not
/// counted; those completing in the window that follows are.
async fn measure(target: &Target, load: &LoadOptions) -> anyhow::Result<Sample> {
    let target = Arc::new(target.clone());
    let start = Instant::now() + load.warmup;
    let end = start + load.duration;
    let tasks: Vec<_> = (0..load.connections)
        .map(|_| tokio::spawn(connection_loop(target.clone(), start, end)))
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut closed = 0;
    for task in tasks {
        let (mut task_latencies, task_errors, task_closed) = task.await?;
        latencies.append(&mut task_latencies);
        errors += task_errors;
        closed += task_closed;
    }
    latencies.sort_unstable();
    if latencies.is_empty() {
        bail!(
            "no request to {} succeeded in the measurement window ({errors} errors)",
            target.addr
        );
    }
    Ok(Sample {
        latencies,
        errors,
        closed,
        window: load.duration,
    })
}

/// One connection's loop; reconnects after an error, and after an answer
/// that closes the connection (a success, not an error). Returns the
/// latencies (ns) of the requests completed in `[start, end]`, the errors
/// there, and the answers there that closed the connection.
async fn connection_loop(
    target: Arc<Target>,
    start: Instant,
    end: Instant,
) -> (Vec<u64>, u64, u64) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut closed = 0;
    let in_window = |t: Instant| t >= start && t <= end;
    while Instant::now() < end {
        let Ok(mut sender) = connect(&target).await else {
            errors += u64::from(in_window(Instant::now()));
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        loop {
            let sent = Instant::now();
            if sent >= end {
                break;
            }
            let outcome = tokio::time::timeout(
                REQUEST_TIMEOUT,
                send(&mut sender, &target.host, "GET", "/", Bytes::new()),
            )
            .await;
            let done = Instant::now();
            match outcome {
                Ok(Ok(answer)) if answer.status == 200 && answer.body == HELLO => {
                    if in_window(done) {
                        latencies.push((done - sent).as_nanos() as u64);
                    }
                    if answer.closes {
                        closed += u64::from(in_window(done));
                        break;
                    }
                }
                _ => {
                    errors += u64::from(in_window(done));
                    break;
                }
            }
        }
    }
    (latencies, errors, closed)
}

/// The round with the highest throughput.
fn best(samples: &[Sample]) -> &Sample {
    samples
        .iter()
        .max_by(|a, b| a.rps().total_cmp(&b.rps()))
        .expect("at least one round")
}

/// Prints every round, the best per side, the ratios and the verdicts; true
/// when both targets are met.
fn report(args: &Args, direct: &[Sample], node: &[Sample]) -> bool {
    println!();
    println!(
        "GET / on the scaffold Flask app, hypercorn over TLS (P-256), {} keep-alive connections,",
        args.connections
    );
    println!(
        "{} s warm-up + {} s measured per round, {} round(s) per side alternating; best round (by req/s) counts",
        args.warmup, args.duration, args.rounds
    );
    println!();
    println!(
        "{:<6} {:<8} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "round", "side", "requests", "req/s", "p50 ms", "p99 ms", "errors"
    );
    for (i, (d, n)) in direct.iter().zip(node).enumerate() {
        for (side, s) in [("direct", d), ("mse-run", n)] {
            println!(
                "{:<6} {:<8} {:>10} {:>9.1} {:>9.2} {:>9.2} {:>7}",
                i + 1,
                side,
                s.latencies.len(),
                s.rps(),
                s.p50(),
                s.p99(),
                s.errors
            );
        }
    }
    let (d, n) = (best(direct), best(node));
    println!();
    println!(
        "{:<8} {:>9} {:>9} {:>9}",
        "best", "req/s", "p50 ms", "p99 ms"
    );
    for (side, s) in [("direct", d), ("mse-run", n)] {
        println!(
            "{:<8} {:>9.1} {:>9.2} {:>9.2}",
            side,
            s.rps(),
            s.p50(),
            s.p99()
        );
    }
    let throughput = n.rps() / d.rps();
    let p50 = n.p50() / d.p50();
    let p99 = n.p99() / d.p99();
    let throughput_met = throughput >= TARGET_THROUGHPUT;
    let p99_met = p99 <= TARGET_P99;
    let verdict = |met: bool| if met { "PASS" } else { "MISS" };
    println!();
    println!(
        "throughput mse-run/direct {:6.1}%   target >= {:.0}%    {}",
        throughput * 100.0,
        TARGET_THROUGHPUT * 100.0,
        verdict(throughput_met)
    );
    println!(
        "p99        mse-run/direct {:6.2}x   target <= {:.2}x   {}",
        p99,
        TARGET_P99,
        verdict(p99_met)
    );
    println!("p50        mse-run/direct {p50:6.2}x   (no target)");
    throughput_met && p99_met
}
