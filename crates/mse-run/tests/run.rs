//! `mse-run` end to end: real Python, real Flask (and a raw ASGI app), real
//! TLS, the real binary. Every test waits on status events with bounded
//! timeouts.

// The tests signal the processes they start (libc::kill).
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mse_api::apps::AppStatus;
use mse_api::launch::{self, Launch};
use mse_attest::fingerprint::{fingerprint, FingerprintInput, TlsMode};
use mse_attest::simulation::SimulationCa;
use mse_attest::verify::{verify_certificate, Policy, NO_COLLATERAL};
use mse_package::{CodeKey, Nonces};
use mse_run::status::Event;
use mse_testkit::wait;
use sha2::{Digest, Sha256};

const IMAGE: &str = "ghcr.io/cosmian/mse-flask:20230124182826";
const SCAFFOLD_APP: &str = include_str!("../../mse-cli/templates/scaffold/mse_src/app.py");
/// Bound on any one wait; the first build of the Python environment is the slow part.
const WAIT: Duration = Duration::from_secs(300);

/// The operator's side: simulation CA and enclave-signing key, made once.
struct Operator {
    ca: SimulationCa,
    signer_pem: String,
    mr_signer: [u8; 32],
}

fn operator() -> &'static Operator {
    static OPERATOR: OnceLock<Operator> = OnceLock::new();
    OPERATOR.get_or_init(|| {
        use rsa::pkcs8::EncodePublicKey;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 3072).unwrap();
        let signer_pem = key
            .to_public_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        let mr_signer = mse_attest::signer::mr_signer_from_pem(&signer_pem).unwrap();
        Operator {
            ca: SimulationCa::generate(Utc::now()).unwrap(),
            signer_pem,
            mr_signer,
        }
    })
}

/// An encrypted package of some files.
struct Package {
    _dir: tempfile::TempDir,
    code: PathBuf,
    key: CodeKey,
}

fn package(files: &[(&str, &str)]) -> Package {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for (name, text) in files {
        let path = src.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let key = CodeKey::generate();
    let code = dir.path().join("code.tar");
    let out = std::fs::File::create(&code).unwrap();
    mse_package::pack(&src, &key, Nonces::Random, out).unwrap();
    Package {
        _dir: dir,
        code,
        key,
    }
}

fn scaffold() -> Package {
    package(&[("app.py", SCAFFOLD_APP)])
}

enum Tls {
    SelfSigned(DateTime<Utc>),
    Owner(PathBuf),
    Plain(DateTime<Utc>),
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `mse-run` process and its status events.
struct Node {
    child: Child,
    events: Receiver<Event>,
    addr: SocketAddr,
    uuid: String,
    domain: String,
    work: PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(package: &Package, tls: Tls, edit: impl FnOnce(&mut Launch)) -> Node {
        Self::start_with(package, tls, edit, |_, _| {})
    }

    /// [`Node::start`], letting `configure` change the command (and its
    /// temporary folder) first.
    fn start_with(
        package: &Package,
        tls: Tls,
        edit: impl FnOnce(&mut Launch),
        configure: impl FnOnce(&mut Command, &Path),
    ) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let op = operator();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        // This host's quote key, certified by the platform's CA: the node
        // never sees the CA key.
        let pck = op.ca.issue_pck("test-host", Utc::now()).unwrap();
        let quote_key = write("quote-key.pem", &pck.key_pem().unwrap());
        let quote_chain = write("quote-chain.pem", &pck.chain_pem);
        let signer = write("signer.pub", &op.signer_pem);
        let uuid = format!("{:032x}", rand_u128());
        let uuid = format!(
            "{}-{}-{}-{}-{}",
            &uuid[..8],
            &uuid[8..12],
            &uuid[12..16],
            &uuid[16..20],
            &uuid[20..]
        );
        let domain = format!("{uuid}.localhost");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let work = dir.path().join("work");
        let mut launch = Launch {
            app: launch::App {
                uuid: uuid.clone(),
                application: "app:app".into(),
                domain: domain.clone(),
                code: package.code.clone(),
                healthcheck: "/health".into(),
            },
            runtime: launch::Runtime {
                image: IMAGE.into(),
                enclave_size: "1G".into(),
                catalog: None,
                cache_dir: mse_testkit::runtime_cache_dir(),
                installer: None,
            },
            node: launch::Node {
                listen: addr,
                work_dir: work.clone(),
                log_file: None,
            },
            timeouts: launch::Timeouts::default(),
            sandbox: launch::Sandbox::default(),
            limits: launch::Limits::default(),
            quotes: launch::Quotes::Simulation {
                quote_key,
                quote_chain,
                signer_key: signer,
            },
            pccs_url: None,
            tls: match tls {
                Tls::SelfSigned(expires_at) => launch::Tls::Ratls { expires_at },
                Tls::Owner(certificate) => launch::Tls::Owner {
                    certificate,
                    expires_at: None,
                },
                Tls::Plain(expires_at) => launch::Tls::Plain { expires_at },
            },
            storage: None,
        };
        edit(&mut launch);
        let launch_file = write("launch.json", &launch.to_json());
        let mut command = Command::new(env!("CARGO_BIN_EXE_mse-run"));
        command.arg("--launch").arg(&launch_file);
        for (key, value) in mse_testkit::runtime_env() {
            if command.get_envs().all(|(k, _)| k != key) {
                command.env(key, value);
            }
        }
        configure(&mut command, dir.path());
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event: Event = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("status line `{line}` is not an event: {e}"));
                if sender.send(event).is_err() {
                    break;
                }
            }
        });
        Node {
            child,
            events,
            addr,
            uuid,
            domain,
            work,
            _dir: dir,
        }
    }

    /// The next event, which must have `state`.
    fn expect(&self, state: AppStatus) -> Event {
        let event = self.events.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!(
                "no status event within {WAIT:?} (waiting for {state:?}); log:\n{}",
                self.log()
            )
        });
        assert_eq!(event.status, state, "{event:?}; log:\n{}", self.log());
        event
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.work.join("app.log")).unwrap_or_default()
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        wait::exit("mse-run exits", &mut self.child, WAIT)
    }

    /// The certificate of the configuration server, captured on first contact.
    fn capture_certificate(&self) -> Vec<u8> {
        let (config, seen) = mse_attest::pin::capture_config(&[b"http/1.1"]);
        let response = https(
            self.addr,
            &self.domain,
            Arc::new(config),
            &get("/", &self.domain),
        );
        assert_eq!(response.status, 200);
        seen.seen().expect("the server presented a certificate")
    }

    /// `POST /` of `body` to the configuration server pinned to `cert`.
    fn configure(&self, cert: &[u8], body: &[u8]) -> Response {
        let config = Arc::new(mse_attest::pin::client_config(cert, &[b"http/1.1"]));
        https(
            self.addr,
            &self.domain,
            config,
            &post("/", &self.domain, body),
        )
    }

    fn config_body(&self, key: &CodeKey, extra: serde_json::Value) -> Vec<u8> {
        let mut body = serde_json::json!({"uuid": self.uuid, "code_secret_key": key.to_hex()});
        if let serde_json::Value::Object(extra) = extra {
            body.as_object_mut().unwrap().extend(extra);
        }
        serde_json::to_vec(&body).unwrap()
    }

    /// Waits for the configuration server, configures the node with the
    /// package's key and `extra` fields, and returns its RA-TLS certificate.
    fn configure_ok(&self, package: &Package, extra: serde_json::Value) -> Vec<u8> {
        self.expect(AppStatus::Initializing);
        self.configure_waiting_ok(package, extra)
    }

    /// [`Node::configure_ok`] once its `initializing` event was read.
    fn configure_waiting_ok(&self, package: &Package, extra: serde_json::Value) -> Vec<u8> {
        let cert = self.capture_certificate();
        let answer = self.configure(&cert, &self.config_body(&package.key, extra));
        assert_eq!(answer.status, 200, "{}", answer.text());
        cert
    }

    /// `GET path` of the app, over TLS pinned to `cert`: its JSON body
    /// (the answer must be 200).
    fn get_json(&self, cert: &[u8], path: &str) -> serde_json::Value {
        let pinned = Arc::new(mse_attest::pin::client_config(cert, &[b"http/1.1"]));
        let answer = https(self.addr, &self.domain, pinned, &get(path, &self.domain));
        assert_eq!(answer.status, 200, "{}", answer.text());
        serde_json::from_slice(&answer.body).unwrap()
    }

    /// Still waiting for its configuration.
    fn assert_waiting(&self, cert: &[u8]) {
        let config = Arc::new(mse_attest::pin::client_config(cert, &[b"http/1.1"]));
        let response = https(self.addr, &self.domain, config, &get("/", &self.domain));
        assert_eq!(response.status, 200);
        assert_eq!(response.header("mse-status"), Some("Waiting"));
    }

    /// Waits until the process exits and its state is final.
    fn stop(&mut self) -> Event {
        // SAFETY: signalling the child process this test started.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let event = self.expect(AppStatus::Stopped);
        assert!(self.wait_exit().success());
        event
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: as above; a test that failed must not leave the node running.
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM);
            }
            let child = &mut self.child;
            let _ = wait::within(Duration::from_secs(20), || {
                child.try_wait().ok().flatten().is_some()
            });
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn rand_u128() -> u128 {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    u128::from_le_bytes(bytes)
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn get(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

fn post(path: &str, host: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut decoded = Vec::new();
        let mut rest = &body[..];
        while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..end]).trim(), 16)
                .expect("a chunk size");
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(&rest[end + 2..end + 2 + size]);
            rest = &rest[end + 2 + size + 2..];
        }
        body = decoded;
    }
    Response {
        status,
        headers,
        body,
    }
}

