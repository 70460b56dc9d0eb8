//! Attacks by an ordinary user (or anyone on the network) replayed against
//! the real `mse-server` binary: each test shows the attack now fails and
//! that legitimate use keeps working.
#![allow(unsafe_code)] // signals and process limits of what the tests start; SAFETY at each block

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{deploy_config, http, http_deploy, http_from, http_wait_app};
use mse_testkit::platform::{self, Server};
use mse_testkit::wait;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The other client's address: another source, as the server sees it.
const OTHER: [u8; 4] = [127, 0, 0, 2];

/// Raises this test process's soft limit of open files to its hard limit
/// (the attacks hold thousands of sockets); returns the limit in force.
fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit on a struct owned here.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

/// Starts `mse-server` playing only the API on a free port, with `args`;
/// deploys are placed on a parked node (a lease nobody serves), so they
/// stay `spawning` and start no node.
async fn api_server(data: &std::path::Path, args: &[&str]) -> (Server, u16, String) {
    let mut all = vec!["--roles", "api", "--listen-api", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let server = Server::spawn(data, &all);
    let port = server.api_port();
    let token = server.admin_token();
    let url = format!("sqlite://{}", data.join("mse.db").display());
    let store = mse_server::store::Store::open(&url).await.unwrap();
    common::park_a_node(&store).await;
    store.close().await;
    (server, port, token)
}

/// A TCP connection to the loopback `port` from the address `source`.
async fn connect_from(source: [u8; 4], port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

/// How the server ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// An orderly close (FIN).
    Orderly,
    /// A reset: the server closed it with the client's bytes unread, as it
    /// does when it refuses a connection.
    Reset,
}

/// Reads until the peer closes (or resets) the connection, within `limit`;
/// returns what arrived and how it closed, `None` if it did not.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<(Vec<u8>, Closed)> {
    let mut got = Vec::new();
    tokio::time::timeout(limit, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break Closed::Orderly,
                Err(_) => break Closed::Reset,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
    .map(|closed| (got, closed))
}

/// How many connections from `source` to the loopback `port` the process
/// `pid` holds open now (accepted: one of its descriptors), from the
/// kernel's socket table.
fn held_from(pid: u32, port: u16, source: [u8; 4]) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.to_string_lossy().into_owned();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
            {
                inodes.insert(inode.to_string());
            }
        }
    }
    let local = format!(":{port:04X}");
    let remote = format!("{:08X}:", u32::from_ne_bytes(source));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    // Counted by inode: the kernel writes the table in several reads, and
    // a socket that moves in it while connections come and go can be
    // written twice.
    let held: std::collections::HashSet<&str> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() > 9
                && fields[1].ends_with(&local)
                && fields[2].starts_with(&remote)
                && fields[3] == "01"
                && inodes.contains(fields[9]))
            .then_some(fields[9])
        })
        .collect();
    held.len()
}

/// `GET /health` from `source`: its status and how long it took.
async fn timed_health(source: [u8; 4], port: u16) -> (u16, Value, Duration) {
    let started = Instant::now();
    let (status, body) = http_from(source, port, "GET", "/health", "", None).await;
    (status, body, started.elapsed())
}

