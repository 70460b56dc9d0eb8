//! The REST API: JSON over HTTP, bearer tokens (stored hashed), every route
//! scoped to the caller. Another user's objects answer 404, as missing ones
//! do, so nothing leaks.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use mse_api::account::{NewGrant, NewProject, NewResource, NewToken, NewUser, Scope, UserCreated};
use mse_api::error::ErrorBody;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::datadir::DataDir;
use crate::store::{is_conflict, Store, StoreError, Token, User};
use crate::wire;

/// What every handler sees.
#[derive(Debug)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The operator's material.
    pub data: DataDir,
    /// Apps are at `<uuid>.<base_domain>`.
    pub base_domain: String,
    /// This machine's node runner.
    pub runner: crate::runner::Runner,
    /// Where apps' nodes run: the local runner and the remote hosts.
    pub nodes: crate::backend::Nodes,
    /// How long a renewal of a remote host's lease lasts, seconds.
    pub lease_secs: i64,
    /// How nodes run apps (told to hosts as they join).
    pub node_options: crate::NodeOptions,
    /// The port apps are served on, as clients reach it (0 until known).
    pub proxy_port: std::sync::atomic::AtomicU16,
    /// Where nodes get their quotes: `simulation` or `gramine`.
    pub quote_provider: String,
    /// The runtime environments.
    pub cache: mse_runtime::EnvCache,
    /// The operator's catalog, as last read.
    pub catalog: crate::catalog::Cached,
    /// The platform's ACME CA: zero-trust apps get a browser-trusted
    /// certificate from it, unless deployed with `no_acme`.
    pub acme: Option<mse_api::node::AcmeCa>,
    /// The longest a token made through the API lives, seconds; `None`:
    /// until revoked, unless its maker asks for less.
    pub max_token_lifetime: Option<i64>,
}

/// Shared state.
pub type Shared = Arc<AppState>;

/// An error answer: `{"error": "…"}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn not_found(what: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    /// Its status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // The detail stays in the server's log; the client learns only that
        // the store failed.
        eprintln!("store error: {e}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the store failed")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody::new(self.message))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// SHA-256 (hex) of a token: what the store keeps.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new token: `mse_` and 64 hex digits.
fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("mse_{}", hex::encode(bytes))
}

/// Gives `user_id` a new token named `name`, of this scope and working
/// until `expires_at` (`None`: until revoked): stores its hash and returns
/// it with its secret, which exists nowhere else.
pub async fn issue_token(
    store: &Store,
    user_id: &str,
    name: &str,
    scope: Scope,
    expires_at: Option<i64>,
    now: i64,
) -> Result<(Token, String), StoreError> {
    let secret = new_token();
    let token = store
        .add_token(user_id, name, &token_hash(&secret), scope, expires_at, now)
        .await?;
    Ok((token, secret))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A time for people: `2026-05-01 12:00:00 UTC`.
fn utc(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0).map_or_else(
        || format!("{at} (Unix seconds)"),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// The authenticated caller: its user and the token it called with.
///
/// The user's `is_admin` is what this token may do: true only for an
/// administrator's token of scope `admin` (the user's own flag is
/// [`Grant::admin_user`]), so every check of it honours the scope.
pub struct Caller(pub User, pub Grant);

/// The token a caller called with.
pub struct Grant {
    /// The token.
    pub token: Token,
    /// Whether its user administers the platform (whatever the scope).
    pub admin_user: bool,
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let missing = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or invalid token: send `Authorization: Bearer <token>` (see `mse login`)",
            )
        };
        let secret = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(missing)?;
        let (mut user, token) = state
            .store
            .token_by_hash(&token_hash(secret))
            .await?
            .ok_or_else(missing)?;
        if user.disabled_at.is_some() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "user disabled: an administrator disabled `{}`, and its tokens are refused \
                     until one enables it again (`POST /users/{}/enable`)",
                    user.name, user.id
                ),
            ));
        }
        if let Some(at) = token.expires_at.filter(|at| *at <= now()) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!(
                    "token `{}` expired at {}: use another token, make a new one with a token \
                     that works (`POST /tokens`, or the console's Tokens page), or ask an \
                     administrator for one (`POST /users/{}/tokens`)",
                    token.name,
                    utc(at),
                    user.id
                ),
            ));
        }
        let needed = needed_scope(&parts.method);
        if !token.scope.covers(needed) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this token's scope is `{}`, which allows GET requests only; {} needs scope \
                     `{needed}`: use a token of that scope",
                    token.scope, parts.method
                ),
            ));
        }
        let admin_user = user.is_admin;
        user.is_admin = admin_user && token.scope == Scope::Admin;
        Ok(Caller(user, Grant { token, admin_user }))
    }
}