fn https(
    addr: SocketAddr,
    domain: &str,
    config: Arc<rustls::ClientConfig>,
    request: &[u8],
) -> Response {
    let name = rustls::pki_types::ServerName::try_from(domain.to_string()).unwrap();
    let connection = rustls::ClientConnection::new(config, name).unwrap();
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, stream);
    tls.write_all(request).unwrap();
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // Servers may close without close_notify once the answer is sent.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("reading the answer: {e}"),
    }
    parse_response(&raw)
}

fn http(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

fn policy(expected: [u8; 32]) -> Policy {
    let op = operator();
    Policy {
        mr_signer: Some(op.mr_signer),
        mr_enclave: Some(expected),
        allow_simulation: true,
        simulation_ca: Some(op.ca.cert_der().to_vec()),
        simulation_revoked: Some(Vec::new()),
        ..Policy::default()
    }
}

/// The fingerprint as a client computes it from what it deployed.
fn expected_fingerprint(node: &Node, package: &Package, tls: TlsMode) -> [u8; 32] {
    let spec = mse_runtime::Catalog::default_catalog()
        .find(IMAGE)
        .unwrap()
        .clone();
    fingerprint(&FingerprintInput {
        runtime_image: IMAGE.to_string(),
        runtime_spec_digest: spec.digest(),
        enclave_size: "1G".to_string(),
        app_uuid: node.uuid.clone(),
        app_domain: node.domain.clone(),
        python_application: "app:app".to_string(),
        tls,
        code_sha256: Sha256::digest(std::fs::read(&package.code).unwrap()).into(),
    })
}

fn in_an_hour() -> DateTime<Utc> {
    // Whole seconds: the certificate and the fingerprint carry seconds.
    DateTime::from_timestamp(Utc::now().timestamp() + 3600, 0).unwrap()
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn ratls_mode_is_verified_configured_serves_the_scaffolded_app_and_stops_on_sigterm_leaving_no_process(
) {
    let package = scaffold();
    let expiry = in_an_hour();
    let mut node = Node::start(&package, Tls::SelfSigned(expiry), |_| {});
    let initializing = node.expect(AppStatus::Initializing);

    let cert = node.capture_certificate();
    let expected =
        expected_fingerprint(&node, &package, TlsMode::SelfSigned { expires_at: expiry });
    assert_eq!(
        initializing.fingerprint.as_deref(),
        Some(hex::encode(expected).as_str())
    );
    let verification = verify_certificate(&cert, &policy(expected), Err(NO_COLLATERAL), Utc::now());
    assert!(verification.verified, "{verification:#?}");
    let inspected = mse_attest::ratls::inspect(&cert).unwrap();
    assert_eq!(inspected.dns_names, vec![node.domain.clone()]);
    assert_eq!(inspected.not_after, expiry);

    // A refusal leaves it waiting; the right configuration is accepted.
    let wrong = serde_json::json!({"uuid": "00000000-0000-0000-0000-000000000000",
                                   "code_secret_key": package.key.to_hex()});
    assert_eq!(
        node.configure(&cert, wrong.to_string().as_bytes()).status,
        401
    );
    node.assert_waiting(&cert);
    let accepted = node.configure(
        &cert,
        &node.config_body(&package.key, serde_json::json!({})),
    );
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    assert_eq!(accepted.header("mse-status"), None);
    let running = node.expect(AppStatus::Running);

    // The app is served with the RA-TLS certificate, over HTTP/1.1 and HTTP/2.
    let pinned = Arc::new(mse_attest::pin::client_config(&cert, &[b"http/1.1"]));
    let hello = https(node.addr, &node.domain, pinned, &get("/", &node.domain));
    assert_eq!((hello.status, hello.text().as_str()), (200, "Hello world"));
    let h2 = Arc::new(mse_attest::pin::client_config(&cert, &[b"h2", b"http/1.1"]));
    let name = rustls::pki_types::ServerName::try_from(node.domain.clone()).unwrap();
    let mut connection = rustls::ClientConnection::new(h2, name).unwrap();
    let mut stream = TcpStream::connect(node.addr).unwrap();
    connection.complete_io(&mut stream).unwrap();
    assert_eq!(connection.alpn_protocol(), Some(&b"h2"[..]));
    wait::until(
        "the access log shows the request",
        Duration::from_secs(30),
        || node.log().contains("\"GET / 1.1\" 200"),
    );

    let pid = running.pid.unwrap();
    node.stop();
    assert!(!process_exists(pid));
    assert_eq!(
        mse_testkit::live_group_members(pid),
        Vec::<u32>::new(),
        "no child process left"
    );
    assert!(
        !node.work.join("app").exists(),
        "the decrypted code is removed"
    );
}

#[test]
fn owner_certificate_mode_needs_the_matching_key_and_serves_the_owner_certificate() {
    let package = scaffold();
    // The owner's certificate covers `*.localhost`, so every test domain.
    let dir = tempfile::tempdir().unwrap();
    let owner_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["*.localhost".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let owner_cert = params.self_signed(&owner_key).unwrap();
    let cert_path = dir.path().join("owner.pem");
    std::fs::write(&cert_path, owner_cert.pem()).unwrap();
    let node = Node::start(&package, Tls::Owner(cert_path), |_| {});
    let initializing = node.expect(AppStatus::Initializing);
    let ratls = node.capture_certificate();
    let expected = expected_fingerprint(
        &node,
        &package,
        TlsMode::Owner {
            certificate_sha256: Sha256::digest(owner_cert.der()).into(),
        },
    );
    assert_eq!(
        initializing.fingerprint.as_deref(),
        Some(hex::encode(expected).as_str())
    );
    assert!(verify_certificate(&ratls, &policy(expected), Err(NO_COLLATERAL), Utc::now()).verified);

    let missing = node.configure(
        &ratls,
        &node.config_body(&package.key, serde_json::json!({})),
    );
    assert_eq!(missing.status, 422, "{}", missing.text());
    assert!(missing.text().contains("ssl_private_key is required"));
    let other = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let mismatched = node.configure(
        &ratls,
        &node.config_body(&package.key, serde_json::json!({"ssl_private_key": other})),
    );
    assert_eq!(mismatched.status, 422, "{}", mismatched.text());
    assert!(mismatched.text().contains("does not match"));
    node.assert_waiting(&ratls);

    let body = node.config_body(
        &package.key,
        serde_json::json!({"ssl_private_key": owner_key.serialize_pem()}),
    );
    assert_eq!(node.configure(&ratls, &body).status, 200);
    node.expect(AppStatus::Running);
    let pinned = Arc::new(mse_attest::pin::client_config(
        owner_cert.der(),
        &[b"http/1.1"],
    ));
    let hello = https(node.addr, &node.domain, pinned, &get("/", &node.domain));
    assert_eq!((hello.status, hello.text().as_str()), (200, "Hello world"));
    assert!(!node.log().contains("PRIVATE KEY"), "keys are never logged");
}

#[test]
fn no_ssl_mode_serves_plain_http_after_an_ratls_configuration_and_stops_at_expiry() {
    let package = scaffold();
    let expiry = DateTime::from_timestamp(Utc::now().timestamp() + 30, 0).unwrap();
    let mut node = Node::start(&package, Tls::Plain(expiry), |_| {});
    let initializing = node.expect(AppStatus::Initializing);
    let ratls = node.capture_certificate();
    let expected = expected_fingerprint(&node, &package, TlsMode::Operator { expires_at: expiry });
    assert_eq!(
        initializing.fingerprint.as_deref(),
        Some(hex::encode(expected).as_str())
    );
    assert!(verify_certificate(&ratls, &policy(expected), Err(NO_COLLATERAL), Utc::now()).verified);
    let accepted = node.configure(
        &ratls,
        &node.config_body(&package.key, serde_json::json!({})),
    );
    assert_eq!(accepted.status, 200);
    let running = node.expect(AppStatus::Running);
    let hello = http(node.addr, &get("/", &node.domain));
    assert_eq!((hello.status, hello.text().as_str()), (200, "Hello world"));

    let stopped = node.expect(AppStatus::Stopped);
    assert_eq!(stopped.reason.as_deref(), Some("expired"));
    assert!(Utc::now() >= expiry);
    assert!(node.wait_exit().success());
    assert!(!process_exists(running.pid.unwrap()));
}

/// Flips one byte inside the first encrypted file of a package.
fn tamper(code: &Path) {
    let mut tar = std::fs::read(code).unwrap();
    let mut offset = 0;
    loop {
        let header = &tar[offset..offset + 512];
        let name = String::from_utf8_lossy(&header[..100])
            .trim_end_matches('\0')
            .to_string();
        let size_text = String::from_utf8_lossy(&header[124..136])
            .trim_matches(|c: char| c == '\0' || c == ' ')
            .to_string();
        let size = usize::from_str_radix(&size_text, 8).unwrap_or(0);
        if name.ends_with(".enc") && size > 40 {
            tar[offset + 512 + 40] ^= 1;
            break;
        }
        offset += 512 + size.div_ceil(512) * 512;
        assert!(
            offset + 512 <= tar.len(),
            "no encrypted file in the package"
        );
    }
    std::fs::write(code, tar).unwrap();
}

#[test]
fn every_refused_configuration_keeps_the_node_waiting_until_its_timeout() {
    let package = scaffold();
    tamper(&package.code);
    let mut node = Node::start(&package, Tls::SelfSigned(in_an_hour()), |l| {
        l.timeouts.config = Some(Duration::from_secs(20));
    });
    node.expect(AppStatus::Initializing);
    let cert = node.capture_certificate();
    let key = package.key.to_hex();
    let other_key = CodeKey::generate().to_hex();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "wrong uuid",
            serde_json::json!({"uuid": "0", "code_secret_key": key})
                .to_string()
                .into_bytes(),
            401,
        ),
        ("not JSON", b"{uuid".to_vec(), 400),
        (
            "unknown field",
            node.config_body(&package.key, serde_json::json!({"extra": 1})),
            400,
        ),
        (
            "short key",
            serde_json::json!({"uuid": node.uuid, "code_secret_key": "abcd"})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "secrets not an object",
            node.config_body(&package.key, serde_json::json!({"app_secrets": [1]})),
            400,
        ),
        (
            "private key without owner certificate",
            node.config_body(&package.key, serde_json::json!({"ssl_private_key": "x"})),
            400,
        ),
        (
            "wrong key",
            serde_json::json!({"uuid": node.uuid, "code_secret_key": other_key})
                .to_string()
                .into_bytes(),
            422,
        ),
        (
            "tampered package",
            node.config_body(&package.key, serde_json::json!({})),
            422,
        ),
    ];
    for (what, body, status) in cases {
        let answer = node.configure(&cert, &body);
        assert_eq!(answer.status, status, "{what}: {}", answer.text());
        let error: mse_api::config::ConfigAnswer = serde_json::from_slice(&answer.body).unwrap();
        assert!(error.error.is_some(), "{what}: the answer says why");
        node.assert_waiting(&cert);
        assert!(
            !node.work.join("app").exists(),
            "{what}: nothing decrypted is left"
        );
    }
    let log = node.log();
    assert!(
        !log.contains(&key) && !log.contains(&other_key),
        "keys are never logged"
    );

    // A stranger's words never reach the log: an unknown field whose name
    // forges the runtime's own lines is refused with a fixed reason, and a
    // flood of refusals is noted a bounded number of times.
    let forged = "[mse-run] sandbox: UNSANDBOXED";
    let body = format!(
        "{{\"uuid\": \"{}\", \"code_secret_key\": \"{key}\", \"x\\n{forged}\\n[mse-run] configuration accepted\": 1}}",
        node.uuid
    );
    for _ in 0..(mse_api::config::MAX_REFUSAL_NOTES + 8) {
        assert_eq!(node.configure(&cert, body.as_bytes()).status, 400);
    }
    let log = node.log();
    assert!(!log.contains(forged), "{log}");
    assert!(!log.contains("configuration accepted"), "{log}");
    let refusals = log.matches("configuration refused").count();
    assert_eq!(
        refusals,
        mse_api::config::MAX_REFUSAL_NOTES as usize,
        "{log}"
    );
    assert!(log.contains("further refused configurations are not noted"));
    assert!(
        log.contains("[mse-run] sandbox: landlock"),
        "the runtime's lines stay: {log}"
    );

    let error = node.expect(AppStatus::OnError);
    assert!(error
        .reason
        .unwrap()
        .contains("no valid configuration arrived within 20 s"));
    assert_eq!(node.wait_exit().code(), Some(1));
}

#[test]
fn a_package_with_no_encrypted_file_accepts_no_key_and_the_node_keeps_waiting() {
    let package = package(&[("requirements.txt", "flask\n")]);
    let node = Node::start(&package, Tls::SelfSigned(in_an_hour()), |l| {
        l.timeouts.config = Some(Duration::from_secs(60));
    });
    node.expect(AppStatus::Initializing);
    let cert = node.capture_certificate();
    for key in [package.key.clone(), CodeKey::generate()] {
        let answer = node.configure(&cert, &node.config_body(&key, serde_json::json!({})));
        assert_eq!(answer.status, 422, "{}", answer.text());
        assert!(
            answer.text().contains("no encrypted file"),
            "{}",
            answer.text()
        );
        node.assert_waiting(&cert);
        assert!(!node.work.join("app").exists(), "nothing is unpacked");
    }
}

const ASGI_APP: &str = r#"
"""A raw ASGI app (no framework), with a package from requirements.txt."""
import json, os, stat

import six  # from requirements.txt


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/secrets":
        path = os.environ["SECRETS_PATH"]
        with open(path) as f:
            secrets = json.load(f)
        body = json.dumps({
            "secrets": secrets,
            "mode": oct(stat.S_IMODE(os.stat(path).st_mode)),
            "home": os.environ["HOME"],
            "module_path": os.environ["MODULE_PATH"],
            "tmp_path": os.environ["TMP_PATH"],
            "cwd": os.getcwd(),
            "six": six.__version__,
        }).encode()
    else:
        body = b"ok"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
"#;

#[test]
fn an_asgi_app_gets_its_secrets_requirements_and_environment() {
    let package = package(&[("app.py", ASGI_APP), ("requirements.txt", "six==1.16.0\n")]);
    let mut node = Node::start(&package, Tls::SelfSigned(in_an_hour()), |_| {});
    let secrets = serde_json::json!({"api_token": "s3cr3t-value", "nested": {"n": 1}});
    let cert = node.configure_ok(&package, serde_json::json!({"app_secrets": secrets}));
    node.expect(AppStatus::Running);

    let seen = node.get_json(&cert, "/secrets");
    assert_eq!(seen["secrets"], secrets);
    assert_eq!(seen["mode"], "0o600");
    assert_eq!(seen["six"], "1.16.0");
    let home = Path::new(seen["home"].as_str().unwrap());
    assert_eq!(
        Path::new(seen["module_path"].as_str().unwrap()),
        node.work.join("app")
    );
    assert_eq!(seen["cwd"], seen["module_path"]);
    assert!(Path::new(seen["tmp_path"].as_str().unwrap()).is_dir());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(node.work.join("app"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the code folder is private");
    }
    // The shared install is the node's and read-only for every app, whoever
    // installed it first.
    {
        use std::os::unix::fs::MetadataExt;
        let requirements = mse_testkit::runtime_cache_dir().join("requirements");
        let site = std::fs::read_dir(&requirements)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|dir| {
                std::fs::read_to_string(dir.join("requirements.txt"))
                    .ok()
                    .as_deref()
                    == Some("six==1.16.0\n")
            })
            .expect("the install of requirements.txt")
            .join("site");
        let node_uid = std::fs::metadata(&requirements).unwrap().uid();
        let files = mse_testkit::files_under(&site);
        assert!(!files.is_empty());
        for path in files.iter().chain([&site]) {
            let meta = std::fs::symlink_metadata(path).unwrap();
            assert_eq!(meta.uid(), node_uid, "{} is the node's", path.display());
            assert_eq!(
                meta.mode() & 0o022,
                0,
                "{} is writable by others",
                path.display()
            );
        }
    }
    assert!(
        !node.log().contains("s3cr3t-value"),
        "secrets are never logged"
    );
    node.stop();
    assert!(!home.exists(), "secrets are removed when the app stops");
}

#[test]
fn an_app_that_fails_at_import_is_on_error_with_its_traceback() {
    let package = package(&[(
        "app.py",
        "from flask import Flask\napp = Flask(__name__)\nraise RuntimeError('boom at import')\n",
    )]);
    let mut node = Node::start(&package, Tls::SelfSigned(in_an_hour()), |_| {});
    node.configure_ok(&package, serde_json::json!({}));
    let error = node.expect(AppStatus::OnError);
    assert!(error.reason.unwrap().contains("before it became healthy"));
    let log = node.log();
    assert!(
        log.contains("Traceback") && log.contains("RuntimeError: boom at import"),
        "{log}"
    );
    assert_eq!(node.wait_exit().code(), Some(1));
}

#[test]
fn a_health_check_route_the_app_lacks_fails_the_node_at_once() {
    let app = format!("{SCAFFOLD_APP}\n\n@app.post('/submit')\ndef submit():\n    return ''\n");
    let package = package(&[("app.py", &app)]);
    for (path, answer) in [
        ("/nope", "404 Not Found"),
        ("/submit", "405 Method Not Allowed"),
    ] {
        let mut node = Node::start(&package, Tls::SelfSigned(in_an_hour()), |l| {
            l.app.healthcheck = path.into();
            l.timeouts.health = Duration::from_secs(60);
        });
        node.configure_ok(&package, serde_json::json!({}));
        let configured = Instant::now();
        let error = node.expect(AppStatus::OnError);
        assert!(
            configured.elapsed() < Duration::from_secs(30),
            "not after the health timeout: {:?}",
            configured.elapsed()
        );
        let reason = error.reason.unwrap();
        assert_eq!(
            reason,
            format!(
                "health check GET {path} answered {answer}: `healthcheck_endpoint` in mse.toml \
                 must name a GET route of the app that answers 2xx"
            )
        );
        assert!(node.log().contains(&reason), "{}", node.log());
        assert_eq!(node.wait_exit().code(), Some(1));
    }
}

#[test]
fn an_unhealthy_app_is_polled_ever_more_gently_until_its_health_timeout() {
    let app = "from flask import Flask\napp = Flask(__name__)\n\n\n@app.get('/health')\ndef health():\n    return 'not yet', 503\n";
    let package = package(&[("app.py", app)]);
    let mut node = Node::start(&package, Tls::SelfSigned(in_an_hour()), |l| {
        l.timeouts.health = Duration::from_secs(8);
    });
    node.configure_ok(&package, serde_json::json!({}));
    let error = node.expect(AppStatus::OnError);
    assert!(
        error
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("did not answer /health within 8 s"),
        "{error:?}"
    );
    assert_eq!(node.wait_exit().code(), Some(1));
    // Polled every 200 ms, 8 s made 40 requests; backing off to 1 s, about 14.
    let log = node.log();
    let polls: Vec<&str> = log.lines().filter(|l| l.contains(" 503 ")).collect();
    assert!(
        (3..=20).contains(&polls.len()),
        "{} polls:\n{log}",
        polls.len()
    );
    assert!(
        polls
            .iter()
            .all(|l| l.contains("\"GET /health 1.1\" 503 ")
                && l.ends_with("\"mse-run health check\"")),
        "{log}"
    );
}

#[test]
fn an_app_that_crashes_while_running_is_on_error_with_its_traceback() {
    let app = format!(
        "{SCAFFOLD_APP}\n\n@app.get('/crash')\ndef crash():\n    import os, traceback\n    try:\n        raise RuntimeError('boom at runtime')\n    except RuntimeError:\n        traceback.print_exc()\n    os._exit(3)\n"
    );
    let package = package(&[("app.py", &app)]);
    let mut node = Node::start(&package, Tls::Plain(in_an_hour()), |_| {});
    node.configure_ok(&package, serde_json::json!({}));
    let running = node.expect(AppStatus::Running);
    let mut stream = TcpStream::connect(node.addr).unwrap();
    stream.write_all(&get("/crash", &node.domain)).unwrap();
    let error = node.expect(AppStatus::OnError);
    assert!(error.reason.unwrap().contains("stopped by itself"));
    assert!(node.log().contains("RuntimeError: boom at runtime"));
    assert_eq!(node.wait_exit().code(), Some(1));
    assert!(!process_exists(running.pid.unwrap()));
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message_before_anything_starts() {
    let package = scaffold();
    let dir = tempfile::tempdir().unwrap();
    let simulation = serde_json::json!({
        "provider": "simulation",
        "quote_key": dir.path().join("quote-key.pem"),
        "quote_chain": dir.path().join("quote-chain.pem"),
        "signer_key": dir.path().join("signer.pub"),
    });
    let ratls = |expiry: &str| serde_json::json!({"mode": "ratls", "expires_at": expiry});
    // The launch description on standard input.
    let launch_of = |image: &str, quotes: &serde_json::Value, tls: serde_json::Value| {
        serde_json::json!({
            "app": {"uuid": "u", "application": "app:app", "domain": "a.localhost",
                    "code": package.code},
            "runtime": {"image": image, "cache_dir": dir.path().join("cache")},
            "node": {"listen": "127.0.0.1:1", "work_dir": dir.path().join("work")},
            "quotes": quotes,
            "tls": tls,
        })
    };
    let base_with = |image: &str,
                     quotes: &serde_json::Value,
                     tls: serde_json::Value,
                     fingerprint_env: Option<&str>| {
        let launch = launch_of(image, quotes, tls);
        let mut command = Command::new(env!("CARGO_BIN_EXE_mse-run"));
        command
            .args(["--launch", "-"])
            .env_remove(mse_api::launch::GRAMINE_FINGERPRINT_ENV);
        if let Some(value) = fingerprint_env {
            command.env(mse_api::launch::GRAMINE_FINGERPRINT_ENV, value);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(launch.to_string().as_bytes()).unwrap();
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        assert!(output.stdout.is_empty(), "no status is reported");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let base = |image: &str, quotes: &serde_json::Value, tls: serde_json::Value| {
        base_with(image, quotes, tls, None)
    };
    let (code, err) = base(IMAGE, &simulation, ratls("2001-01-01T00:00:00Z"));
    assert_eq!(code, Some(2));
    assert!(err.contains("is past"), "{err}");
    let (code, err) = base(IMAGE, &simulation, ratls("in a while"));
    assert_eq!(code, Some(2));
    assert!(err.contains("RFC 3339"), "{err}");
    let gramine = serde_json::json!({"provider": "gramine", "attestation_root": "/nonexistent"});
    let (code, err) = base(IMAGE, &gramine, ratls("2099-01-01T00:00:00Z"));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("no attestation device at /nonexistent"),
        "{err}"
    );
    // A Gramine enclave whose manifest set no fingerprint, or another app's:
    // refused before any quote is asked for.
    let device = dir.path().join("attestation");
    std::fs::create_dir_all(&device).unwrap();
    for file in ["quote", "user_report_data"] {
        std::fs::write(device.join(file), b"").unwrap();
    }
    let gramine = serde_json::json!({"provider": "gramine", "attestation_root": device});
    let (code, err) = base(IMAGE, &gramine, ratls("2099-01-01T00:00:00Z"));
    assert_eq!(code, Some(2));
    assert!(err.contains("loader.env.MSE_FINGERPRINT"), "{err}");
    let (code, err) = base_with(
        IMAGE,
        &gramine,
        ratls("2099-01-01T00:00:00Z"),
        Some(&"00".repeat(32)),
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains(&format!("built for the fingerprint {}", "00".repeat(32)))
            && err.contains("refusing"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(device.join("user_report_data")).unwrap(),
        b"",
        "no quote was asked for"
    );
    // `--fingerprint` prints the app's own, the one the enclave must be
    // built for, and starts nothing.
    let own = err
        .split("this app's ")
        .nth(1)
        .and_then(|rest| rest.get(..64))
        .unwrap()
        .to_string();
    let launch = launch_of(IMAGE, &gramine, ratls("2099-01-01T00:00:00Z"));
    let launch_file = dir.path().join("launch.json");
    std::fs::write(&launch_file, launch.to_string()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mse-run"))
        .arg("--launch")
        .arg(&launch_file)
        .arg("--fingerprint")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), own);
    assert!(!dir.path().join("work").exists(), "nothing was prepared");
    let no_key = serde_json::json!({"provider": "simulation"});
    let (code, err) = base(IMAGE, &no_key, ratls("2099-01-01T00:00:00Z"));
    assert_eq!(code, Some(2));
    assert!(err.contains("quotes: missing field `quote_key`"), "{err}");
    let (code, err) = base(
        "docker.io/other:1",
        &simulation,
        ratls("2099-01-01T00:00:00Z"),
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("not in the runtime catalog"), "{err}");
    let mut typo = ratls("2099-01-01T00:00:00Z");
    typo["expiry"] = "2099-01-01T00:00:00Z".into();
    let (code, err) = base(IMAGE, &simulation, typo);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown field `expiry`"), "{err}");
    assert!(!dir.path().join("work").exists(), "nothing was created");
}

#[test]
fn the_app_server_dies_with_a_killed_runtime() {
    let package = scaffold();
    let mut node = Node::start(&package, Tls::Plain(in_an_hour()), |_| {});
    node.configure_ok(&package, serde_json::json!({}));
    let pid = node.expect(AppStatus::Running).pid.unwrap();
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    wait::until(
        "no process of the app's group is left",
        Duration::from_secs(30),
        || mse_testkit::live_group_members(pid).is_empty(),
    );
}

/// An app that says who it runs as and tries what a hostile tenant would.
const PROBE_APP: &str = r#"import errno, os, resource, socket, ssl

from flask import Flask

app = Flask(__name__)


@app.route("/health")
def health():
    return ""


def attempt(action):
    try:
        action()
        return "allowed"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


@app.route("/probe")
def probe():
    with open("/tmp/probe.txt", "w") as f:
        f.write("in the app's own /tmp")
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "tmp_is_own": os.path.exists(os.path.join(os.environ["TMP_PATH"], "probe.txt")),
        "unix_socket": attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)),
        "diag_socket": attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)),
        "socketpair": attempt(lambda: socket.socketpair()),
        "chown_own": attempt(lambda: os.chown("/tmp/probe.txt", os.getuid(), os.getgid())),
        "setuid_bit": attempt(lambda: os.chmod("/tmp/probe.txt", 0o4755)),
        "chmod_own": attempt(lambda: os.chmod("/tmp/probe.txt", 0o600)),
        "xattr": attempt(lambda: os.setxattr("/tmp/probe.txt", "user.mse", b"1")),
        "chmod_runtime": attempt(lambda: os.chmod(os.path.realpath(os.__file__), 0o777)),
        "list_root": attempt(lambda: os.listdir("/root")),
        "open_files": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