#[tokio::test]
async fn idle_connections_do_not_starve_health_or_deploys() {
    const IDLE: usize = 3_000;
    const PER_SOURCE: usize = 64;
    // Longer than opening the connections takes on a loaded machine, so
    // that the cap is full when the extra connection comes.
    const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
    let limit = raise_open_files_limit();
    assert!(
        limit > IDLE as u64 + 200,
        "RLIMIT_NOFILE hard limit {limit}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (server, port, token) = api_server(
        &dir.path().join("data"),
        &[
            "--api-header-timeout",
            &HEADER_TIMEOUT.as_secs().to_string(),
            "--api-max-connections-per-source",
            &PER_SOURCE.to_string(),
        ],
    )
    .await;

    // The attack: thousands of connections from one address, each with a
    // header that never ends.
    // What the server holds is read from the kernel's socket tables as
    // the attack goes on: how long anything takes decides nothing.
    let server_pid = server.child.id();
    let mut most_held = 0;
    let opened = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let mut stream = connect_from([127, 0, 0, 1], port).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .await
            .unwrap();
        idle.push(stream);
        if i % 100 == 99 {
            most_held = most_held.max(held_from(server_pid, port, [127, 0, 0, 1]));
        }
    }
    let opened_in = opened.elapsed();
    let watchers: Vec<_> = idle
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                closed_within(&mut stream, HEADER_TIMEOUT + Duration::from_secs(20)).await
            })
        })
        .collect();

    // Meanwhile another client is served: health, and a deploy, while the
    // attack still holds the server's every place for its address (checked
    // after them, from the socket tables: no time decides).
    let (status, body, took) = timed_health(OTHER, port).await;
    eprintln!(
        "{IDLE} idle connections opened in {opened_in:?}; /health from 127.0.0.2 took {took:?}"
    );
    assert_eq!(status, 200, "{body}");
    let (status, me) = http_from(OTHER, port, "GET", "/me", &token, None).await;
    assert_eq!((status, me["name"].as_str()), (200, Some("admin")), "{me}");
    let config = deploy_config("still-deploys", json!({}));
    let (code, _) = common::scaffold_package();
    let config_text = config.to_string();
    let body = common::multipart(&[("config", config_text.as_bytes()), ("code", &code)]);
    let (status, app) = http_from(
        OTHER,
        port,
        "POST",
        "/apps",
        &token,
        Some((common::multipart_type(), body)),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    // The attack was holding its cap all along; and its own address gets
    // a clear 503, not a hang.
    let held_now = held_from(server_pid, port, [127, 0, 0, 1]);
    assert_eq!(
        held_now, PER_SOURCE,
        "the server holds its cap from one address"
    );
    let mut refused = connect_from([127, 0, 0, 1], port).await.unwrap();
    let (answer, _) = closed_within(&mut refused, Duration::from_secs(5))
        .await
        .expect("closed at once");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("too many connections"),
        "{answer}"
    );
    // While connections pour in, a sample may also count the one the
    // server is refusing at that instant (accepted, answered 503, closed).
    eprintln!("at most {most_held} of {IDLE} held at once from one address while they came");
    assert!(
        most_held <= PER_SOURCE + 2,
        "{most_held} connections held from one address"
    );

    // Every connection is closed by the server in the end: refused with a
    // 503 (or reset, its bytes unread), or, held, by the header timeout.
    for watcher in watchers {
        let (answer, closed) = watcher
            .await
            .unwrap()
            .expect("every idle connection is closed by the server");
        if !answer.starts_with(b"HTTP/1.1 503") && closed == Closed::Orderly {
            assert!(
                answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
                "a held connection is closed by the header timeout: {}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    // And the attacker's address is served again once they are gone.
    let (status, _, _) = timed_health([127, 0, 0, 1], port).await;
    assert_eq!(status, 200);
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[tokio::test]
async fn running_out_of_descriptors_neither_spins_nor_stops_the_api() {
    const FILES: u64 = 256;
    const IDLE: usize = 400;
    raise_open_files_limit();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Caps above the descriptor limit, as an operator might set them: the
    // accept loop meets EMFILE.
    let mut server = Server::spawn_with(
        &data,
        &[
            "--roles",
            "api",
            "--listen-api",
            "127.0.0.1:0",
            "--api-header-timeout",
            "2",
            "--api-max-connections-per-source",
            "4096",
            "--api-max-connections",
            "4096",
        ],
        |command| {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit only, between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    let limit = libc::rlimit {
                        rlim_cur: FILES,
                        rlim_max: FILES,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        },
    );
    let port = server.api_port();
    let pid = server.child.id();

    let mut idle = Vec::new();
    for _ in 0..IDLE {
        let mut stream = connect_from([127, 0, 0, 1], port).await.unwrap();
        stream.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        idle.push(stream);
    }
    // Out of descriptors for a while: the loop backs off instead of spinning.
    let cpu_before = cpu_seconds(pid);
    let wall = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let busy = (cpu_seconds(pid) - cpu_before) / wall.elapsed().as_secs_f64();
    assert!(
        busy < 0.5,
        "the server used {busy:.2} of a core while out of descriptors"
    );
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server is alive"
    );

    // The header timeout frees the descriptors; the API answers again.
    drop(idle);
    wait::until_async(
        "the API answers again",
        Duration::from_secs(30),
        async || {
            let answered =
                tokio::time::timeout(Duration::from_secs(5), timed_health(OTHER, port)).await;
            match answered {
                Ok((200, _, _)) => Ok(()),
                _ => Err(format!("{answered:?}")),
            }
        },
    )
    .await;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server is alive"
    );
}

#[tokio::test]
async fn a_body_sent_byte_by_byte_is_cut_off_by_the_body_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port, token) =
        api_server(&dir.path().join("data"), &["--api-body-timeout", "2"]).await;
    let mut stream = connect_from([127, 0, 0, 1], port).await.unwrap();
    let head = format!(
        "POST /projects HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        // One byte every 200 ms: 200 s for the whole body.
        for _ in 0..1000 {
            if writer.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut answer)).await;
    let took = started.elapsed();
    trickle.abort();
    assert!(read.is_ok(), "the connection was not closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "answered after {took:?}"
    );

    // A body sent at once is taken.
    let (status, body) = http(
        port,
        "POST",
        "/projects",
        &token,
        Some(("application/json".into(), br#"{"name": "quick"}"#.to_vec())),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// The bytes of a ClientHello naming `name`, as a rustls client sends it.
fn client_hello(name: &str) -> Vec<u8> {
    let config = mse_attest::tls::ca_client_config(rustls::RootCertStore::empty(), &[]);
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut client = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    hello
}

/// Sends a ClientHello for `name` from `source` through the proxy at `addr`:
/// the first byte that comes back (22 for the node's ServerHello, 21 for an
/// alert), or `None` when the connection is closed without a byte.
async fn hello_through(source: [u8; 4], addr: SocketAddr, name: &str) -> Option<u8> {
    let mut stream = connect_from(source, addr.port()).await.ok()?;
    stream.write_all(&client_hello(name)).await.ok()?;
    let mut first = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut first)).await {
        Ok(Ok(1)) => Some(first[0]),
        _ => None,
    }
}

#[tokio::test]
async fn one_source_holding_its_share_of_the_proxy_does_not_lock_out_another() {
    const PER_SOURCE: usize = 32;
    raise_open_files_limit();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn(
        &dir.path().join("data"),
        &[
            "--listen-api",
            "127.0.0.1:0",
            "--listen-proxy",
            "127.0.0.1:0",
            "--proxy-max-connections",
            "128",
            "--proxy-max-connections-per-source",
            &PER_SOURCE.to_string(),
        ],
    );
    let port = server.api_port();
    let proxy = server.proxy_addr();
    let token = server.admin_token();
    let (status, app) = http_deploy(port, &token, &deploy_config("behind-proxy", json!({}))).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap();
    let app = http_wait_app(port, &token, id, "initializing", |a| {
        a["status"] == "initializing"
    })
    .await;
    // The node's configuration server, reached through the proxy by its name.
    let name = app["config_domain_name"].as_str().unwrap().to_string();
    assert_eq!(hello_through(OTHER, proxy, &name).await, Some(22));

    // The attack: one address opens more than its share and sends nothing.
    let mut held = Vec::new();
    for _ in 0..PER_SOURCE {
        held.push(connect_from([127, 0, 0, 1], proxy.port()).await.unwrap());
    }
    let mut over = Vec::new();
    for _ in 0..PER_SOURCE {
        over.push(connect_from([127, 0, 0, 1], proxy.port()).await.unwrap());
    }
    for mut stream in over {
        assert!(
            closed_within(&mut stream, Duration::from_secs(5))
                .await
                .is_some(),
            "a connection over the share is closed at once"
        );
    }
    assert_eq!(
        hello_through([127, 0, 0, 1], proxy, &name).await,
        None,
        "the attacker's address gets no more"
    );
    // Another address still reaches the node.
    for _ in 0..3 {
        assert_eq!(hello_through(OTHER, proxy, &name).await, Some(22));
    }
    drop(held);
    // Once the attacker lets go, its address is served again.
    wait::until_async(
        "the attacker's slots are freed",
        Duration::from_secs(10),
        async || hello_through([127, 0, 0, 1], proxy, &name).await == Some(22),
    )
    .await;
}

/// A raw HTTP/1.1 exchange with the API: (status, headers, body as JSON).
async fn raw(port: u16, request: &[u8]) -> (u16, String, Value) {
    let mut stream = connect_from([127, 0, 0, 1], port).await.unwrap();
    stream.write_all(request).await.unwrap();
    let (answer, _) = closed_within(&mut stream, Duration::from_secs(30))
        .await
        .expect("answered and closed");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head[9..12].parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (status, head.to_ascii_lowercase(), body)
}

#[tokio::test]
async fn every_error_is_json_and_says_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port, token) = api_server(&dir.path().join("data"), &[]).await;
    let auth = format!("Authorization: Bearer {token}\r\n");
    let post = |path: &str, content_type: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let get = |path: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n")
            .into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("bad JSON", post("/projects", "application/json", "{name"), 400, "JSON"),
        ("wrong content type", post("/projects", "text/plain", "{}"), 415, "Content-Type"),
        ("missing field", post("/projects", "application/json", "{}"), 422, "name"),
        ("not multipart", post("/apps", "application/json", "{}"), 400, "multipart"),
        (
            "bad multipart",
            post("/apps", "multipart/form-data; boundary=x", "--y\r\n"),
            400,
            "",
        ),
        ("bad query", get("/apps?limit=many", &auth), 400, "limit"),
        ("unknown query", get("/apps?page=2", &auth), 400, "offset"),
        ("unknown route", get("/nowhere", ""), 404, "openapi.json"),
        ("wrong method", b"PUT /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(), 405, "method"),
        ("no token", get("/me", ""), 401, "Bearer"),
        ("unknown scheme", get("/me", &format!("Authorization: Basic {token}\r\n")), 401, "Bearer"),
    ];
    for (what, request, status, message) in cases {
        let (got, head, body) = raw(port, &request).await;
        assert_eq!(got, status, "{what}: {body}");
        assert!(
            head.contains("content-type: application/json"),
            "{what}: {head}"
        );
        let error = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {body}"));
        assert!(
            error.contains(message),
            "{what}: `{error}` lacks `{message}`"
        );
    }
    let (_, head, _) = raw(
        port,
        b"DELETE /projects HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        head.contains("allow: "),
        "405 keeps its Allow header: {head}"
    );

    // The bearer scheme in any case.
    for scheme in ["bearer", "BEARER", "Bearer", "bEaReR"] {
        let (status, _, me) = raw(
            port,
            &get("/me", &format!("Authorization: {scheme}  {token}\r\n")),
        )
        .await;
        assert_eq!(
            (status, me["name"].as_str()),
            (200, Some("admin")),
            "{scheme}"
        );
    }
}

