//! Throughput and latency of TLS passthrough through our SNI proxy
//! (`mse_server::roles::proxy`) against nginx's `stream` module with `ssl_preread`,
//! in front of the same TLS backend, with the same client, in the same run.
//!
//! Four processes: this one is the load generator; it starts the backend (a
//! minimal HTTP/1.1 keep-alive responder over rustls with a self-signed P-256
//! certificate for `app.localhost`) and our proxy by running itself again in a
//! hidden role, and nginx from a configuration written to a temporary folder.
//! Both proxies get the same number of workers (`--proxy-workers`: tokio
//! worker threads for ours, `worker_processes` for nginx), the same timeouts,
//! and route the server name `app.localhost` to the backend without
//! decrypting anything. Each round measures the backend directly (the
//! baseline), then both proxies in an order that alternates between rounds;
//! the targets are judged on each side's best round (by req/s), or on all
//! rounds pooled (`--judge pooled`, steadier on a shared machine). Besides
//! req/s and latencies, each round reports the proxy's CPU time per request
//! (from `/proc`) and the share of the machine other programs used meanwhile.
//!
//! Two modes: `keep-alive` (C connections, `GET /` back to back on each) and
//! `handshake` (a new TCP connection and a full TLS 1.3 handshake, without
//! resumption, for every request: what a passthrough proxy mostly pays for).
//!
//! Run it with `./scripts/bench-proxy.sh` (release build); `--help` lists the
//! knobs. Targets, in every mode measured: our proxy's throughput is at least
//! nginx's and its p99 latency at most nginx's (give or take `--tolerance`).
//! The exit code is 1 when a target is missed, 2 when the benchmark cannot run
//! or a request failed.
#![allow(unsafe_code)] // signals and resource limits of the processes it runs; SAFETY at each block

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use mse_server::domain::routing::{Route, RouteMode};
use mse_server::roles::proxy::{self, ProxyLimits};
use mse_server::state::Routes;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::time::timeout;

/// The server name the client sends and both proxies route to the backend.
const NAME: &str = "app.localhost";
const ALPN: &[&[u8]] = &[b"http/1.1"];

/// Bound on connecting (TCP and TLS), and on one request once connected.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a server becoming ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server gets to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The backend closes a connection that sends nothing for this long.
const BACKEND_IDLE: Duration = Duration::from_secs(60);
/// The longest request head the backend accepts.
const MAX_HEAD: usize = 8 * 1024;

/// Benchmarks the SNI proxy against nginx (`ssl_preread`) in front of the same TLS backend.
#[derive(Debug, Parser)]
#[command(name = "bench_proxy")]
struct Args {
    #[command(subcommand)]
    role: Option<Role>,
    /// Concurrent client connections (keep-alive), or concurrent
    /// connect-request-close loops (handshake)
    #[arg(long, short = 'c', default_value_t = 16)]
    connections: usize,
    /// Seconds of warm-up before each measurement (not counted)
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Seconds measured per round, side and mode
    #[arg(long, short = 'd', default_value_t = 10)]
    duration: u64,
    /// Rounds per mode; each measures direct, then both proxies (order
    /// alternating)
    #[arg(long, short = 'r', default_value_t = 3)]
    rounds: usize,
    /// What to measure: keep-alive requests, a new TLS connection per
    /// request, or both
    #[arg(long, short = 'm', value_enum, default_value_t = ModeArg::Both)]
    mode: ModeArg,
    /// Workers of each proxy: threads of ours, `worker_processes` of nginx
    #[arg(long, default_value_t = 1)]
    proxy_workers: usize,
    /// How our proxy's threads run: `multi-thread` as `mse-server` runs it
    /// (one tokio runtime, --proxy-workers worker threads), or
    /// `current-thread` (one single-threaded runtime per thread, all
    /// accepting on the same socket, like nginx's workers)
    #[arg(long, value_enum, default_value_t = ProxyRuntime::MultiThread)]
    proxy_runtime: ProxyRuntime,
    /// Tokio worker threads of the backend
    #[arg(long, default_value_t = 1)]
    backend_threads: usize,
    /// Tokio worker threads of the load generator [default: one per core]
    #[arg(long)]
    client_threads: Option<usize>,
    /// Size of the body the backend answers `GET /` with
    #[arg(long, default_value_t = 128)]
    body_bytes: usize,
    /// Slack on both targets, in percent (0: strictly at least as good as nginx)
    #[arg(long, default_value_t = 0.0)]
    tolerance: f64,
    /// What the targets are judged on: each side's best round (by req/s),
    /// or all its rounds pooled (steadier on a busy machine with many short rounds)
    #[arg(long, value_enum, default_value_t = Judge::Best)]
    judge: Judge,
    /// The nginx binary [default: `nginx` on PATH, else /usr/sbin/nginx]
    #[arg(long, value_name = "FILE")]
    nginx: Option<PathBuf>,
}