@app.route("/handshake/<int:port>")
def handshake(port):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw) as tls:
                return {"handshake": "ok", "version": tls.version()}
    except (OSError, ssl.SSLError) as e:
        return {"handshake": type(e).__name__}
"#;

#[test]
fn under_root_every_app_runs_as_a_uid_of_its_own_with_a_private_tmp_and_no_unix_socket() {
    if !mse_testkit::require(
        "under_root_every_app_runs_as_a_uid_of_its_own_with_a_private_tmp_and_no_unix_socket",
        running_as_root(),
    ) {
        return;
    }
    // The test runtime lives wherever the machine keeps it (under /root on
    // a machine whose Python is pyenv's): nothing is opened for the app.
    let package = package(&[("app.py", PROBE_APP)]);
    let mut node = Node::start(&package, Tls::SelfSigned(in_an_hour()), |_| {});
    let uid = mse_run::sandbox::app_uid(&node.uuid);
    let secrets = serde_json::json!({"k": "v"});
    let event = node.expect(AppStatus::Initializing);
    let sandbox = event.sandbox.unwrap_or_default();
    assert!(
        sandbox.starts_with("landlock ABI")
            && sandbox.contains("seccomp")
            && sandbox.contains(&format!("uid {uid}, private /tmp")),
        "{sandbox}"
    );
    let cert = node.configure_waiting_ok(&package, serde_json::json!({"app_secrets": secrets}));
    node.expect(AppStatus::Running);
    let seen = node.get_json(&cert, "/probe");
    assert_ne!(seen["uid"], 0, "{seen}");
    assert_eq!(seen["uid"], uid, "{seen}");
    assert_eq!(seen["gid"], uid, "{seen}");
    assert_eq!(
        seen["groups"],
        serde_json::json!([]),
        "no supplementary group"
    );
    assert_eq!(
        seen["tmp_is_own"], true,
        "/tmp is the app's own folder: {seen}"
    );
    assert_eq!(seen["unix_socket"], "EPERM", "{seen}");
    assert_eq!(seen["diag_socket"], "EPERM", "{seen}");
    assert_eq!(
        seen["socketpair"], "allowed",
        "asyncio needs socketpair: {seen}"
    );
    assert_eq!(seen["chown_own"], "EPERM", "{seen}");
    assert_eq!(seen["setuid_bit"], "EPERM", "{seen}");
    assert_eq!(seen["chmod_own"], "allowed", "its own files: {seen}");
    assert_eq!(seen["xattr"], "EPERM", "{seen}");
    assert_ne!(
        seen["chmod_runtime"], "allowed",
        "the shared runtime: {seen}"
    );
    assert_ne!(seen["list_root"], "allowed", "{seen}");
    assert_eq!(
        seen["open_files"],
        mse_run::limits::OPEN_FILES,
        "the default cap: {seen}"
    );
    {
        use std::os::unix::fs::MetadataExt;
        let secrets = std::fs::metadata(node.work.join("home/.cache/mse/secrets.json")).unwrap();
        assert_eq!((secrets.uid(), secrets.mode() & 0o777), (uid, 0o600));
    }
    // What the app wrote in /tmp is in its own temporary folder, gone at stop.
    assert!(node.work.join("tmp/probe.txt").exists());
    node.stop();
    assert!(!node.work.join("home").exists());
    assert!(!node.work.join("tmp").exists());
}