#[tokio::test]
async fn uploads_over_the_cap_duplicate_parts_and_empty_packages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, port, token) = api_server(&data, &[]).await;
    let config = deploy_config("app", json!({})).to_string();
    let (code, _) = common::scaffold_package();
    let deploy = |parts: Vec<(&'static str, Vec<u8>)>| {
        let token = token.clone();
        async move {
            let parts: Vec<(&str, &[u8])> = parts.iter().map(|(n, b)| (*n, &b[..])).collect();
            let body = common::multipart(&parts);
            http(
                port,
                "POST",
                "/apps",
                &token,
                Some((common::multipart_type(), body)),
            )
            .await
        }
    };
    for (twice, parts) in [
        (
            "config",
            vec![
                ("config", config.clone().into_bytes()),
                ("config", config.clone().into_bytes()),
                ("code", code.clone()),
            ],
        ),
        (
            "code",
            vec![
                ("config", config.clone().into_bytes()),
                ("code", code.clone()),
                ("code", code.clone()),
            ],
        ),
    ] {
        let (status, body) = deploy(parts).await;
        assert_eq!(status, 400, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains(&format!("`{twice}` part is sent twice")),
            "{error}"
        );
    }

    // A package with no encrypted file: no code, and any key would open it.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("requirements.txt"), "flask\n").unwrap();
    let mut tar = Vec::new();
    mse_package::pack(
        empty.path(),
        &mse_package::CodeKey::generate(),
        mse_package::Nonces::Random,
        &mut tar,
    )
    .unwrap();
    let (status, body) = deploy(vec![("config", config.clone().into_bytes()), ("code", tar)]).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no encrypted file"),
        "{body}"
    );
    let (status, body) = deploy(vec![
        ("config", config.clone().into_bytes()),
        ("code", b"not a tarball".to_vec()),
    ])
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a code package"),
        "{body}"
    );

    // Over the upload cap: 413, said before the body is read.
    let head = format!(
        "POST /apps HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        common::multipart_type(),
        mse_server::api::apps::MAX_UPLOAD + 1
    );
    let (status, _, body) = raw(port, head.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("MiB"), "{body}");

    let (status, apps) = http(port, "GET", "/apps", &token, None).await;
    assert_eq!((status, apps), (200, json!([])), "nothing was deployed");
    let incoming = std::fs::read_dir(data.join("apps/.incoming"))
        .unwrap()
        .count();
    assert_eq!(incoming, 0, "no upload left behind");
    // The legitimate deploy still works.
    let (status, body) = deploy(vec![("config", config.into_bytes()), ("code", code)]).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn out_of_range_resource_numbers_are_refused_and_deploys_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port, token) = api_server(&dir.path().join("data"), &[]).await;
    let post = |body: Value| {
        let token = token.clone();
        async move {
            http(
                port,
                "POST",
                "/resources",
                &token,
                Some(("application/json".into(), body.to_string().into_bytes())),
            )
            .await
        }
    };
    let resource = |changes: Value| {
        let mut r = json!({"name": "plan", "memory_mb": 512, "cores": 1, "enclave_size": "1G", "default_hours": 24});
        for (k, v) in changes.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    };
    for (changes, field, range) in [
        (
            json!({"default_hours": 9_223_372_036_854_775_807i64}),
            "default_hours",
            "1 to 87600",
        ),
        (json!({"default_hours": 0}), "default_hours", "1 to 87600"),
        (json!({"memory_mb": -1}), "memory_mb", "1 to 1048576"),
        (json!({"memory_mb": 1e30}), "memory_mb", "1 to 1048576"),
        (json!({"cores": 100_000}), "cores", "1 to 1024"),
        (
            json!({"enclave_size": "99999999999999999999G"}),
            "enclave_size",
            "1M to 1024G",
        ),
        (
            json!({"enclave_size": "2048G"}),
            "enclave_size",
            "1M to 1024G",
        ),
    ] {
        let (status, body) = post(resource(changes.clone())).await;
        assert_eq!(status, 400, "{changes}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains(field) && error.contains(range),
            "{changes}: {error}"
        );
    }
    let (status, body) = post(resource(json!({"default_hours": 87_600, "public": true}))).await;
    assert_eq!(status, 201, "{body}");
    let (status, app) = http_deploy(
        port,
        &token,
        &deploy_config("ten-years", json!({"resource": "plan"})),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    assert!(
        app["expires_at"].is_string() || app["expires_at"].is_number(),
        "{app}"
    );
}

