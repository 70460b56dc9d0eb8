//! The REST API: JSON over HTTP, bearer tokens (stored hashed), every route
//! scoped to the caller. Another user's objects answer 404, as missing ones
//! do, so nothing leaks.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::datadir::DataDir;
use crate::store::{is_conflict, Store, StoreError, User};

/// What every handler sees.
#[derive(Debug)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The operator's material.
    pub data: DataDir,
    /// Apps are at `<uuid>.<base_domain>`.
    pub base_domain: String,
    /// Starts and stops nodes.
    pub runner: crate::runner::Runner,
    /// The port apps are served on, as clients reach it (0 until known).
    pub proxy_port: std::sync::atomic::AtomicU16,
    /// Where nodes get their quotes: `simulation` or `gramine`.
    pub quote_provider: String,
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
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
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

/// Gives `user_id` a new token named `name`: stores its hash and returns it
/// with its secret, which exists nowhere else.
pub async fn issue_token(
    store: &Store,
    user_id: &str,
    name: &str,
    now: i64,
) -> Result<(crate::store::Token, String), StoreError> {
    let secret = new_token();
    let token = store
        .add_token(user_id, name, &token_hash(&secret), now)
        .await?;
    Ok((token, secret))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The authenticated caller.
pub struct Caller(pub User);

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let missing = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or invalid token: send `Authorization: Bearer <token>` (see `mse login`)",
            )
        };
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(missing)?;
        let user = state
            .store
            .user_by_token_hash(&token_hash(token))
            .await?
            .ok_or_else(missing)?;
        Ok(Caller(user))
    }
}

fn require_admin(caller: &Caller) -> ApiResult<()> {
    if caller.0.is_admin {
        Ok(())
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

/// Every route: method, path, summary, whether it needs a token. The
/// OpenAPI document is made from this table, and a test checks each is served.
pub const ROUTES: &[(&str, &str, &str, bool)] = &[
    ("get", "/health", "Liveness of the API", false),
    ("get", "/openapi.json", "This document", false),
    (
        "get",
        "/platform",
        "Where apps are served (base domain, proxy port) and how they are attested",
        false,
    ),
    (
        "get",
        "/signer",
        "The enclave-signing public key (PEM); MRSIGNER derives from it",
        false,
    ),
    (
        "get",
        "/simulation-ca",
        "The simulation CA certificate (PEM)",
        false,
    ),
    (
        "get",
        "/operator-ca",
        "The operator CA certificate (PEM), for --untrusted-ssl apps",
        false,
    ),
    ("get", "/me", "The caller", true),
    (
        "post",
        "/users",
        "Create a user and its first token (admin)",
        true,
    ),
    (
        "post",
        "/users/{id}/grants",
        "Grant a resource to a user (admin)",
        true,
    ),
    ("get", "/tokens", "The caller's tokens", true),
    (
        "post",
        "/tokens",
        "Create a token; its secret is shown once",
        true,
    ),
    (
        "delete",
        "/tokens/{id}",
        "Revoke one of the caller's tokens",
        true,
    ),
    ("get", "/projects", "The caller's projects", true),
    ("post", "/projects", "Create a project", true),
    (
        "get",
        "/projects/{name}",
        "One of the caller's projects",
        true,
    ),
    (
        "get",
        "/resources",
        "The resources the caller may use",
        true,
    ),
    (
        "get",
        "/resources/{name}",
        "One resource the caller may use",
        true,
    ),
    (
        "put",
        "/resources/{name}/quota",
        "Set the most live apps on a resource, every user's together (admin)",
        true,
    ),
    (
        "get",
        "/users/{id}/quota",
        "A user's quota and use (admin, or the user itself)",
        true,
    ),
    (
        "put",
        "/users/{id}/quota",
        "Set a user's quota of live apps and stored bytes (admin)",
        true,
    ),
    (
        "get",
        "/domains",
        "Custom domains and their owners (admin: all; user: its own)",
        true,
    ),
    (
        "delete",
        "/domains/{name}",
        "Release a custom domain (admin)",
        true,
    ),
];

/// The OpenAPI 3.1 document of [`ROUTES`].
pub fn openapi() -> serde_json::Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, auth) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        let mut operation = json!({
            "summary": summary,
            "responses": {"200": {"description": "success"}, "4XX": {"description": "`{\"error\": \"…\"}`"}}
        });
        if *auth {
            operation["security"] = json!([{"bearer": []}]);
        }
        entry[*method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "MSE-rs control plane", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    })
}

/// The API's router.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .route("/platform", get(platform))
        .route("/signer", get(signer))
        .route("/simulation-ca", get(simulation_ca))
        .route("/operator-ca", get(operator_ca))
        .route("/me", get(me))
        .route("/users", post(create_user))
        .route("/users/{id}/grants", post(grant))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", delete(revoke_token))
        .route("/projects", get(list_projects).post(create_project))
        .route("/projects/{name}", get(get_project))
        .route("/resources", get(list_resources).post(create_resource))
        .route("/resources/{name}", get(get_resource))
        .route(
            "/resources/{name}/quota",
            put(crate::tenancy::set_resource_quota),
        )
        .route(
            "/users/{id}/quota",
            get(crate::tenancy::get_quota).put(crate::tenancy::set_quota),
        )
        .route("/domains", get(crate::tenancy::list_domains))
        .route("/domains/{name}", delete(crate::tenancy::release_domain))
        .route(
            "/apps",
            get(crate::apps::list).post(crate::apps::create).layer(
                axum::extract::DefaultBodyLimit::max(crate::apps::MAX_UPLOAD),
            ),
        )
        .route(
            "/apps/{id}",
            get(crate::apps::get).delete(crate::apps::remove),
        )
        .route("/apps/{id}/stop", post(crate::apps::stop))
        .route("/apps/{id}/logs", get(crate::apps::logs))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such route; see /openapi.json")
        })
        .with_state(state)
}

