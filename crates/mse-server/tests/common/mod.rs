//! Helpers of the mse-server tests: a platform in a temporary data folder,
//! driven in-process.

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

pub struct Platform {
    pub dir: tempfile::TempDir,
    pub router: Router,
    pub state: mse_server::api::Shared,
    pub admin: String,
}

pub fn settings(data_dir: &std::path::Path) -> mse_server::Settings {
    mse_server::Settings {
        data_dir: data_dir.to_path_buf(),
        database_url: None,
        base_domain: "localhost".to_string(),
        mse_run: mse_testkit::workspace_binary("mse-run"),
        cache_dir: mse_testkit::runtime_cache_dir(),
        nodes_dir: data_dir.with_extension("nodes"),
        quote_provider: "simulation".to_string(),
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
    let (state, token) = mse_server::open(&settings).await.unwrap();
    Platform {
        dir,
        router: mse_server::api::router(state.clone()),
        state,
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
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            let (status, app) = self.get(&format!("/apps/{id}"), token).await;
            assert_eq!(status, StatusCode::OK, "{app}");
            if done(&app) {
                return app;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting until {what}: {app}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