#[test]
fn another_apps_configuration_server_is_closed_to_an_app_on_the_same_host() {
    if !mse_testkit::require(
        "another_apps_configuration_server_is_closed_to_an_app_on_the_same_host",
        running_as_root(),
    ) {
        return;
    }
    // The victim waits for its configuration.
    let victim_package = scaffold();
    let victim = Node::start(&victim_package, Tls::SelfSigned(in_an_hour()), |_| {});
    victim.expect(AppStatus::Initializing);
    // The hostile tenant's app runs beside it.
    let package = package(&[("app.py", PROBE_APP)]);
    let hostile = Node::start(&package, Tls::SelfSigned(in_an_hour()), |_| {});
    let cert = hostile.configure_ok(&package, serde_json::json!({}));
    hostile.expect(AppStatus::Running);
    // It can make TLS connections (to its own server)...
    let own = hostile.get_json(&cert, &format!("/handshake/{}", hostile.addr.port()));
    assert_eq!(own["handshake"], "ok", "{own}");
    // ...but the victim's configuration server closes on it at once.
    let theirs = hostile.get_json(&cert, &format!("/handshake/{}", victim.addr.port()));
    assert_ne!(theirs["handshake"], "ok", "{theirs}");
    // The owner (or the proxy) still reaches it, and it still waits.
    let victim_cert = victim.capture_certificate();
    victim.assert_waiting(&victim_cert);
    victim.configure_waiting_ok(&victim_package, serde_json::json!({}));
    victim.expect(AppStatus::Running);
}