/// The scope a request of this method needs of its token (an
/// administrator's routes need `admin` besides: [`require_admin`]).
fn needed_scope(method: &Method) -> Scope {
    if method == Method::GET || method == Method::HEAD {
        Scope::Read
    } else {
        Scope::Deploy
    }
}

/// The token of an `Authorization` value: `Bearer TOKEN`, the scheme in
/// any case (RFC 9110 §11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub(crate) fn require_admin(caller: &Caller) -> ApiResult<()> {
    if caller.0.is_admin {
        Ok(())
    } else if caller.1.admin_user {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this token's scope is `{}`; administering the platform needs scope `admin`: \
                 use an administrator's token of scope admin",
                caller.1.token.scope
            ),
        ))
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only an administrator may do this",
        ))
    }
}

fn check_name(what: &str, name: &str) -> ApiResult<()> {
    mse_config::fields::check_name(what, name)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))
}

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
    use crate::apps;
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
                    crate::bounds::integer_schema(&crate::bounds::TOKEN_LIFETIME_SECS),
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
        op(get.clone(), "/health", "Liveness of the API and its store (503 when the store does not answer)", health),
        op(get.clone(), "/openapi.json", "This document", openapi_json),
        op(get.clone(), "/platform", "Where apps are served (base domain, proxy port) and how they are attested", platform),
        op(get.clone(), "/catalog", "The image catalog: approved images and their locked environments (ETag: its digest)", crate::catalog::get),
        op(get.clone(), "/signer", "The enclave-signing public key (PEM); MRSIGNER derives from it", signer),
        op(get.clone(), "/simulation-ca", "The simulation CA certificate (PEM)", simulation_ca),
        op(get.clone(), "/simulation-revoked", "The simulation quote keys the platform revoked: {\"revoked\": [SHA-256 of each PCK's SubjectPublicKeyInfo (DER), hex]}", simulation_revoked),
        op(get.clone(), "/operator-ca", "The operator CA certificate (PEM), for --untrusted-ssl apps", operator_ca),
        op(get.clone(), "/me", "The caller", me).token(),
        op(post.clone(), "/nodes/tokens", "Create a join token for a node host: how many hosts it joins, what it grants each; shown once (admin)", crate::nodes::create_token)
            .token()
            .json(object(&[], &[
                ("ttl_hours", json!({"type": "integer", "minimum": 1, "maximum": 8760})),
                ("max_hosts", json!({"type": "integer", "minimum": 1, "maximum": mse_api::node::MAX_TOKEN_HOSTS})),
                ("max_memory_mb", json!({"type": "integer", "minimum": 1})),
                ("max_cores", json!({"type": "integer", "minimum": 1})),
                ("advertise", text()),
            ])),
        op(get.clone(), "/nodes/tokens", "Every join token (never its secret): its hosts, grant, expiry and whether it is usable (admin)", crate::nodes::list_tokens).token(),
        op(delete.clone(), "/nodes/tokens/{id}", "Revoke a join token: it joins no host after (admin)", crate::nodes::revoke_token).token(),
        op(get.clone(), "/nodes", "Every node: address, lease, capacity, use and apps (admin)", crate::nodes::list).token(),
        op(post.clone(), "/nodes/join", "A node host joins with a join token (node protocol)", crate::nodes::join)
            .json(object(
                &[("token", text()), ("name", text()), ("advertise", text()),
                  ("capacity", object(&[("memory_mb", json!({"type": "integer"})), ("cores", json!({"type": "integer"}))], &[])),
                  ("quote_key", text())],
                &[],
            )),
        op(post.clone(), "/nodes/lease", "A host renews its lease and learns what to start and stop (node credential)", crate::nodes::lease)
            .token()
            .json(object(&[("running", json!({"type": "array", "items": {"type": "string"}}))], &[("wait_ms", json!({"type": "integer", "minimum": 0}))])),
        op(get.clone(), "/nodes/catalog", "The catalog file, for hosts (node credential)", crate::nodes::catalog).token(),
        op(get.clone(), "/nodes/packages/{sha256}", "The encrypted package of an app placed on the calling host (node credential)", crate::nodes::package).token(),
        op(post.clone(), "/nodes/events", "A status event of an app placed on the calling host (node credential)", crate::nodes::event)
            .token()
            .json(object(&[("app", text()), ("event", json!({"type": "object"}))], &[])),
        op(post.clone(), "/nodes/logs/{app}", "The next bytes of an app's log (node credential)", crate::nodes::logs)
            .token()
            .bytes(mse_api::node::MAX_LOG_CHUNK)
            .query("replace", json!({"type": "boolean"})),
        op(get.clone(), "/users", "Every user with the resources granted to it (admin)", list_users).token(),
        op(post.clone(), "/users", "Create a user and its first token (admin)", create_user)
            .token()
            .json(object(&[("name", text())], &[("admin", json!({"type": "boolean"}))])),
        op(post.clone(), "/nodes/{node}/revoke", "Revoke a node host: its quote keys stop verifying; a remote host is fenced (lease and credential end, apps on_error), gets no app and cannot join until allowed (admin)", crate::nodes::revoke).token(),
        op(post.clone(), "/nodes/{node}/allow", "Let a revoked node host's name join again (admin)", crate::nodes::allow).token(),
        op(delete.clone(), "/nodes/{node}", "Remove a node host; its apps end first (admin)", crate::nodes::remove).token(),
        op(post.clone(), "/users/{id}/grants", "Grant a resource to a user (admin)", grant)
            .token()
            .json(object(&[("resource", text())], &[])),
        op(post.clone(), "/users/{id}/disable", "Disable a user: its tokens are refused at once and its live apps stop (admin)", crate::tokens::disable).token(),
        op(post.clone(), "/users/{id}/enable", "Enable a disabled user: its working tokens are accepted again (admin)", crate::tokens::enable).token(),
        op(get.clone(), "/users/{id}/tokens", "A user's working tokens (admin)", crate::tokens::list_of_user).token(),
        op(post.clone(), "/users/{id}/tokens", "Create a token for a user; its secret is shown once (admin)", crate::tokens::create_for_user)
            .token()
            .json(new_token()),
        op(get.clone(), "/tokens", "The caller's working tokens: scope and expiry", crate::tokens::list).token(),
        op(post.clone(), "/tokens", "Create a token, within the scope and lifetime of the calling one; its secret is shown once", crate::tokens::create)
            .token()
            .json(new_token()),
        op(delete.clone(), "/tokens/{id}", "Revoke one of the caller's tokens (admin: anyone's)", crate::tokens::revoke).token(),
        op(get.clone(), "/projects", "The caller's projects", list_projects).token(),
        op(post.clone(), "/projects", "Create a project", create_project)
            .token()
            .json(named()),
        op(get.clone(), "/projects/{name}", "One of the caller's projects", get_project).token(),
        op(get.clone(), "/resources", "The resources the caller may use", list_resources).token(),
        op(post.clone(), "/resources", "Create a resource (admin)", create_resource)
            .token()
            .json(crate::bounds::resource_schema()),
        op(get.clone(), "/resources/{name}", "One resource the caller may use", get_resource).token(),
        op(put.clone(), "/resources/{name}/quota", "Set the most live apps on a resource, every user's together (admin)", crate::tenancy::set_resource_quota)
            .token()
            .json(object(&[], &[("max_live_apps", count_or_null(crate::tenancy::MAX_LIVE_APPS_BOUND as u64))])),
        op(get.clone(), "/users/{id}/quota", "A user's quota and use (admin, or the user itself)", crate::tenancy::get_quota).token(),
        op(put, "/users/{id}/quota", "Set a user's quota of live apps and stored bytes (admin)", crate::tenancy::set_quota)
            .token()
            .json(object(&[], &[
                ("max_live_apps", count_or_null(crate::tenancy::MAX_LIVE_APPS_BOUND as u64)),
                ("max_stored_bytes", count_or_null(crate::tenancy::MAX_STORED_BYTES_BOUND as u64)),
            ])),
        op(get.clone(), "/domains", "Custom domains and their owners (admin: all; user: its own)", crate::tenancy::list_domains).token(),
        op(delete.clone(), "/domains/{name}", "Release a custom domain (admin)", crate::tenancy::release_domain).token(),
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
        op(post, "/apps/{id}/stop", "Stop an app (202 while its node stops)", apps::stop).token(),
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
        .merge(crate::console::router())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such route; see /openapi.json")
        })
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
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("unknown query parameter `{shown}`; {takes} (see /openapi.json)"),
    ))
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
        Some(length) if length > limit as u64 => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body ({length} bytes) is over this route's limit of {} MiB",
                limit >> 20
            ),
        )),
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

