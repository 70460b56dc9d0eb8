//! Helpers of the mse-server tests: a platform in a temporary data folder,
//! driven in-process, and raw HTTP to a real `mse-server` process
//! ([`mse_testkit::platform::Server`]).

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use mse_testkit::wait;
use serde_json::{json, Value};
use tower::ServiceExt;

pub struct Platform {
    pub dir: tempfile::TempDir,
    pub router: Router,
    pub state: mse_server::state::Shared,
    /// Its node runner.
    pub runner: mse_server::roles::runner::Runner,
    pub admin: String,
}

pub fn settings(data_dir: &std::path::Path) -> mse_server::Settings {
    mse_server::Settings {
        data_dir: data_dir.to_path_buf(),
        database_url: None,
        base_domain: "localhost".to_string(),
        mse_run: mse_testkit::workspace_binary("mse-run"),
        cache_dir: mse_testkit::runtime_cache_dir(),
        installer: mse_runtime::Installer::Uv(mse_testkit::python_bin_dir().join("uv")),
        nodes_dir: data_dir.with_extension("nodes"),
        tee: Default::default(),
        node_options: Default::default(),
        // Room for many apps of one core on this small machine.
        capacity: mse_api::node::Capacity {
            memory_mb: 1 << 20,
            cores: 1024,
        },
        lease_secs: 30,
        acme: None,
        max_token_lifetime: None,
        recovery: None,
    }
}

pub async fn platform() -> Platform {
    platform_on(None).await
}

/// A platform whose store is at `database_url` (SQLite in its folder when `None`).
pub async fn platform_on(database_url: Option<String>) -> Platform {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&dir.path().join("data"));
    settings.database_url = database_url;
    let mse_server::Opened {
        state,
        runner,
        admin_token: token,
    } = mse_server::open(&settings).await.unwrap();
    Platform {
        dir,
        router: mse_server::api::router(state.clone()),
        state,
        runner,
        admin: token.expect("a first start creates the admin token"),
    }
}

impl Platform {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// A new non-admin user; returns (id, token).
    pub async fn user(&self, name: &str) -> (String, String) {
        let (status, body) = self
            .post("/users", &self.admin, json!({"name": name}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["id"].as_str().unwrap().to_string(),
            body["token"].as_str().unwrap().to_string(),
        )
    }
}

pub const IMAGE: &str = "ghcr.io/cosmian/mse-flask:20230124182826";
const SCAFFOLD_APP: &str = include_str!("../../../mse-cli/templates/scaffold/mse_src/app.py");

/// The scaffolded app, encrypted: (code.tar bytes, key).
pub fn scaffold_package() -> (Vec<u8>, mse_package::CodeKey) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.py"), SCAFFOLD_APP).unwrap();
    let key = mse_package::CodeKey::generate();
    let mut out = Vec::new();
    mse_package::pack(dir.path(), &key, mse_package::Nonces::Random, &mut out).unwrap();
    (out, key)
}

/// A deployment config of the scaffolded app, with `changes` merged in.
pub fn deploy_config(name: &str, changes: Value) -> Value {
    let mut config = json!({
        "name": name,
        "project": "default",
        "resource": "free",
        "docker": IMAGE,
        "python_application": "app:app",
        "healthcheck_endpoint": "/health",
    });
    if let Value::Object(changes) = changes {
        for (k, v) in changes {
            if v.is_null() {
                config.as_object_mut().unwrap().remove(&k);
            } else {
                config[k] = v;
            }
        }
    }
    config
}

const BOUNDARY: &str = "mse-test-boundary-7d1f";