/// Whether this process runs as root, or why a test that needs it cannot run.
fn running_as_root() -> Result<(), String> {
    if mse_run::sandbox::running_as_root() {
        Ok(())
    } else {
        Err(
            "not running as root (only a node running as root gives apps a uid of their own)"
                .into(),
        )
    }
}

/// Whether this machine lets this process make cgroups, or why not.
fn cgroups_writable() -> Result<(), String> {
    cgroups_probe()
        .map_err(|why| format!("this machine offers no writable cgroup file system ({why})"))
}

fn cgroups_probe() -> Result<(), String> {
    let base = match mse_run::limits::detect()? {
        mse_run::limits::Hierarchy::V2(root) => root,
        mse_run::limits::Hierarchy::V1 { memory, .. } => {
            memory.ok_or("no memory cgroup controller")?
        }
    };
    let probe = base.join(format!("mse-probe-{:x}", rand_u128()));
    std::fs::create_dir(&probe).map_err(|e| format!("{}: {e}", probe.display()))?;
    let _ = std::fs::remove_dir(&probe);
    Ok(())
}

/// The folders of the cgroups of process `pid` that name `name`.
fn cgroup_dirs_of(pid: u32, name: &str) -> Vec<PathBuf> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    own.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            // `mse/<uuid>-<hash of the node's folder>`.
            let ours = path.rsplit_once('/').is_some_and(|(parent, last)| {
                parent.ends_with("/mse") && last.starts_with(&format!("{name}-"))
            });
            if !ours {
                return None;
            }
            let mount = if controllers.is_empty() {
                PathBuf::from("/sys/fs/cgroup")
            } else {
                Path::new("/sys/fs/cgroup").join(controllers)
            };
            Some(mount.join(path.trim_start_matches('/')))
        })
        .collect()
}