/// The roles this program runs itself in, as the benchmark's servers.
#[derive(Debug, Subcommand)]
enum Role {
    /// The TLS backend: prints `listening <addr>`, serves until killed.
    #[command(hide = true)]
    ServeBackend {
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        threads: usize,
        #[arg(long)]
        body_bytes: usize,
    },
    /// Our proxy, routing `app.localhost` to `backend`: prints
    /// `listening <addr>`, serves until SIGTERM.
    #[command(hide = true)]
    ServeProxy {
        #[arg(long)]
        backend: SocketAddr,
        #[arg(long)]
        threads: usize,
        #[arg(long, value_enum)]
        runtime: ProxyRuntime,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProxyRuntime {
    MultiThread,
    CurrentThread,
}

impl ProxyRuntime {
    fn name(self) -> &'static str {
        match self {
            ProxyRuntime::MultiThread => "multi-thread",
            ProxyRuntime::CurrentThread => "current-thread",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Judge {
    Best,
    Pooled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    KeepAlive,
    Handshake,
    Both,
}

/// How the client uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One connection per client, requests back to back.
    KeepAlive,
    /// TCP connect, full TLS handshake, one request, close.
    Handshake,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keep-alive",
            Mode::Handshake => "handshake",
        }
    }
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    match args.role.take() {
        Some(Role::ServeBackend {
            cert,
            key,
            threads,
            body_bytes,
        }) => return role_exit(serve_backend(&cert, &key, threads, body_bytes)),
        Some(Role::ServeProxy {
            backend,
            threads,
            runtime,
        }) => return role_exit(serve_proxy(backend, threads, runtime)),
        None => {}
    }
    if args.connections == 0
        || args.duration == 0
        || args.rounds == 0
        || args.proxy_workers == 0
        || args.backend_threads == 0
        || args.client_threads == Some(0)
    {
        eprintln!(
            "error: --connections, --duration, --rounds and the thread counts must be at least 1"
        );
        return ExitCode::from(2);
    }
    if !(0.0..100.0).contains(&args.tolerance) {
        eprintln!("error: --tolerance is a percentage from 0 to 100");
        return ExitCode::from(2);
    }
    let threads = args.client_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    let runtime = match runtime(threads) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // On Ctrl-C the benchmark is dropped: its servers get SIGTERM (see `Server`).
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = bench(&args, threads) => Some(outcome),
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

fn runtime(threads: usize) -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
}

fn role_exit(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------------------
// The servers' roles
// ---------------------------------------------------------------------------

/// Tells the benchmark where a server listens (the first line of its stdout).
fn announce(addr: SocketAddr) -> io::Result<()> {
    use std::io::Write as _;
    let mut out = io::stdout().lock();
    writeln!(out, "listening {addr}")?;
    out.flush()
}

/// The backend: TLS 1.3 or 1.2 (rustls, ring), no session tickets, answers
/// every request head with a fixed response.
fn serve_backend(cert: &Path, key: &Path, threads: usize, body_bytes: usize) -> anyhow::Result<()> {
    let read = |path: &Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .context("the backend certificate")?;
    let key = PrivateKeyDer::from_pem_slice(&read(key)?).context("the backend key")?;
    let mut config = mse_attest::tls::server_config(chain, key, ALPN)?;
    // The client does not resume sessions: tickets would be bytes for nothing.
    config.send_tls13_tickets = 0;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let responses = Arc::new(Exchange::new(body_bytes));
    runtime(threads)?.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        announce(listener.local_addr()?)?;
        // The accept loop runs on a worker thread, next to the connections.
        tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        eprintln!("backend: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let responses = responses.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) = timeout(CONNECT_TIMEOUT, acceptor.accept(stream)).await {
                        respond(tls, &responses).await;
                    }
                });
            }
        })
        .await?;
        Ok(())
    })
}

