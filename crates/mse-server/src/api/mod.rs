//! The REST API: JSON over HTTP, bearer tokens (stored hashed), every route
//! scoped to the caller. Another user's objects answer 404, as missing ones
//! do, so nothing leaks.
//!
//! The handlers live by resource in the modules below; this module is the
//! table that routes to them ([`operations`]) and documents them
//! ([`openapi`]), and the layers every route shares.

pub mod accounts;
pub mod apps;
pub mod catalog;
pub mod compat;
pub mod console;
pub mod hosts;
pub mod keys;
pub mod nodes;
pub mod platform;
pub mod tenancy;
pub mod tokens;
pub mod wire;

use std::sync::Arc;

use axum::handler::Handler;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use mse_api::account::Scope;
use serde_json::{json, Value};

use crate::domain::{bounds, quota};
use crate::state::{ApiError, Shared};

/// One operation of the API: how it is routed and how `/openapi.json`
/// documents it, from the same entry of [`operations`].
pub struct Operation {
    /// Its method.
    pub method: Method,
    /// Its path, with `{param}` segments.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Whether it needs a token.
    pub auth: bool,
    /// Its query parameters: name and JSON schema.
    pub query: Vec<(&'static str, Value)>,
    /// Its request body: media type and JSON schema.
    pub body: Option<(&'static str, Value)>,
    /// The largest request body it takes, bytes.
    pub body_limit: usize,
    route: MethodRouter<Shared>,
}

/// The largest JSON request body.
pub const MAX_JSON_BODY: usize = 2 * 1024 * 1024;

/// An operation served by `handler`; public, without parameters or body
/// until the builder methods add them.
fn op<H, T>(method: Method, path: &'static str, summary: &'static str, handler: H) -> Operation
where
    H: Handler<T, Shared>,
    T: 'static,
{
    // The table names standard methods only (a test serves every entry).
    let filter = MethodFilter::try_from(method.clone())
        .unwrap_or_else(|_| panic!("{method} is not a method axum routes"));
    Operation {
        method,
        path,
        summary,
        auth: false,
        query: Vec::new(),
        body: None,
        body_limit: MAX_JSON_BODY,
        route: on(filter, handler),
    }
}

impl Operation {
    /// Needs a token.
    fn token(mut self) -> Self {
        self.auth = true;
        self
    }

    /// Takes a JSON body of this schema.
    fn json(mut self, schema: Value) -> Self {
        self.body = Some(("application/json", schema));
        self
    }

    /// Takes a `multipart/form-data` body of this schema, of at most `limit` bytes.
    fn multipart(mut self, schema: Value, limit: usize) -> Self {
        self.body = Some(("multipart/form-data", schema));
        self.route = self
            .route
            .layer(axum::extract::DefaultBodyLimit::max(limit));
        self
    }

    /// Takes a raw body of at most `limit` bytes.
    fn bytes(mut self, limit: usize) -> Self {
        self.body = Some((
            "application/octet-stream",
            json!({"type": "string", "format": "binary"}),
        ));
        self.body_limit = limit;
        self
    }

    /// Takes an optional query parameter of this schema.
    fn query(mut self, name: &'static str, schema: Value) -> Self {
        self.query.push((name, schema));
        self
    }
}

/// A JSON object schema: required and optional properties, nothing else.
fn object(required: &[(&str, Value)], optional: &[(&str, Value)]) -> Value {
    let mut properties = serde_json::Map::new();
    for (name, schema) in required.iter().chain(optional) {
        properties.insert(name.to_string(), schema.clone());
    }
    let required: Vec<&str> = required.iter().map(|(name, _)| *name).collect();
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

fn text() -> Value {
    json!({"type": "string"})
}

/// Every operation the API serves. The router and the OpenAPI document are
/// both made from this list: adding a route is adding an entry here.
pub fn operations() -> Vec<Operation> {
    let get = Method::GET;
    let post = Method::POST;
    let delete = Method::DELETE;
    let put = Method::PUT;
    let named = || object(&[("name", text())], &[]);
    let new_token = || {
        object(
            &[("name", text())],
            &[
                (
                    "expires_in",
                    bounds::integer_schema(&bounds::TOKEN_LIFETIME_SECS),
                ),
                (
                    "scope",
                    json!({"type": "string", "enum": Scope::ALL.map(Scope::as_str)}),
                ),
            ],
        )
    };
    let count_or_null =
        |max: u64| json!({"type": ["integer", "null"], "minimum": 0, "maximum": max});
    vec![
        op(get.clone(), "/health", "Liveness of the API and its store (503 when the store does not answer)", platform::health),
        op(get.clone(), "/openapi.json", "This document", openapi_json),
        op(get.clone(), "/platform", "Where apps are served (base domain, proxy port) and how they are attested", platform::platform),
        op(get.clone(), "/catalog", "The image catalog: approved images and their locked environments (ETag: its digest)", catalog::get),
        op(get.clone(), "/signer", "The enclave-signing public key (PEM); MRSIGNER derives from it", platform::signer),
        op(get.clone(), "/simulation-ca", "The simulation CA certificate (PEM)", platform::simulation_ca),
        op(get.clone(), "/simulation-revoked", "The simulation quote keys the platform revoked: {\"revoked\": [SHA-256 of each PCK's SubjectPublicKeyInfo (DER), hex]}", platform::simulation_revoked),
        op(get.clone(), "/keys", "The key service: its domain (reached on the proxy port), the measurement its evidence must bind, its TEE and node, and whether it runs", keys::info),
        op(get.clone(), "/operator-ca", "The operator CA certificate (PEM), for --untrusted-ssl apps", platform::operator_ca),
        op(get.clone(), "/me", "The caller", accounts::me).token(),
        op(post.clone(), "/nodes/tokens", "Create a join token for a node host: how many hosts it joins, what it grants each; shown once (admin)", nodes::create_token)
            .token()
            .json(object(&[], &[
                ("ttl_hours", json!({"type": "integer", "minimum": 1, "maximum": 8760})),
                ("max_hosts", json!({"type": "integer", "minimum": 1, "maximum": mse_api::node::MAX_TOKEN_HOSTS})),
                ("max_memory_mb", json!({"type": "integer", "minimum": 1})),
                ("max_cores", json!({"type": "integer", "minimum": 1})),
                ("advertise", text()),
            ])),
        op(get.clone(), "/nodes/tokens", "Every join token (never its secret): its hosts, grant, expiry and whether it is usable (admin)", nodes::list_tokens).token(),
        op(delete.clone(), "/nodes/tokens/{id}", "Revoke a join token: it joins no host after (admin)", nodes::revoke_token).token(),
        op(get.clone(), "/nodes", "Every node: address, lease, capacity, use and apps (admin)", nodes::list).token(),
        op(post.clone(), "/nodes/join", "A node host joins with a join token (node protocol)", hosts::join)
            .json(object(
                &[("token", text()), ("name", text()), ("advertise", text()),
                  ("capacity", object(&[("memory_mb", json!({"type": "integer"})), ("cores", json!({"type": "integer"}))], &[])),
                  ("quote_key", text())],
                &[],
            )),
        op(post.clone(), "/nodes/lease", "A host renews its lease and learns what to start and stop (node credential)", hosts::lease)
            .token()
            .json(object(&[("running", json!({"type": "array", "items": {"type": "string"}}))], &[("wait_ms", json!({"type": "integer", "minimum": 0}))])),
        op(get.clone(), "/nodes/catalog", "The catalog file, for hosts (node credential)", hosts::catalog).token(),
        op(get.clone(), "/nodes/packages/{sha256}", "The encrypted package of an app placed on the calling host (node credential)", hosts::package).token(),
        op(post.clone(), "/nodes/events", "A status event of an app placed on the calling host (node credential)", hosts::event)
            .token()
            .json(object(&[("app", text()), ("event", json!({"type": "object"}))], &[])),
        op(get.clone(), "/nodes/storage/{app}", "The snapshot the platform holds of the persistent storage of an app placed on the calling host (node credential)", hosts::storage_head).token(),
        op(get.clone(), "/nodes/storage/{app}/blobs/{id}", "One encrypted blob of that storage (node credential)", hosts::storage_blob).token(),
        op(put.clone(), "/nodes/storage/{app}/blobs/{id}", "An encrypted blob of a snapshot being written back, named by its SHA-256 (node credential)", hosts::put_storage_blob)
            .token()
            .bytes(mse_api::node::MAX_STORAGE_BLOB),
        op(post.clone(), "/nodes/storage/{app}/head", "A written-back snapshot becomes the app's storage: a later version, every blob held (node credential)", hosts::commit_storage)
            .token()
            .json(object(&[("version", json!({"type": "integer", "minimum": 1})), ("manifest", text()), ("blobs", json!({"type": "array", "items": {"type": "string"}})), ("size", json!({"type": "integer", "minimum": 0}))], &[])),
        op(post.clone(), "/nodes/key-service", "The calling host runs a replica of the key service on this port (node credential)", keys::host_replica_started)
            .token()
            .json(object(&[("port", json!({"type": "integer", "minimum": 1, "maximum": 65535})), ("measurement", text()), ("credential_hash", text())], &[])),
        op(delete.clone(), "/nodes/key-service", "The calling host's replica of the key service ended (node credential)", keys::host_replica_ended).token(),
        op(post.clone(), "/nodes/logs/{app}", "The next bytes of an app's log (node credential)", hosts::logs)
            .token()
            .bytes(mse_api::node::MAX_LOG_CHUNK)
            .query("replace", json!({"type": "boolean"})),
        op(get.clone(), "/users", "Every user with the resources granted to it (admin)", accounts::list_users).token(),
        op(post.clone(), "/users", "Create a user and its first token (admin)", accounts::create_user)
            .token()
            .json(object(&[("name", text())], &[("admin", json!({"type": "boolean"}))])),
        op(post.clone(), "/nodes/{node}/revoke", "Revoke a node host: its quote keys stop verifying; a remote host is fenced (lease and credential end, apps on_error), gets no app and cannot join until allowed (admin)", nodes::revoke).token(),
        op(post.clone(), "/nodes/{node}/allow", "Let a revoked node host's name join again (admin)", nodes::allow).token(),
        op(post.clone(), "/nodes/{node}/drain", "Drain a node: nothing new is placed on it, and the apps the key service keeps start again on another node (admin)", nodes::drain).token(),
        op(delete.clone(), "/nodes/{node}/drain", "End a node's drain (admin)", nodes::undrain).token(),
        op(delete.clone(), "/nodes/{node}", "Remove a node host; its apps end first (admin)", nodes::remove).token(),
        op(post.clone(), "/users/{id}/grants", "Grant a resource to a user (admin)", accounts::grant)
            .token()
            .json(object(&[("resource", text())], &[])),
        op(post.clone(), "/users/{id}/disable", "Disable a user: its tokens are refused at once and its live apps stop (admin)", tokens::disable).token(),
        op(post.clone(), "/users/{id}/enable", "Enable a disabled user: its working tokens are accepted again (admin)", tokens::enable).token(),
        op(get.clone(), "/users/{id}/tokens", "A user's working tokens (admin)", tokens::list_of_user).token(),
        op(post.clone(), "/users/{id}/tokens", "Create a token for a user; its secret is shown once (admin)", tokens::create_for_user)
            .token()
            .json(new_token()),
        op(get.clone(), "/tokens", "The caller's working tokens: scope and expiry", tokens::list).token(),
        op(post.clone(), "/tokens", "Create a token, within the scope and lifetime of the calling one; its secret is shown once", tokens::create)
            .token()
            .json(new_token()),
        op(delete.clone(), "/tokens/{id}", "Revoke one of the caller's tokens (admin: anyone's)", tokens::revoke).token(),
        op(get.clone(), "/projects", "The caller's projects", accounts::list_projects).token(),
        op(post.clone(), "/projects", "Create a project", accounts::create_project)
            .token()
            .json(named()),
        op(get.clone(), "/projects/{name}", "One of the caller's projects", accounts::get_project).token(),
        op(get.clone(), "/resources", "The resources the caller may use", accounts::list_resources).token(),
        op(post.clone(), "/resources", "Create a resource (admin)", accounts::create_resource)
            .token()
            .json(bounds::resource_schema()),
        op(get.clone(), "/resources/{name}", "One resource the caller may use", accounts::get_resource).token(),
        op(put.clone(), "/resources/{name}/quota", "Set the most live apps on a resource, every user's together (admin)", tenancy::set_resource_quota)
            .token()
            .json(object(&[], &[("max_live_apps", count_or_null(quota::MAX_LIVE_APPS_BOUND as u64))])),
        op(get.clone(), "/users/{id}/quota", "A user's quota and use (admin, or the user itself)", tenancy::get_quota).token(),
        op(put.clone(), "/users/{id}/quota", "Set a user's quota of live apps and stored bytes (admin)", tenancy::set_quota)
            .token()
            .json(object(&[], &[
                ("max_live_apps", count_or_null(quota::MAX_LIVE_APPS_BOUND as u64)),
                ("max_stored_bytes", count_or_null(quota::MAX_STORED_BYTES_BOUND as u64)),
            ])),
        op(get.clone(), "/domains", "Custom domains and their owners (admin: all; user: its own)", tenancy::list_domains).token(),
        op(delete.clone(), "/domains/{name}", "Release a custom domain (admin)", tenancy::release_domain).token(),
        op(post.clone(), "/apps", "Deploy an app: its configuration and encrypted code", apps::create)
            .token()
            .multipart(
                json!({
                    "type": "object",
                    "properties": {
                        "config": {"type": "string", "description": "the deployment configuration (JSON)"},
                        "code": {"type": "string", "format": "binary", "description": "the encrypted code.tar"},
                    },
                    "required": ["config", "code"],
                }),
                apps::MAX_UPLOAD,
            ),
        op(get.clone(), "/apps", "The caller's apps, newest first", apps::list)
            .token()
            .query("project", text())
            .query("name", text())
            .query(
                "status",
                json!({"type": "string", "enum": ["spawning", "initializing", "running", "on_error", "stopped"]}),
            )
            .query("limit", json!({"type": "integer", "minimum": 0, "maximum": u32::MAX}))
            .query("offset", json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})),
        op(get.clone(), "/apps/{id}", "One of the caller's apps", apps::get).token(),
        op(delete, "/apps/{id}", "Remove a stopped or failed app", apps::remove).token(),
        op(post.clone(), "/apps/{id}/stop", "Stop an app (202 while its node stops)", apps::stop).token(),
        op(post.clone(), "/apps/{id}/keep-running", "Have the key service keep the app's keys: a single-use ticket (5 minutes) to hand it with them (docs/keys.md)", keys::keep_running).token(),
        op(post.clone(), "/keys/tickets/redeem", "Whose app a keep-running ticket is for, once (the key service's credential)", keys::redeem)
            .token()
            .json(object(&[("ticket", text())], &[])),
        op(get.clone(), "/keys/pending", "The apps restarted on another node whose keys the key service is to release (the key service's credential)", keys::pending).token(),
        op(post.clone(), "/keys/released", "What the key service did for a restarted app, noted for its owner (the key service's credential)", keys::released)
            .token()
            .json(object(&[("app_id", text()), ("released", json!({"type": "boolean"}))], &[("reason", text())])),
        op(get.clone(), "/keys/record", "A record the key service keeps, sealed under its root key (the key service's credential)", keys::get_record)
            .token()
            .query("name", text()),
        op(put.clone(), "/keys/record", "Store a record of the key service, sealed under its root key (the key service's credential)", keys::put_record)
            .token()
            .json(object(&[("name", text()), ("sealed", text())], &[])),
        op(get.clone(), "/keys/root", "The check value of the platform's root key, if a replica made it (the key service's credential)", keys::root).token(),
        op(post.clone(), "/keys/root", "The calling replica holds the root key of this check value (the key service's credential)", keys::claim_root)
            .token()
            .json(object(&[("check", text())], &[])),
        op(get.clone(), "/keys/recovery", "The holders the root key's recovery shares are sealed to, if any (the key service's credential)", keys::recovery).token(),
        op(get.clone(), "/keys/recovery-shares", "The root key's recovery shares, each sealed to its holder (admin)", keys::recovery_shares).token(),
        op(get.clone(), "/keys/replicas", "The other live replicas holding the platform's root key, the leader first (the key service's credential)", keys::replicas).token(),
        op(get, "/apps/{id}/logs", "The last 64 kB of the app's log (text)", apps::logs).token(),
    ]
}

/// The OpenAPI 3.1 document of [`operations`].
pub fn openapi() -> Value {
    let error = json!({
        "description": "`{\"error\": \"…\"}`",
        "content": {"application/json": {"schema": object(&[("error", text())], &[])}},
    });
    let mut paths = serde_json::Map::new();
    for operation in operations() {
        let entry = paths
            .entry(operation.path.to_string())
            .or_insert_with(|| json!({}));
        let mut parameters: Vec<Value> = operation
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": text()}))
            .collect();
        parameters.extend(
            operation
                .query
                .iter()
                .map(|(name, schema)| json!({"name": name, "in": "query", "required": false, "schema": schema})),
        );
        let mut document = json!({
            "summary": operation.summary,
            "responses": {"2XX": {"description": "success"}, "default": error.clone()},
        });
        if !parameters.is_empty() {
            document["parameters"] = Value::Array(parameters);
        }
        if let Some((media, schema)) = &operation.body {
            document["requestBody"] =
                json!({"required": true, "content": {*media: {"schema": schema}}});
        }
        if operation.auth {
            document["security"] = json!([{"bearer": []}]);
        }
        entry[operation.method.as_str().to_ascii_lowercase()] = document;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "MSE-rs control plane", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    })
}