#[test]
fn an_app_over_its_memory_limit_is_killed_within_it_it_runs_and_its_cgroup_goes_at_the_end() {
    if !mse_testkit::require(
        "an_app_over_its_memory_limit_is_killed_within_it_it_runs_and_its_cgroup_goes_at_the_end",
        cgroups_writable(),
    ) {
        return;
    }
    let app = format!(
        "{SCAFFOLD_APP}\n\n@app.get('/alloc/<int:mb>')\ndef alloc(mb):\n    data = b'x' * (mb * 1024 * 1024)\n    return str(len(data))\n"
    );
    let package = package(&[("app.py", &app)]);
    let mut node = Node::start(&package, Tls::Plain(in_an_hour()), |l| {
        l.limits.memory_mb = std::num::NonZeroU64::new(160);
        l.limits.cores = std::num::NonZeroU32::new(1);
    });
    let initializing = node.expect(AppStatus::Initializing);
    let limits = initializing.limits.clone().unwrap_or_default();
    let asked = "memory 160 MB, 1 core, 80 processes, 4096 open files, disk 80 MB for home, \
                 80 MB for tmp";
    assert!(
        limits == format!("{asked} (cgroup v1)") || limits == format!("{asked} (cgroup v2)"),
        "{limits}"
    );
    node.configure_waiting_ok(&package, serde_json::json!({}));
    let pid = node.expect(AppStatus::Running).pid.unwrap();

    // The app server runs in its own cgroup, with the limits asked for.
    let dirs = cgroup_dirs_of(pid, &node.uuid);
    assert!(
        !dirs.is_empty(),
        "the app server is in no cgroup of its own"
    );
    let read = |name: &str| {
        dirs.iter()
            .find_map(|d| std::fs::read_to_string(d.join(name)).ok())
            .map(|s| s.trim().to_string())
    };
    let memory = read("memory.limit_in_bytes").or_else(|| read("memory.max"));
    assert_eq!(memory, Some((160u64 * 1024 * 1024).to_string()));
    let cpu =
        read("cpu.cfs_quota_us").or_else(|| read("cpu.max").map(|m| m.replace(" 100000", "")));
    assert_eq!(cpu.as_deref(), Some("100000"));
    assert_eq!(read("pids.max").as_deref(), Some("80"));

    // Within the limit, the app answers.
    let within = http(node.addr, &get("/alloc/16", &node.domain));
    assert_eq!(
        (within.status, within.text()),
        (200, (16 * 1024 * 1024).to_string())
    );
    // Past it, the kernel kills the app server.
    let mut stream = TcpStream::connect(node.addr).unwrap();
    stream.write_all(&get("/alloc/1024", &node.domain)).unwrap();
    let error = node.expect(AppStatus::OnError);
    assert!(
        error
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("stopped by itself"),
        "{error:?}"
    );
    assert_eq!(node.wait_exit().code(), Some(1));
    for dir in &dirs {
        assert!(!dir.exists(), "the cgroup {} is left", dir.display());
    }
}