/// Answers each request head on `stream` (`GET /` and the like, no body) with
/// the fixed response; closes after one that asks for `connection: close`.
async fn respond<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, exchange: &Exchange) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = end + 4;
            let close = has_connection_close(&buf[..head]);
            let answer = if close {
                &exchange.close_response
            } else {
                &exchange.keep_alive_response
            };
            if stream.write_all(answer).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            buf.drain(..head);
            if close {
                let _ = timeout(REQUEST_TIMEOUT, stream.shutdown()).await;
                return;
            }
        }
        if buf.len() > MAX_HEAD {
            return;
        }
        match timeout(BACKEND_IDLE, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => {
                let _ = timeout(REQUEST_TIMEOUT, stream.shutdown()).await;
                return;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn has_connection_close(head: &[u8]) -> bool {
    const HEADER: &[u8] = b"\r\nconnection: close\r\n";
    head.windows(HEADER.len())
        .any(|w| w.eq_ignore_ascii_case(HEADER))
}

/// Our proxy (default limits) with one passthrough route: `app.localhost`
/// to the backend. `multi-thread` runs it as `mse-server` does: a task on one
/// runtime with `threads` workers. `current-thread` runs `threads` threads,
/// each with a runtime of its own serving the same listening socket (nginx's
/// worker model).
fn serve_proxy(backend: SocketAddr, threads: usize, flavor: ProxyRuntime) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let routes = Arc::new(Routes::default());
    routes.set(
        NAME,
        Route {
            addr: backend,
            mode: RouteMode::Passthrough,
            app_id: "bench".to_string(),
            remote: false,
        },
    );
    let limits = ProxyLimits {
        // Nothing is live when the benchmark stops it.
        shutdown_grace: Duration::from_secs(1),
        // Every client of the benchmark is on the loopback address.
        max_connections_per_source: ProxyLimits::default().max_connections,
        ..ProxyLimits::default()
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    match flavor {
        ProxyRuntime::MultiThread => runtime(threads)?.block_on(async move {
            let mut term = signal(SignalKind::terminate())?;
            let listener = TcpListener::from_std(listener)?;
            announce(addr)?;
            // A task, as `mse-server` runs it: the accept loop on a worker
            // thread, not on this one (which would hand every connection
            // across threads).
            let stopped = async move {
                term.recv().await;
            };
            tokio::spawn(proxy::serve(listener, routes, None, limits, stopped)).await?;
            Ok(())
        }),
        ProxyRuntime::CurrentThread => {
            let single = || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            };
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let mut workers = Vec::new();
            for _ in 0..threads {
                let listener = listener.try_clone()?;
                let routes = routes.clone();
                let limits = limits.clone();
                let mut stopped = stopped.clone();
                let runtime = single()?;
                workers.push(std::thread::spawn(move || {
                    runtime.block_on(async move {
                        let listener = TcpListener::from_std(listener)?;
                        let stopped = async move {
                            let _ = stopped.wait_for(|stop| *stop).await;
                        };
                        proxy::serve(listener, routes, None, limits, stopped).await;
                        io::Result::Ok(())
                    })
                }));
            }
            drop(listener);
            single()?.block_on(async {
                let mut term = signal(SignalKind::terminate())?;
                announce(addr)?;
                term.recv().await;
                io::Result::Ok(())
            })?;
            let _ = stop.send(true);
            for worker in workers {
                worker
                    .join()
                    .map_err(|_| anyhow!("a proxy thread panicked"))??;
            }
            Ok(())
        }
    }
}

/// The request and response bytes of `GET /`, fixed so that the client can
/// check every answer byte for byte.
struct Exchange {
    keep_alive_request: Vec<u8>,
    close_request: Vec<u8>,
    keep_alive_response: Vec<u8>,
    close_response: Vec<u8>,
}

impl Exchange {
    fn new(body_bytes: usize) -> Self {
        let body: Vec<u8> = b"0123456789abcdef\n"
            .iter()
            .copied()
            .cycle()
            .take(body_bytes)
            .collect();
        let response = |close: bool| {
            let mut bytes = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n",
                body.len(),
                if close { "connection: close\r\n" } else { "" }
            )
            .into_bytes();
            bytes.extend_from_slice(&body);
            bytes
        };
        let request = |close: bool| {
            format!(
                "GET / HTTP/1.1\r\nhost: {NAME}\r\n{}\r\n",
                if close { "connection: close\r\n" } else { "" }
            )
            .into_bytes()
        };
        Exchange {
            keep_alive_request: request(false),
            close_request: request(true),
            keep_alive_response: response(false),
            close_response: response(true),
        }
    }

    fn request(&self, mode: Mode) -> &[u8] {
        match mode {
            Mode::KeepAlive => &self.keep_alive_request,
            Mode::Handshake => &self.close_request,
        }
    }

    fn response(&self, mode: Mode) -> &[u8] {
        match mode {
            Mode::KeepAlive => &self.keep_alive_response,
            Mode::Handshake => &self.close_response,
        }
    }
}

// ---------------------------------------------------------------------------
// The benchmark
// ---------------------------------------------------------------------------

/// One thing the load goes to.
struct Side {
    name: &'static str,
    addr: SocketAddr,
    /// The process whose CPU time (its own and its children's) is measured.
    pid: Option<u32>,
}

/// Everything the rounds need; the servers stop when it is dropped.
struct Setup {
    _dir: tempfile::TempDir,
    servers: Vec<Server>,
    sides: Vec<Side>,
    client: Arc<Client>,
}

/// Starts the servers, runs the rounds of every mode and prints the results;
/// true when every target is met.
async fn bench(args: &Args, client_threads: usize) -> anyhow::Result<bool> {
    let mut setup = prepare(args).await?;
    let modes: &[Mode] = match args.mode {
        ModeArg::KeepAlive => &[Mode::KeepAlive],
        ModeArg::Handshake => &[Mode::Handshake],
        ModeArg::Both => &[Mode::KeepAlive, Mode::Handshake],
    };
    let load = LoadOptions {
        connections: args.connections,
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
    };
    let mut results = Vec::new();
    for &mode in modes {
        eprintln!(
            "==> {}: {} round(s) of direct, mse-proxy, nginx; {} connections, {} s warm-up, {} s measured",
            mode.label(),
            args.rounds,
            args.connections,
            args.warmup,
            args.duration
        );
        // rounds[side][round]
        let mut rounds: Vec<Vec<Sample>> = setup.sides.iter().map(|_| Vec::new()).collect();
        for round in 1..=args.rounds {
            // Direct first, then the proxies, in turn first.
            let order: &[usize] = if round % 2 == 1 {
                &[0, 1, 2]
            } else {
                &[0, 2, 1]
            };
            for &i in order {
                let side = &setup.sides[i];
                let sample = measure(&setup.client, side, mode, &load).await?;
                eprintln!("round {round} {:<9} {}", side.name, sample.summary());
                rounds[i].push(sample);
            }
        }
        results.push((mode, rounds));
    }
    for server in &mut setup.servers {
        server.stop().await;
    }
    let met = report(args, client_threads, &setup.sides, &results);
    let errors: u64 = results
        .iter()
        .flat_map(|(_, rounds)| rounds.iter().flatten())
        .map(|s| s.errors)
        .sum();
    if errors > 0 {
        bail!("{errors} request(s) failed during the measurements: the results are not valid");
    }
    Ok(met)
}