#[tokio::test]
async fn a_resource_out_of_range_in_an_older_store_fails_deploys_cleanly() {
    let p = common::platform().await;
    p.state
        .store
        .create_resource(&mse_server::domain::accounts::Resource {
            name: "old".into(),
            memory_mb: 512,
            cores: 1,
            enclave_size: "1G".into(),
            default_hours: i64::MAX,
            public: true,
            max_live_apps: None,
            tees: Vec::new(),
        })
        .await
        .unwrap();
    let (status, body) = p
        .deploy(&p.admin, deploy_config("app", json!({"resource": "old"})))
        .await;
    assert_eq!(
        status,
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("out of range"),
        "{body}"
    );
    let (status, body) = p.deploy(&p.admin, deploy_config("app", json!({}))).await;
    assert_eq!(status, axum::http::StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn health_answers_503_when_the_store_does_not() {
    let p = common::platform().await;
    let (status, body) = p.call(axum::http::Method::GET, "/health", None, None).await;
    assert_eq!(
        (status.as_u16(), body["status"].as_str()),
        (200, Some("ok"))
    );
    p.state.store.close().await;
    let (status, body) = p.call(axum::http::Method::GET, "/health", None, None).await;
    assert_eq!(status.as_u16(), 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("store"), "{body}");
}

#[tokio::test]
async fn uploads_left_by_a_killed_server_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, _, _) = api_server(&data, &[]).await;
    drop(server);
    let incoming = data.join("apps/.incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::write(incoming.join("partial-upload"), b"half a tarball").unwrap();
    std::fs::create_dir_all(incoming.join("odd-folder")).unwrap();
    // A live upload of another process holds its file locked: it stays.
    let (live, _file) = mse_server::data::dir::create_incoming(&data).unwrap();

    let server = Server::spawn(&data, &["--roles", "api", "--listen-api", "127.0.0.1:0"]);
    let port = server.api_port();
    let left: Vec<_> = std::fs::read_dir(&incoming)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left, vec![live], "only the live upload is left");
    let (status, _, _) = timed_health(OTHER, port).await;
    assert_eq!(status, 200);
}