/// An app that starts threads and writes bytes until the kernel says no.
const GREEDY_APP: &str = r#"import errno, os, threading, time

from flask import Flask

app = Flask(__name__)
stop = threading.Event()


@app.route("/health")
def health():
    return ""


@app.route("/threads/<int:n>")
def threads(n):
    started = 0
    try:
        for _ in range(n):
            threading.Thread(target=stop.wait, daemon=True).start()
            started += 1
    except RuntimeError:
        pass
    stop.set()
    return {"started": started}


@app.route("/fill/<where>/<int:mb>")
def fill(where, mb):
    folder = os.environ["HOME"] if where == "home" else "/tmp"
    written = 0
    try:
        with open(os.path.join(folder, "fill.bin"), "wb") as f:
            for _ in range(mb):
                f.write(b"x" * (1024 * 1024))
                f.flush()
                written += 1
    except OSError as e:
        return {"written_mb": written, "error": errno.errorcode.get(e.errno)}
    finally:
        os.remove(os.path.join(folder, "fill.bin"))
    return {"written_mb": written, "error": None}
"#;

#[test]
fn an_app_cannot_start_more_processes_or_write_more_bytes_than_its_limits() {
    if !mse_testkit::require(
        "an_app_cannot_start_more_processes_or_write_more_bytes_than_its_limits",
        cgroups_writable(),
    ) {
        return;
    }
    let package = package(&[("app.py", GREEDY_APP)]);
    let mut node = Node::start(&package, Tls::Plain(in_an_hour()), |l| {
        l.limits.memory_mb = std::num::NonZeroU64::new(256);
        l.limits.cores = std::num::NonZeroU32::new(1);
    });
    node.configure_ok(&package, serde_json::json!({}));
    node.expect(AppStatus::Running);
    let get_json = |path: &str| {
        let answer = http(node.addr, &get(path, &node.domain));
        assert_eq!(answer.status, 200, "{}", answer.text());
        serde_json::from_slice::<serde_json::Value>(&answer.body).unwrap()
    };
    // 128 processes and threads at most (256 MB): asking for 1,000 threads
    // gets fewer than that.
    let threads = get_json("/threads/1000");
    let started = threads["started"].as_u64().unwrap();
    assert!((1..128).contains(&started), "{threads}");
    // 128 MB each for the home and /tmp: 200 MB do not fit, 16 MB do.
    for place in ["home", "tmp"] {
        let over = get_json(&format!("/fill/{place}/200"));
        assert_eq!(over["error"], "ENOSPC", "{place}: {over}");
        assert!(
            over["written_mb"].as_u64().unwrap() <= 128,
            "{place}: {over}"
        );
        let within = get_json(&format!("/fill/{place}/16"));
        assert_eq!(
            within["error"],
            serde_json::Value::Null,
            "{place}: {within}"
        );
    }
    // Still serving.
    assert_eq!(http(node.addr, &get("/health", &node.domain)).status, 200);
    node.stop();
}

#[test]
fn without_limits_the_status_says_the_app_is_unlimited() {
    let package = scaffold();
    let mut node = Node::start(&package, Tls::Plain(in_an_hour()), |_| {});
    let initializing = node.expect(AppStatus::Initializing);
    assert_eq!(
        initializing.limits.as_deref(),
        Some("UNLIMITED: the launch description names no memory or cores")
    );
    node.stop();
}