async fn prepare(args: &Args) -> anyhow::Result<Setup> {
    let nginx = find_nginx(args.nginx.as_deref())?;
    let stream_module = nginx_stream_module(&nginx)?;
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = rcgen::CertificateParams::new(vec![NAME.to_string()])?.self_signed(&key)?;
    let cert_path = dir.path().join("backend.pem");
    let key_path = dir.path().join("backend.key");
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, key.serialize_pem())?;
    let mut tls = mse_attest::pin::client_config(cert.der(), ALPN);
    // Every handshake in handshake mode is a full one.
    tls.resumption = rustls::client::Resumption::disabled();
    let client = Arc::new(Client {
        tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
        server_name: ServerName::try_from(NAME)?,
        exchange: Exchange::new(args.body_bytes),
    });

    let mut servers = Vec::new();
    eprintln!(
        "==> backend ({} thread(s), {}-byte body)",
        args.backend_threads, args.body_bytes
    );
    let (backend, backend_addr) = spawn_role(
        "the backend",
        &[
            "serve-backend".into(),
            "--cert".into(),
            cert_path.display().to_string(),
            "--key".into(),
            key_path.display().to_string(),
            "--threads".into(),
            args.backend_threads.to_string(),
            "--body-bytes".into(),
            args.body_bytes.to_string(),
        ],
    )
    .await?;
    servers.push(backend);
    wait_ready(&client, backend_addr, &mut servers[0], None).await?;

    eprintln!(
        "==> mse-proxy ({} thread(s), {})",
        args.proxy_workers,
        args.proxy_runtime.name()
    );
    let (ours, ours_addr) = spawn_role(
        "our proxy",
        &[
            "serve-proxy".into(),
            "--backend".into(),
            backend_addr.to_string(),
            "--threads".into(),
            args.proxy_workers.to_string(),
            "--runtime".into(),
            args.proxy_runtime.name().into(),
        ],
    )
    .await?;
    let ours_pid = ours.pid;
    servers.push(ours);
    wait_ready(&client, ours_addr, &mut servers[1], None).await?;

    eprintln!(
        "==> nginx {} ({} worker process(es), ssl_preread)",
        nginx.display(),
        args.proxy_workers
    );
    let nginx_addr = free_addr()?;
    let conf = nginx_config(
        dir.path(),
        stream_module.as_deref(),
        args.proxy_workers,
        nginx_addr,
        backend_addr,
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let mut command = std::process::Command::new(&nginx);
    command
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    die_with_parent(&mut command);
    let child = Command::from(command)
        .spawn()
        .with_context(|| format!("cannot start {}", nginx.display()))?;
    let nginx_server = Server::new("nginx", child)?;
    let nginx_pid = nginx_server.pid;
    servers.push(nginx_server);
    let error_log = dir.path().join("error.log");
    wait_ready(&client, nginx_addr, &mut servers[2], Some(&error_log)).await?;

    let sides = vec![
        Side {
            name: "direct",
            addr: backend_addr,
            pid: None,
        },
        Side {
            name: "mse-proxy",
            addr: ours_addr,
            pid: Some(ours_pid),
        },
        Side {
            name: "nginx",
            addr: nginx_addr,
            pid: Some(nginx_pid),
        },
    ];
    Ok(Setup {
        _dir: dir,
        servers,
        sides,
        client,
    })
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Until one request on a new connection to `addr` succeeds.
async fn wait_ready(
    client: &Client,
    addr: SocketAddr,
    server: &mut Server,
    log: Option<&Path>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let log_text = || log.map(read_log).unwrap_or_default();
    loop {
        if let Some(status) = server.child.try_wait()? {
            server.exited = true;
            bail!("{} exited ({status}) {}", server.name, log_text());
        }
        let mut response = vec![0; client.exchange.response(Mode::Handshake).len()];
        let attempt = timeout(
            REQUEST_TIMEOUT,
            one_request(client, addr, Mode::Handshake, &mut response),
        )
        .await;
        if matches!(attempt, Ok(Ok(_))) && response == client.exchange.response(Mode::Handshake) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not answer through {addr} within {READY_TIMEOUT:?} (last attempt: {}) {}",
                server.name,
                match attempt {
                    Ok(Ok(_)) => "an unexpected response".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "timed out".to_string(),
                },
                log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The end of a log, for error messages.
fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "; the end of {}:\n{}",
        path.display(),
        lines[lines.len().saturating_sub(30)..].join("\n")
    )
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// A server this program started. Dropped before it was seen to exit (an
/// error, Ctrl-C), it gets SIGTERM, so that nothing outlives the benchmark.
struct Server {
    name: &'static str,
    child: Child,
    pid: u32,
    exited: bool,
}

impl Server {
    fn new(name: &'static str, child: Child) -> anyhow::Result<Self> {
        let pid = child.id().ok_or_else(|| anyhow!("{name} exited at once"))?;
        Ok(Server {
            name,
            child,
            pid,
            exited: false,
        })
    }

    fn terminate(&self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            // SAFETY: signalling a process this program started and has not
            // seen exit, so its id is not reused yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }

    /// SIGTERM, then SIGKILL if it lingers.
    async fn stop(&mut self) {
        if self.exited {
            return;
        }
        self.terminate();
        if timeout(STOP_TIMEOUT, self.child.wait()).await.is_err() {
            eprintln!(
                "warning: {} did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed",
                self.name
            );
            let _ = self.child.kill().await;
        }
        self.exited = true;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.exited {
            self.terminate();
        }
    }
}

/// Makes the child get SIGTERM should this program die without stopping it
/// (SIGKILL, a crash).
fn die_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: `prctl` is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs this program in a server role; the server and its address (from the
/// first line it prints).
async fn spawn_role(name: &'static str, args: &[String]) -> anyhow::Result<(Server, SocketAddr)> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut command = std::process::Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    die_with_parent(&mut command);
    let mut child = Command::from(command)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("{name} has no stdout"))?;
    let server = Server::new(name, child)?;
    let line = timeout(READY_TIMEOUT, BufReader::new(stdout).lines().next_line())
        .await
        .map_err(|_| anyhow!("{name} did not say where it listens within {READY_TIMEOUT:?}"))??
        .ok_or_else(|| anyhow!("{name} exited before listening"))?;
    let addr = line
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| anyhow!("{name} printed `{line}`, not `listening <addr>`"))?;
    Ok((server, addr))
}

/// CPU time spent so far, from `/proc`.
#[derive(Debug, Clone, Copy)]
struct CpuSnapshot {
    /// The proxy under test and its descendants.
    proxy: Option<Duration>,
    /// This program and all its descendants (client, backend, proxies).
    bench: Duration,
    /// The whole machine, user and system time.
    machine: Duration,
}

impl CpuSnapshot {
    fn take(proxy: Option<u32>) -> Option<Self> {
        let processes = processes();
        Some(CpuSnapshot {
            proxy: proxy.map(|pid| tree_cpu(&processes, pid)),
            bench: tree_cpu(&processes, std::process::id()),
            machine: machine_cpu()?,
        })
    }
}

/// What happened to the CPU between two snapshots over a window.
struct CpuUse {
    proxy: Option<Duration>,
    /// CPU time of other programs, as a fraction of the whole machine.
    others: f64,
}

impl CpuUse {
    fn between(before: CpuSnapshot, after: CpuSnapshot, window: Duration) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let machine = after.machine.saturating_sub(before.machine);
        let bench = after.bench.saturating_sub(before.bench);
        CpuUse {
            proxy: after
                .proxy
                .zip(before.proxy)
                .map(|(a, b)| a.saturating_sub(b)),
            others: machine.saturating_sub(bench).as_secs_f64()
                / (window.as_secs_f64() * cores as f64),
        }
    }
}

/// Every process: pid, parent pid, CPU time (user + system) in clock ticks.
fn processes() -> Vec<(u32, u32, u64)> {
    // /proc/<pid>/stat: "pid (comm) state ppid ... utime stime ..."; comm may
    // hold spaces and parentheses, so fields are counted after the last ')'.
    fn stat(path: &Path) -> Option<(u32, u64)> {
        let text = std::fs::read_to_string(path).ok()?;
        let fields: Vec<&str> = text
            .get(text.rfind(')')? + 1..)?
            .split_whitespace()
            .collect();
        let ppid = fields.get(1)?.parse().ok()?;
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some((ppid, utime + stime))
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let (ppid, ticks) = stat(&entry.path().join("stat"))?;
            Some((pid, ppid, ticks))
        })
        .collect()
}