/// How long `/health` waits for the store.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

async fn health(State(state): State<Shared>) -> Response {
    match tokio::time::timeout(HEALTH_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Json(mse_api::platform::Health::ok()).into_response(),
        Ok(Err(e)) => {
            eprintln!("health: store error: {e}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store does not answer: every authenticated route fails until it does",
            )
            .into_response()
        }
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the store did not answer within {} s: every authenticated route fails until it does",
                HEALTH_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}

fn pem(text: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        text.to_string(),
    )
        .into_response()
}

async fn platform(State(state): State<Shared>) -> Json<mse_api::platform::Platform> {
    Json(mse_api::platform::Platform {
        base_domain: state.base_domain.clone(),
        proxy_port: state.proxy_port.load(std::sync::atomic::Ordering::Relaxed),
        quote_provider: state.quote_provider.clone(),
    })
}

async fn signer(State(state): State<Shared>) -> Response {
    pem(&state.data.signer_pub_pem)
}

async fn simulation_ca(State(state): State<Shared>) -> Response {
    pem(&state.data.simulation_ca_pem)
}

impl From<crate::quote_keys::QuoteKeyError> for ApiError {
    fn from(e: crate::quote_keys::QuoteKeyError) -> Self {
        match e {
            crate::quote_keys::QuoteKeyError::Store(e) => e.into(),
            e => {
                eprintln!("quote keys: {e}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the quote keys failed")
            }
        }
    }
}