fn pem(text: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        text.to_string(),
    )
        .into_response()
}

async fn platform(State(state): State<Shared>) -> Json<serde_json::Value> {
    Json(json!({
        "base_domain": state.base_domain,
        "proxy_port": state.proxy_port.load(std::sync::atomic::Ordering::Relaxed),
        "quote_provider": state.quote_provider,
    }))
}

async fn signer(State(state): State<Shared>) -> Response {
    pem(&state.data.signer_pub_pem)
}

async fn simulation_ca(State(state): State<Shared>) -> Response {
    pem(&state.data.simulation_ca_pem)
}

async fn operator_ca(State(state): State<Shared>) -> Response {
    pem(&state.data.operator_ca_pem)
}

async fn me(caller: Caller) -> Json<User> {
    Json(caller.0)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    #[serde(default)]
    admin: bool,
}

#[derive(Debug, Serialize)]
struct Created<T> {
    #[serde(flatten)]
    item: T,
    /// The token's secret, shown once.
    token: String,
}

async fn create_user(
    State(state): State<Shared>,
    caller: Caller,
    Json(body): Json<NewUser>,
) -> ApiResult<(StatusCode, Json<Created<User>>)> {
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
    let (_, token) = issue_token(&state.store, &user.id, "first", at).await?;
    Ok((StatusCode::CREATED, Json(Created { item: user, token })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGrant {
    resource: String,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNamed {
    name: String,
}

async fn list_tokens(
    State(state): State<Shared>,
    caller: Caller,
) -> ApiResult<Json<Vec<crate::store::Token>>> {
    Ok(Json(state.store.tokens(&caller.0.id).await?))
}

async fn create_token(
    State(state): State<Shared>,
    caller: Caller,
    Json(body): Json<NewNamed>,
) -> ApiResult<(StatusCode, Json<Created<crate::store::Token>>)> {
    check_name("name", &body.name)?;
    let (item, token) = issue_token(&state.store, &caller.0.id, &body.name, now()).await?;
    Ok((StatusCode::CREATED, Json(Created { item, token })))
}

async fn revoke_token(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if state.store.revoke_token(&caller.0.id, &id, now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("token"))
    }
}

async fn list_projects(
    State(state): State<Shared>,
    caller: Caller,
) -> ApiResult<Json<Vec<crate::store::Project>>> {
    Ok(Json(state.store.projects(&caller.0.id).await?))
}

async fn create_project(
    State(state): State<Shared>,
    caller: Caller,
    Json(body): Json<NewNamed>,
) -> ApiResult<(StatusCode, Json<crate::store::Project>)> {
    check_name("project", &body.name)?;
    match state
        .store
        .create_project(&caller.0.id, &body.name, now())
        .await
    {
        Ok(project) => Ok((StatusCode::CREATED, Json(project))),
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
) -> ApiResult<Json<crate::store::Project>> {
    state
        .store
        .project(&caller.0.id, &name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(&format!("project `{name}`")))
}

async fn list_resources(
    State(state): State<Shared>,
    caller: Caller,
) -> ApiResult<Json<Vec<crate::store::Resource>>> {
    Ok(Json(state.store.resources(&caller.0.id).await?))
}

async fn get_resource(
    State(state): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<crate::store::Resource>> {
    state
        .store
        .resource(&caller.0.id, &name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(&format!("resource `{name}`")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewResource {
    name: String,
    memory_mb: i64,
    cores: i64,
    enclave_size: String,
    default_hours: i64,
    #[serde(default)]
    public: bool,
    /// The most live apps on it, every user's together.
    #[serde(default)]
    max_live_apps: Option<i64>,
}

async fn create_resource(
    State(state): State<Shared>,
    caller: Caller,
    Json(body): Json<NewResource>,
) -> ApiResult<(StatusCode, Json<crate::store::Resource>)> {
    require_admin(&caller)?;
    mse_config::fields::check_resource(&body.name)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    if body.memory_mb <= 0 || body.cores <= 0 || body.default_hours <= 0 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "memory_mb, cores and default_hours must be positive",
        ));
    }
    let valid_size = body
        .enclave_size
        .strip_suffix(['M', 'G'])
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !valid_size {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "enclave_size is a number of megabytes or gigabytes: `512M`, `4G`",
        ));
    }
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
        memory_mb: body.memory_mb,
        cores: body.cores,
        enclave_size: body.enclave_size,
        default_hours: body.default_hours,
        public: body.public,
        max_live_apps: body.max_live_apps,
    };
    match state.store.create_resource(&resource).await {
        Ok(()) => Ok((StatusCode::CREATED, Json(resource))),
        Err(e) if is_conflict(&e) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("a resource named `{}` exists", resource.name),
        )),
        Err(e) => Err(e.into()),
    }
}