/// The CPU time of `root` and all its descendants.
fn tree_cpu(processes: &[(u32, u32, u64)], root: u32) -> Duration {
    let mut tree = vec![root];
    let mut ticks = 0;
    while let Some(pid) = tree.pop() {
        for &(child, parent, child_ticks) in processes {
            if child == pid {
                ticks += child_ticks;
            }
            if parent == pid {
                tree.push(child);
            }
        }
    }
    from_ticks(ticks)
}

/// The machine's user and system time, all cores, from `/proc/stat`.
fn machine_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    // cpu  user nice system idle iowait irq softirq ...
    let ticks = line
        .split_whitespace()
        .skip(1)
        .take(3)
        .map(|f| f.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    Some(from_ticks(ticks))
}

fn from_ticks(ticks: u64) -> Duration {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&hz| hz > 0).unwrap_or(100);
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz)
}

// ---------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------

fn find_nginx(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            anyhow!(
                "nginx is not installed (apt-get install nginx libnginx-mod-stream); \
                 or pass --nginx"
            )
        })
}

/// The `stream` module nginx must load (`None` when built in), from `nginx -V`.
fn nginx_stream_module(nginx: &Path) -> anyhow::Result<Option<PathBuf>> {
    let output = std::process::Command::new(nginx)
        .arg("-V")
        .output()
        .with_context(|| format!("cannot run {} -V", nginx.display()))?;
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    let options: Vec<&str> = text.split_whitespace().collect();
    if !options
        .iter()
        .any(|o| o.starts_with("--with-stream_ssl_preread_module"))
    {
        bail!(
            "{} has no ssl_preread module (`nginx -V` lacks --with-stream_ssl_preread_module)",
            nginx.display()
        );
    }
    if options.contains(&"--with-stream") {
        return Ok(None);
    }
    if !options.contains(&"--with-stream=dynamic") {
        bail!("{} has no stream module (`nginx -V`)", nginx.display());
    }
    let dir = options
        .iter()
        .find_map(|o| o.strip_prefix("--modules-path="))
        .map(PathBuf::from)
        .or_else(|| {
            options
                .iter()
                .find_map(|o| o.strip_prefix("--prefix="))
                .map(|p| Path::new(p).join("modules"))
        })
        .unwrap_or_else(|| PathBuf::from("/usr/lib/nginx/modules"));
    let module = dir.join("ngx_stream_module.so");
    if !module.is_file() {
        bail!(
            "nginx's stream module is not installed ({} is missing): apt-get install libnginx-mod-stream",
            module.display()
        );
    }
    Ok(Some(module))
}