async fn simulation_revoked(State(state): State<Shared>) -> ApiResult<Json<serde_json::Value>> {
    let revoked = crate::quote_keys::revoked(&state.store).await?;
    Ok(Json(json!({ "revoked": revoked })))
}

async fn operator_ca(State(state): State<Shared>) -> Response {
    pem(&state.data.operator_ca_pem)
}

async fn me(caller: Caller) -> Json<mse_api::account::User> {
    Json((&caller.0).into())
}

async fn list_users(
    State(state): State<Shared>,
    caller: Caller,
) -> ApiResult<Json<Vec<mse_api::account::UserGrants>>> {
    require_admin(&caller)?;
    let users = state.store.users_with_grants().await?;
    Ok(Json(
        users
            .iter()
            .map(|(user, grants)| mse_api::account::UserGrants {
                user: user.into(),
                grants: grants.clone(),
            })
            .collect(),
    ))
}

async fn create_user(
    State(state): State<Shared>,
    caller: Caller,
    Json(body): Json<NewUser>,
) -> ApiResult<(StatusCode, Json<UserCreated>)> {
    require_admin(&caller)?;
    check_name("name", &body.name)?;
    let at = now();
    let user = match state.store.create_user(&body.name, body.admin, at).await {
        Ok(user) => user,
        Err(e) if is_conflict(&e) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("a user named `{}` exists", body.name),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let first = NewToken {
        name: "first".to_string(),
        expires_in: None,
        scope: None,
    };
    let (scope, expires_at) = crate::tokens::terms(
        &caller.1.token,
        crate::tokens::widest_scope(user.is_admin),
        &first,
        state.max_token_lifetime,
        at,
    )?;
    let (_, secret) =
        issue_token(&state.store, &user.id, &first.name, scope, expires_at, at).await?;
    Ok((
        StatusCode::CREATED,
        Json(UserCreated {
            user: (&user).into(),
            secret,
        }),
    ))
}

async fn grant(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<NewGrant>,
) -> ApiResult<StatusCode> {
    require_admin(&caller)?;
    if state.store.user(&id).await?.is_none() {
        return Err(ApiError::not_found("user"));
    }
    if !state.store.resource_exists(&body.resource).await? {
        return Err(ApiError::not_found("resource"));
    }
    state.store.grant(&id, &body.resource).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_projects(
    State(state): State<Shared>,
    caller: Caller,
) -> ApiResult<Json<Vec<mse_api::account::Project>>> {
    Ok(Json(wire::all(&state.store.projects(&caller.0.id).await?)))
}

async fn create_project(
    State(state): State<Shared>,
    caller: Caller,
    Json(body): Json<NewProject>,
) -> ApiResult<(StatusCode, Json<mse_api::account::Project>)> {
    check_name("project", &body.name)?;
    match state
        .store
        .create_project(&caller.0.id, &body.name, now())
        .await
    {
        Ok(project) => Ok((StatusCode::CREATED, Json((&project).into()))),
        Err(e) if is_conflict(&e) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("you have a project named `{}` already", body.name),
        )),
        Err(e) => Err(e.into()),
    }
}