async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(openapi)).into_response()
}

/// The API's router: every entry of [`operations`], a JSON 404 for any
/// other path, a 400 for a query parameter an entry does not declare, and
/// every error answered as `{"error": "…"}`.
pub fn router(state: Shared) -> Router {
    operations()
        .into_iter()
        .fold(Router::new(), |router, operation| {
            let limit = operation.body_limit;
            let declared: Arc<[&'static str]> =
                operation.query.iter().map(|(name, _)| *name).collect();
            let route = operation
                .route
                .layer(axum::extract::DefaultBodyLimit::max(limit))
                .layer(axum::middleware::map_request(
                    move |request: axum::extract::Request| async move {
                        refuse_oversized(request, limit)
                    },
                ))
                .layer(axum::middleware::map_request(
                    move |request: axum::extract::Request| {
                        let declared = declared.clone();
                        async move { refuse_unknown_query(request, &declared) }
                    },
                ));
            router.route(operation.path, route)
        })
        .merge(console::router())
        .merge(compat::router())
        .fallback(|| async { ApiError::not_found("no such route; see /openapi.json") })
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// The longest part of an unknown query parameter's name an answer repeats.
const MAX_ECHOED_NAME: usize = 64;

/// Answers 400 to a request whose query names a parameter its operation
/// does not declare (`declared`), rather than ignoring it: a client's typo
/// or a guess at a hidden filter (`?user=`) is told, not silently served
/// something else. A query that does not parse is the handler's to refuse.
fn refuse_unknown_query(
    request: axum::extract::Request,
    declared: &[&str],
) -> Result<axum::extract::Request, ApiError> {
    let Some(query) = request.uri().query() else {
        return Ok(request);
    };
    let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) else {
        return Ok(request);
    };
    let Some((unknown, _)) = pairs
        .iter()
        .find(|(name, _)| !declared.contains(&name.as_str()))
    else {
        return Ok(request);
    };
    let shown: String = unknown
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ECHOED_NAME)
        .collect();
    let takes = if declared.is_empty() {
        "this route takes no query parameters".to_string()
    } else {
        format!("this route takes: {}", declared.join(", "))
    };
    Err(ApiError::bad_request(format!(
        "unknown query parameter `{shown}`; {takes} (see /openapi.json)"
    )))
}

/// Answers 413 at once to a request whose `Content-Length` is over
/// `limit`, before any of its body is read.
fn refuse_oversized(
    request: axum::extract::Request,
    limit: usize,
) -> Result<axum::extract::Request, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => Err(ApiError::too_large(format!(
            "the request body ({length} bytes) is over this route's limit of {} MiB",
            limit >> 20
        ))),
        _ => Ok(request),
    }
}

/// The most bytes of a non-JSON error body (an extractor's rejection) kept
/// as the message of its JSON form.
const MAX_REJECTION_TEXT: usize = 16 * 1024;

/// Turns every error answer that is not JSON yet (the extractors'
/// rejections, a wrong method) into `{"error": "…"}`, keeping its status
/// and headers such as `Allow`.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REJECTION_TEXT)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .unwrap_or_default();
    let message = match (text.is_empty(), status) {
        (false, _) => text,
        (true, StatusCode::METHOD_NOT_ALLOWED) => {
            "this route does not take that method; see the Allow header and /openapi.json"
                .to_string()
        }
        (true, _) => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string(),
    };
    let mut answer = ApiError::new(status, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}