/// The content type of a body made by [`multipart`].
pub fn multipart_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// A multipart body with the given parts (name, bytes).
pub fn multipart(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

impl Platform {
    /// `POST /apps` with a raw multipart body.
    pub async fn deploy_raw(&self, token: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/apps")
            .header("authorization", format!("Bearer {token}"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(Body::from(body))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// `POST /apps` of `config` with the scaffolded app.
    pub async fn deploy(&self, token: &str, config: Value) -> (StatusCode, Value) {
        let (code, _) = scaffold_package();
        let config = config.to_string();
        self.deploy_raw(
            token,
            multipart(&[("config", config.as_bytes()), ("code", &code)]),
        )
        .await
    }

    /// Stops an app (202) and waits until it is `stopped`.
    pub async fn stop_app(&self, token: &str, id: &str) -> Value {
        let (status, body) = self
            .post(&format!("/apps/{id}/stop"), token, json!({}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        self.wait_app(token, id, "stopped", |a| a["status"] == "stopped")
            .await
    }

    /// Polls an app until `done` holds (bounded), returning it.
    pub async fn wait_app(
        &self,
        token: &str,
        id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        wait::until_async(what, std::time::Duration::from_secs(300), async || {
            let (status, app) = self.get(&format!("/apps/{id}"), token).await;
            assert_eq!(status, StatusCode::OK, "{app}");
            if done(&app) {
                Ok(app)
            } else {
                Err(app)
            }
        })
        .await
    }
}

/// A platform in a temporary data folder whose process plays only `roles`
/// (as node `local` when it has the node role). Without the node role, a
/// node `parked` holds a lease that nobody serves: apps are placed on it and
/// stay `spawning`, and no node process starts.
pub async fn platform_as(roles: mse_server::Roles) -> Platform {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&dir.path().join("data"));
    let mse_server::Opened {
        state,
        runner,
        admin_token: token,
    } = mse_server::open_as(&settings, roles, mse_server::DEFAULT_NODE_ID)
        .await
        .unwrap();
    if !roles.node {
        park_a_node(&state.store).await;
    }
    Platform {
        dir,
        router: mse_server::api::router(state.clone()),
        state,
        runner,
        admin: token.expect("a first start creates the admin token"),
    }
}

/// Leases node `parked` for an hour, with room for any app.
pub async fn park_a_node(store: &mse_server::store::Store) {
    let now = chrono::Utc::now().timestamp();
    let holder = mse_server::domain::app::NodeHolder {
        id: "parked".into(),
        host: "nowhere".into(),
        pid: 0,
        started_at: now,
        seen_at: now,
    };
    assert!(store.take_node(&holder, None).await.unwrap());
    store
        .set_node_capacity("parked", 1 << 30, 1 << 16, Default::default(), 3600)
        .await
        .unwrap();
}

/// The bound on every wait of a process test.
pub const PROCESS_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// One HTTP/1.1 request to an API on the loopback: (status, JSON body, or
/// the body as a JSON string when it is not JSON).
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<(String, Vec<u8>)>,
) -> (u16, Value) {
    http_from([127, 0, 0, 1], port, method, path, token, body).await
}

/// [`http`] from the loopback address `source` (e.g. 127.0.0.2: another
/// client as the server sees it).
pub async fn http_from(
    source: [u8; 4],
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<(String, Vec<u8>)>,
) -> (u16, Value) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::from((source, 0)))
        .unwrap();
    let stream = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {token}"));
    let request = match body {
        Some((content_type, bytes)) => builder
            .header("content-type", content_type)
            .body(http_body_util::Full::new(bytes::Bytes::from(bytes))),
        None => builder.body(http_body_util::Full::new(bytes::Bytes::new())),
    }
    .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// `POST /apps` of the scaffolded app over HTTP with `config`.
pub async fn http_deploy(port: u16, token: &str, config: &Value) -> (u16, Value) {
    let (code, _) = scaffold_package();
    let config = config.to_string();
    let body = multipart(&[("config", config.as_bytes()), ("code", &code)]);
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    http(port, "POST", "/apps", token, Some((content_type, body))).await
}

/// Polls `GET /apps/{id}` over HTTP until `done` holds (bounded).
pub async fn http_wait_app(
    port: u16,
    token: &str,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait::until_async(what, PROCESS_WAIT, async || {
        let (status, app) = http(port, "GET", &format!("/apps/{id}"), token, None).await;
        assert_eq!(status, 200, "{app}");
        if done(&app) {
            Ok(app)
        } else {
            Err(app)
        }
    })
    .await
}

/// The certificate the TLS server at `addr` shows for server name `name`,
/// captured without trusting it.
pub async fn capture_certificate(addr: std::net::SocketAddr, name: &str) -> Vec<u8> {
    let (config, seen) = mse_attest::pin::capture_config(&[b"http/1.1"]);
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let _ = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, stream)
        .await
        .unwrap();
    seen.seen().unwrap()
}

/// One request over TLS to `addr` with server name `name`, pinned to
/// `cert` (the handshake fails on any other certificate): its status.
pub async fn pinned_request(
    addr: std::net::SocketAddr,
    name: &str,
    cert: &[u8],
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<StatusCode, std::io::Error> {
    let config = mse_attest::pin::client_config(cert, &[b"http/1.1"]);
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(server_name, stream)
        .await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", name)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)?;
    let status = response.status();
    let _ = response.into_body().collect().await;
    Ok(status)
}

impl Platform {
    /// Brings an app to `running` as its owner does: sends the code key
    /// (and, in owner mode, the private key) to its node, reached directly
    /// at the address its configuration domain routes to. Returns the app
    /// and the certificate its node serves.
    pub async fn configure(
        &self,
        token: &str,
        app: &Value,
        key: &mse_package::CodeKey,
        ssl_private_key: Option<&str>,
    ) -> (Value, Vec<u8>) {
        let id = app["id"].as_str().unwrap();
        self.wait_app(token, id, "initializing", |a| a["status"] == "initializing")
            .await;
        let config_domain = app["config_domain_name"].as_str().unwrap();
        let route = self.state.routes.get(config_domain).unwrap();
        let cert = capture_certificate(route.addr, config_domain).await;
        let mut body = json!({"uuid": id, "code_secret_key": key.to_hex(), "app_secrets": {}});
        if let Some(pem) = ssl_private_key {
            body["ssl_private_key"] = json!(pem);
        }
        let status = pinned_request(
            route.addr,
            config_domain,
            &cert,
            "POST",
            "/",
            body.to_string().into_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK, "the node took the configuration");
        let app = self
            .wait_app(token, id, "running", |a| a["status"] == "running")
            .await;
        (app, cert)
    }

    /// `POST /apps` of the scaffolded app with `config`, keeping its code
    /// key: (status, body, key).
    pub async fn deploy_keyed(
        &self,
        token: &str,
        config: Value,
    ) -> (StatusCode, Value, mse_package::CodeKey) {
        let (code, key) = scaffold_package();
        let config = config.to_string();
        let (status, body) = self
            .deploy_raw(
                token,
                multipart(&[("config", config.as_bytes()), ("code", &code)]),
            )
            .await;
        (status, body, key)
    }

    /// A proxy on a free loopback port over this platform's routes.
    pub async fn proxy(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(mse_server::roles::proxy::serve(
            listener,
            self.state.routes.clone(),
            None,
            mse_server::roles::proxy::ProxyLimits::default(),
            std::future::pending(),
        ));
        addr
    }
}

/// A self-signed owner certificate for `domain`: (chain PEM, key PEM,
/// certificate DER).
pub fn owner_certificate(domain: &str) -> (String, String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

/// A stored app of the scaffold's shape, on resource `free`, for tests that
/// write the store directly.
pub fn new_app(
    project_id: &str,
    name: &str,
    origin: mse_server::domain::lifecycle::CertificateOrigin,
    created_at: i64,
) -> mse_server::domain::app::NewApp {
    let id = mse_server::store::new_id();
    mse_server::domain::app::NewApp {
        project_id: project_id.to_string(),
        domain: format!("{id}.localhost"),
        config_domain: format!("{id}.localhost"),
        id,
        spec: mse_server::domain::app::AppSpec {
            name: name.to_string(),
            resource: "free".into(),
            docker: IMAGE.into(),
            python_application: "app:app".into(),
            healthcheck_endpoint: "/health".into(),
            certificate_origin: origin,
            ssl_certificate: None,
            code_sha256: "00".repeat(32),
            code_bytes: 0,
            enclave_size: "1G".into(),
            storage_bytes: None,
        },
        created_at: chrono::DateTime::from_timestamp(created_at, 0).unwrap(),
        // Far in the future: never expires in a test.
        expires_at: chrono::DateTime::from_timestamp(8_000_000_000, 0).unwrap(),
    }
}