/// nginx as an SNI passthrough proxy: `app.localhost` to the backend, with the
/// timeouts of [`ProxyLimits::default`].
fn nginx_config(
    dir: &Path,
    stream_module: Option<&Path>,
    workers: usize,
    listen: SocketAddr,
    backend: SocketAddr,
) -> String {
    let limits = ProxyLimits::default();
    let load = stream_module
        .map(|m| format!("load_module {};\n", m.display()))
        .unwrap_or_default();
    // As root nginx would run its workers as `nobody`; run them like ours.
    // SAFETY: geteuid cannot fail.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;\n"
    } else {
        ""
    };
    format!(
        "# Written by the bench_proxy example.
{load}{user}daemon off;
master_process on;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections {max};
}}

stream {{
    map $ssl_preread_server_name $backend {{
        {NAME} {backend};
        default 127.0.0.1:1;
    }}
    server {{
        listen {listen};
        ssl_preread on;
        preread_timeout {handshake}s;
        proxy_pass $backend;
        proxy_connect_timeout {connect}s;
        proxy_timeout {idle}s;
    }}
}}
",
        dir = dir.display(),
        // Each proxied connection holds two.
        max = limits.max_connections * 2,
        handshake = limits.handshake_timeout.as_secs(),
        connect = limits.connect_timeout.as_secs(),
        idle = limits.idle_timeout.as_secs(),
    )
}

// ---------------------------------------------------------------------------
// The load
// ---------------------------------------------------------------------------

/// The load generator's TLS client and the bytes it exchanges.
struct Client {
    tls: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
    exchange: Exchange,
}

struct LoadOptions {
    connections: usize,
    warmup: Duration,
    duration: Duration,
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A TCP connection and a TLS handshake with `app.localhost` at `addr`.
async fn open(client: &Client, addr: SocketAddr) -> io::Result<Tls> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    client.tls.connect(client.server_name.clone(), tcp).await
}

/// Sends `request`, reads exactly as many bytes as `response` holds.
async fn exchange(stream: &mut Tls, request: &[u8], response: &mut [u8]) -> io::Result<()> {
    stream.write_all(request).await?;
    stream.flush().await?;
    stream.read_exact(response).await?;
    Ok(())
}