async fn get_project(
    State(state): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<mse_api::account::Project>> {
    state
        .store
        .project(&caller.0.id, &name)
        .await?
        .map(|project| Json((&project).into()))
        .ok_or_else(|| ApiError::not_found(&format!("project `{name}`")))
}

async fn list_resources(
    State(state): State<Shared>,
    caller: Caller,
) -> ApiResult<Json<Vec<mse_api::account::Resource>>> {
    Ok(Json(wire::all(&state.store.resources(&caller.0.id).await?)))
}

async fn get_resource(
    State(state): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<mse_api::account::Resource>> {
    state
        .store
        .resource(&caller.0.id, &name)
        .await?
        .map(|resource| Json((&resource).into()))
        .ok_or_else(|| ApiError::not_found(&format!("resource `{name}`")))
}

async fn create_resource(
    State(state): State<Shared>,
    caller: Caller,
    Json(body): Json<NewResource>,
) -> ApiResult<(StatusCode, Json<mse_api::account::Resource>)> {
    use crate::bounds;
    require_admin(&caller)?;
    mse_config::fields::check_resource(&body.name)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let bad = |e: bounds::OutOfBounds| ApiError::new(StatusCode::BAD_REQUEST, e.0);
    let memory_mb =
        bounds::integer("memory_mb", &body.memory_mb, &bounds::MEMORY_MB).map_err(bad)?;
    let cores = bounds::integer("cores", &body.cores, &bounds::CORES).map_err(bad)?;
    let default_hours =
        bounds::integer("default_hours", &body.default_hours, &bounds::DEFAULT_HOURS)
            .map_err(bad)?;
    bounds::enclave_size(&body.enclave_size).map_err(bad)?;
    if let Some(n) = body.max_live_apps {
        if !(0..=crate::tenancy::MAX_LIVE_APPS_BOUND).contains(&n) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "max_live_apps must be an integer from 0 to {}, or null, not `{n}`",
                    crate::tenancy::MAX_LIVE_APPS_BOUND
                ),
            ));
        }
    }
    let resource = crate::store::Resource {
        name: body.name,
        memory_mb,
        cores,
        enclave_size: body.enclave_size,
        default_hours,
        public: body.public,
        max_live_apps: body.max_live_apps,
    };
    match state.store.create_resource(&resource).await {
        Ok(()) => Ok((StatusCode::CREATED, Json((&resource).into()))),
        Err(e) if is_conflict(&e) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("a resource named `{}` exists", resource.name),
        )),
        Err(e) => Err(e.into()),
    }
}