/// A JSON body for [`http`].
fn json_body(value: Value) -> Option<(String, Vec<u8>)> {
    Some((
        "application/json".to_string(),
        value.to_string().into_bytes(),
    ))
}

#[tokio::test]
async fn the_longest_token_lifetime_bounds_every_token_made_through_the_api() {
    // Out of its bounds, the flag is refused before anything starts.
    let dir = tempfile::tempdir().unwrap();
    let refused = platform::command(
        Some(&dir.path().join("never")),
        &["--max-token-lifetime", "0"],
        |_| {},
    )
    .output()
    .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--max-token-lifetime"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!dir.path().join("never").exists());

    let (_server, port, admin) =
        api_server(&dir.path().join("data"), &["--max-token-lifetime", "3600"]).await;
    // The operator's own token lives until revoked.
    let (status, tokens) = http(port, "GET", "/tokens", &admin, None).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens[0]["expires_at"], Value::Null, "{tokens}");
    assert_eq!(tokens[0]["scope"], "admin", "{tokens}");
    // A new user's first token, and any token asked for without an expiry,
    // get the longest lifetime; asking for more is refused.
    let (status, user) = http(
        port,
        "POST",
        "/users",
        &admin,
        json_body(json!({"name": "bob"})),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let bob = user["token"].as_str().unwrap().to_string();
    let (_, tokens) = http(port, "GET", "/tokens", &bob, None).await;
    let first = &tokens[0];
    assert_eq!(
        first["expires_at"].as_i64().unwrap(),
        first["created_at"].as_i64().unwrap() + 3600,
        "{tokens}"
    );
    let (status, body) = http(
        port,
        "POST",
        "/tokens",
        &bob,
        json_body(json!({"name": "long", "expires_in": 3601})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("--max-token-lifetime"),
        "{body}"
    );
    let (status, made) = http(
        port,
        "POST",
        "/tokens",
        &bob,
        json_body(json!({"name": "short", "expires_in": 60, "scope": "read"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let read = made["token"].as_str().unwrap();
    // The read token reads and deploys nothing; bob's first token deploys.
    let (status, _) = http(port, "GET", "/apps", read, None).await;
    assert_eq!(status, 200);
    let (status, body) = http_deploy(port, read, &deploy_config("app", json!({}))).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = http_deploy(port, &bob, &deploy_config("app", json!({}))).await;
    assert_eq!(status, 201, "{body}");
    // An unknown parameter is refused, over HTTP too.
    let (status, body) = http(port, "GET", "/tokens?user=admin", &bob, None).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_in_the_documented_api() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port, token) = api_server(&dir.path().join("data"), &[]).await;
    let schemathesis = mse_testkit::python_bin_dir().join("schemathesis");
    let mut run = std::process::Command::new(&schemathesis)
        .arg("run")
        .arg(format!("http://127.0.0.1:{port}/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "not_a_server_error"])
        .args(["--max-examples", "10", "--max-time", "60", "--seed", "1"])
        .args(["--workers", "2", "--request-timeout", "10"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", schemathesis.display()));
    // Its own time budget is 60 s; never wait past twice that.
    wait::exit(
        "schemathesis ends within its time budget",
        &mut run,
        Duration::from_secs(120),
    );
    let output = run.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "schemathesis failed:\n{report}");
    // Every operation but `GET /openapi.json`, which schemathesis leaves out
    // (it is the document it reads).
    let operations = mse_server::api::operations().len() - 1;
    assert!(
        report.contains(&format!("Tested: {operations}")),
        "every operation is tested:\n{report}"
    );
    assert!(!report.contains("Server error"), "{report}");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server survived"
    );
    let (status, _, _) = timed_health(OTHER, port).await;
    assert_eq!(status, 200);
}