/// One request on a new connection; the connection, for its close.
async fn one_request(
    client: &Client,
    addr: SocketAddr,
    mode: Mode,
    response: &mut [u8],
) -> io::Result<Tls> {
    let mut stream = timeout(CONNECT_TIMEOUT, open(client, addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    exchange(&mut stream, client.exchange.request(mode), response).await?;
    Ok(stream)
}

/// What one side did in one measurement window.
struct Sample {
    /// Latencies of the requests completed in the window, sorted (ns).
    latencies: Vec<u64>,
    /// Failed requests and connections in the window.
    errors: u64,
    window: Duration,
    /// CPU time of the proxy process(es) in the window.
    proxy_cpu: Option<Duration>,
    /// CPU time of other programs in the window, as a fraction of the
    /// machine: what disturbed the measurement.
    others: Option<f64>,
}

impl Sample {
    /// All rounds as one: latencies merged, windows and CPU times added.
    fn pooled(samples: &[Sample]) -> Sample {
        let mut latencies: Vec<u64> = samples
            .iter()
            .flat_map(|s| s.latencies.iter().copied())
            .collect();
        latencies.sort_unstable();
        let window: Duration = samples.iter().map(|s| s.window).sum();
        let others = samples
            .iter()
            .map(|s| s.others.map(|o| o * s.window.as_secs_f64()))
            .sum::<Option<f64>>()
            .map(|o| o / window.as_secs_f64());
        Sample {
            latencies,
            errors: samples.iter().map(|s| s.errors).sum(),
            window,
            proxy_cpu: samples.iter().map(|s| s.proxy_cpu).sum(),
            others,
        }
    }

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

    /// Proxy CPU time per completed request, in microseconds.
    fn cpu_us(&self) -> Option<f64> {
        let cpu = self.proxy_cpu?;
        (!self.latencies.is_empty()).then(|| cpu.as_secs_f64() * 1e6 / self.latencies.len() as f64)
    }

    fn cpu_column(&self) -> String {
        self.cpu_us()
            .map_or_else(|| "-".to_string(), |us| format!("{us:.1}"))
    }

    fn others_column(&self) -> String {
        self.others
            .map_or_else(|| "-".to_string(), |o| format!("{:.0}%", o * 100.0))
    }

    fn summary(&self) -> String {
        format!(
            "{:9.1} req/s  p50 {:6.3} ms  p99 {:6.3} ms  proxy CPU {:>5} µs/req  \
             other programs {:>4} CPU  ({} requests, {} errors)",
            self.rps(),
            self.p50(),
            self.p99(),
            self.cpu_column(),
            self.others_column(),
            self.latencies.len(),
            self.errors
        )
    }
}

/// Closed-loop load on one side: `connections` loops. Requests completing
/// during the warm-up are not counted; those completing in the window that
/// follows are.
async fn measure(
    client: &Arc<Client>,
    side: &Side,
    mode: Mode,
    load: &LoadOptions,
) -> anyhow::Result<Sample> {
    let start = Instant::now() + load.warmup;
    let end = start + load.duration;
    let pid = side.pid;
    let window = load.duration;
    let sampler = tokio::spawn(async move {
        let snapshot = || async move {
            tokio::task::spawn_blocking(move || CpuSnapshot::take(pid))
                .await
                .ok()
                .flatten()
        };
        tokio::time::sleep_until(start.into()).await;
        let before = snapshot().await;
        tokio::time::sleep_until(end.into()).await;
        let after = snapshot().await;
        Some(CpuUse::between(before?, after?, window))
    });
    let tasks: Vec<_> = (0..load.connections)
        .map(|_| {
            let client = client.clone();
            let addr = side.addr;
            match mode {
                Mode::KeepAlive => tokio::spawn(keep_alive_loop(client, addr, start, end)),
                Mode::Handshake => tokio::spawn(handshake_loop(client, addr, start, end)),
            }
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (mut task_latencies, task_errors) = task.await?;
        latencies.append(&mut task_latencies);
        errors += task_errors;
    }
    latencies.sort_unstable();
    let cpu = sampler.await?;
    if latencies.is_empty() {
        bail!(
            "no request to {} ({}) succeeded in the measurement window ({errors} errors)",
            side.name,
            side.addr
        );
    }
    Ok(Sample {
        latencies,
        errors,
        window: load.duration,
        proxy_cpu: cpu.as_ref().and_then(|c| c.proxy),
        others: cpu.map(|c| c.others),
    })
}

/// One keep-alive connection's loop; reconnects after an error. Returns the
/// latencies (ns) of the requests completed in `[start, end]` and the errors
/// there.
async fn keep_alive_loop(
    client: Arc<Client>,
    addr: SocketAddr,
    start: Instant,
    end: Instant,
) -> (Vec<u64>, u64) {
    let in_window = |t: Instant| t >= start && t <= end;
    let expected = client.exchange.response(Mode::KeepAlive);
    let request = client.exchange.request(Mode::KeepAlive);
    let mut response = vec![0; expected.len()];
    let mut latencies = Vec::new();
    let mut errors = 0;
    while Instant::now() < end {
        let Ok(Ok(mut stream)) = timeout(CONNECT_TIMEOUT, open(&client, addr)).await else {
            errors += u64::from(in_window(Instant::now()));
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        loop {
            let sent = Instant::now();
            if sent >= end {
                let _ = timeout(REQUEST_TIMEOUT, stream.shutdown()).await;
                break;
            }
            let outcome = timeout(
                REQUEST_TIMEOUT,
                exchange(&mut stream, request, &mut response),
            )
            .await;
            let done = Instant::now();
            if matches!(outcome, Ok(Ok(()))) && response == expected {
                if in_window(done) {
                    latencies.push(nanos(done - sent));
                }
            } else {
                errors += u64::from(in_window(done));
                break;
            }
        }
    }
    (latencies, errors)
}

/// One loop of connect, handshake, request, close: the latency is from the
/// connect to the last byte of the response. The server closes first (the
/// request says `connection: close`); the client waits for that, uncounted,
/// so that no side piles up TIME_WAIT sockets on the client's ports.
async fn handshake_loop(
    client: Arc<Client>,
    addr: SocketAddr,
    start: Instant,
    end: Instant,
) -> (Vec<u64>, u64) {
    let in_window = |t: Instant| t >= start && t <= end;
    let expected = client.exchange.response(Mode::Handshake);
    let mut response = vec![0; expected.len()];
    let mut latencies = Vec::new();
    let mut errors = 0;
    while Instant::now() < end {
        let sent = Instant::now();
        let outcome = timeout(
            REQUEST_TIMEOUT,
            one_request(&client, addr, Mode::Handshake, &mut response),
        )
        .await;
        let done = Instant::now();
        match outcome {
            Ok(Ok(mut stream)) if response == expected => {
                if in_window(done) {
                    latencies.push(nanos(done - sent));
                }
                let mut byte = [0u8; 1];
                let _ = timeout(REQUEST_TIMEOUT, stream.read(&mut byte)).await;
            }
            _ => {
                errors += u64::from(in_window(done));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    (latencies, errors)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

/// The round with the highest throughput.
fn best(samples: &[Sample]) -> &Sample {
    samples
        .iter()
        .max_by(|a, b| a.rps().total_cmp(&b.rps()))
        .expect("at least one round")
}

/// Prints every round, the best per side, the ratios and the verdicts per
/// mode; true when every target is met.
fn report(
    args: &Args,
    client_threads: usize,
    sides: &[Side],
    results: &[(Mode, Vec<Vec<Sample>>)],
) -> bool {
    let min_throughput = 1.0 - args.tolerance / 100.0;
    let max_p99 = 1.0 + args.tolerance / 100.0;
    let verdict = |met: bool| if met { "PASS" } else { "MISS" };
    let mut all_met = true;
    println!();
    println!(
        "TLS passthrough of GET / ({}-byte body), client {} thread(s), backend {} thread(s), \
         each proxy {} worker(s) (ours: {} runtime)",
        args.body_bytes,
        client_threads,
        args.backend_threads,
        args.proxy_workers,
        args.proxy_runtime.name()
    );
    println!(
        "{} connections; {} s warm-up + {} s measured per round; {} round(s) per side, \
         proxies in alternating order",
        args.connections, args.warmup, args.duration, args.rounds
    );
    println!(
        "proxy µs/req: CPU time of the proxy's processes per request; other CPU: share of \
         the machine used by other programs during the round (noise)"
    );
    for (mode, rounds) in results {
        println!();
        println!("== {} ==", mode.label());
        println!(
            "{:<6} {:<10} {:>9} {:>10} {:>8} {:>8} {:>13} {:>10} {:>7}",
            "round",
            "side",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "proxy µs/req",
            "other CPU",
            "errors"
        );
        for round in 0..args.rounds {
            for (side, samples) in sides.iter().zip(rounds) {
                let s = &samples[round];
                println!(
                    "{:<6} {:<10} {:>9} {:>10.1} {:>8.3} {:>8.3} {:>13} {:>10} {:>7}",
                    round + 1,
                    side.name,
                    s.latencies.len(),
                    s.rps(),
                    s.p50(),
                    s.p99(),
                    s.cpu_column(),
                    s.others_column(),
                    s.errors
                );
            }
        }
        let bests: Vec<&Sample> = rounds.iter().map(|r| best(r)).collect();
        let pooled: Vec<Sample> = rounds.iter().map(|r| Sample::pooled(r)).collect();
        for (label, samples) in [("best", bests.clone()), ("pooled", pooled.iter().collect())] {
            println!();
            println!(
                "{:<6} {:<10} {:>9} {:>10} {:>8} {:>8} {:>13} {:>10}",
                label, "side", "requests", "req/s", "p50 ms", "p99 ms", "proxy µs/req", "other CPU"
            );
            for (side, s) in sides.iter().zip(samples) {
                println!(
                    "{:<6} {:<10} {:>9} {:>10.1} {:>8.3} {:>8.3} {:>13} {:>10}",
                    "",
                    side.name,
                    s.latencies.len(),
                    s.rps(),
                    s.p50(),
                    s.p99(),
                    s.cpu_column(),
                    s.others_column()
                );
            }
        }
        let judged: Vec<&Sample> = match args.judge {
            Judge::Best => bests,
            Judge::Pooled => pooled.iter().collect(),
        };
        let (direct, ours, nginx) = (judged[0], judged[1], judged[2]);
        println!();
        println!(
            "judged on: {}",
            match args.judge {
                Judge::Best => "each side's best round (by req/s)",
                Judge::Pooled => "all rounds pooled",
            }
        );
        let throughput = ours.rps() / nginx.rps();
        let p99 = ours.p99() / nginx.p99();
        let p50 = ours.p50() / nginx.p50();
        let throughput_met = throughput >= min_throughput;
        let p99_met = p99 <= max_p99;
        all_met &= throughput_met && p99_met;
        println!();
        println!(
            "throughput mse-proxy/nginx {throughput:6.3}x   target >= {min_throughput:.2}x   {}",
            verdict(throughput_met)
        );
        println!(
            "p99        mse-proxy/nginx {p99:6.3}x   target <= {max_p99:.2}x   {}",
            verdict(p99_met)
        );
        println!("p50        mse-proxy/nginx {p50:6.3}x   (no target)");
        if let (Some(a), Some(b)) = (ours.cpu_us(), nginx.cpu_us()) {
            println!("proxy CPU  mse-proxy/nginx {:6.3}x   (no target)", a / b);
        }
        println!(
            "vs direct: mse-proxy keeps {:.1}% of the direct throughput, nginx {:.1}%",
            ours.rps() / direct.rps() * 100.0,
            nginx.rps() / direct.rps() * 100.0
        );
    }
    println!();
    println!(
        "{}",
        if all_met {
            "all targets met"
        } else {
            "a target was missed"
        }
    );
    all_met
}
