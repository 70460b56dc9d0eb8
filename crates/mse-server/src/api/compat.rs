//! The original platform's client, `mse-cli` 0.10.2, signs in to this one
//! (docs/compat.md): an OAuth 2.0 authorization-code flow with PKCE (RFC
//! 6749, RFC 7636) under `/compat/mse-0.10/auth`, whose refresh tokens are
//! this platform's API tokens (revocable, scoped, never in a URL) and whose
//! access tokens are short JWTs naming the refresh token they came from,
//! and the routes of its API that read who signed in.
//!
//! The client is pointed here with `MSE_BASE_URL=<api>/compat/mse-0.10`
//! and `MSE_AUTH0_DOMAIN_NAME=<api>/compat/mse-0.10/auth`.

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use mse_api::account::{NewToken, Scope};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::domain::accounts::{Token, User};
use crate::state::auth::{bearer_token, issue_token, token_hash};
use crate::state::compat::Pending;
use crate::state::{now, Shared};

/// Where the compatibility API is served.
pub const PREFIX: &str = "/compat/mse-0.10";
/// How long an authorization code may be traded, seconds.
const CODE_SECS: i64 = 60;
/// How long an access token works, seconds.
const ACCESS_SECS: i64 = 3600;
/// Authorization codes waiting at most at once.
const MAX_PENDING: usize = 1024;
/// The largest deploy through the compatibility API (code and
/// configuration): it is held in memory once to be handed on.
const MAX_DEPLOY: usize = 64 * 1024 * 1024;
/// The name of the API token a sign-in makes.
const SIGN_IN_TOKEN: &str = "mse-cli-0.10-sign-in";

/// An OAuth error answer (RFC 6749 §5.2): `error` and words for people.
fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description.into()})),
    )
        .into_response()
}

/// The routes, under [`PREFIX`].
pub fn router() -> Router<Shared> {
    Router::new()
        .route(
            &format!("{PREFIX}/auth/authorize"),
            get(authorize_page).post(authorize_form),
        )
        .route(
            &format!("{PREFIX}/auth/oauth/token"),
            axum::routing::post(token),
        )
        .route(&format!("{PREFIX}/users/me"), get(users_me))
        .route(&format!("{PREFIX}/projects"), get(projects))
        .route(&format!("{PREFIX}/projects/{{id}}"), get(project))
        .route(&format!("{PREFIX}/projects/{{id}}/apps"), get(project_apps))
        .route(&format!("{PREFIX}/plans/{{name}}"), get(plan))
        .route(
            &format!("{PREFIX}/apps"),
            axum::routing::post(deploy).layer(axum::extract::DefaultBodyLimit::max(MAX_DEPLOY)),
        )
        .route(
            &format!("{PREFIX}/apps/{{id}}"),
            get(app).delete(remove_app),
        )
        .route(
            &format!("{PREFIX}/apps/{{id}}/stop"),
            axum::routing::post(stop_app),
        )
        .route(&format!("{PREFIX}/apps/{{id}}/logs"), get(app_logs))
}

/// What `mse login` asks `/authorize` for.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AuthorizeQuery {
    response_type: String,
    code_challenge: String,
    code_challenge_method: String,
    client_id: String,
    redirect_uri: String,
    state: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    audience: Option<String>,
}

/// Refuses what this server does not do, before anyone approves: only
/// `code` with S256 challenges, to a loopback `http` redirect (RFC 8252
/// §7.3: the client listens on this machine).
fn check_request(q: &AuthorizeQuery) -> Result<(), String> {
    if q.response_type != "code" {
        return Err(format!(
            "response_type `{}` is not served: only `code`",
            q.response_type
        ));
    }
    if q.code_challenge_method != "S256"
        || q.code_challenge.len() != 43
        || !q
            .code_challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("a PKCE code_challenge, S256 (RFC 7636), is required".into());
    }
    let loopback = ["http://localhost:", "http://127.0.0.1:", "http://[::1]:"]
        .iter()
        .any(|p| q.redirect_uri.starts_with(p));
    if !loopback || q.redirect_uri.contains(['#', '\r', '\n', ' ']) {
        return Err(format!(
            "redirect_uri `{}` is not a loopback http address: the client must listen on the \
             machine it signs in from",
            q.redirect_uri
        ));
    }
    if q.client_id.is_empty() || q.client_id.len() > 256 || q.state.len() > 512 {
        return Err("client_id and state must be given, and short".into());
    }
    Ok(())
}

/// The caller's working token: `Bearer <secret>`, unrevoked, unexpired, of
/// an enabled user.
async fn bearer(state: &Shared, headers: &HeaderMap) -> Option<(User, Token)> {
    let secret = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()
        .and_then(bearer_token)?;
    working(state.store.token_by_hash(&token_hash(secret)).await.ok()?)
}

/// The token and user, when the token works now.
fn working(found: Option<(User, Token)>) -> Option<(User, Token)> {
    let (user, token) = found?;
    let live = user.disabled_at.is_none() && token.expires_at.is_none_or(|at| at > now());
    live.then_some((user, token))
}

/// Approves a sign-in for the token's user: a code, traded once within a
/// minute, and the redirect that hands it to the client.
fn approve(state: &Shared, q: &AuthorizeQuery, user: &User, token: &Token) -> Response {
    let code = {
        let bytes: [u8; 32] = rand::random();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let at = now();
    {
        let Ok(mut codes) = state.compat.codes.lock() else {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "try again",
            );
        };
        codes.retain(|_, p| p.expires_at > at);
        if codes.len() >= MAX_PENDING {
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "too many sign-ins waiting: try again in a minute",
            );
        }
        codes.insert(
            code.clone(),
            Pending {
                user_id: user.id.clone(),
                token_id: token.id.clone(),
                challenge: q.code_challenge.clone(),
                redirect_uri: q.redirect_uri.clone(),
                client_id: q.client_id.clone(),
                expires_at: at + CODE_SECS,
            },
        );
    }
    let query =
        serde_urlencoded::to_string([("code", &code), ("state", &q.state)]).unwrap_or_default();
    let separator = if q.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    Redirect::to(&format!("{}{separator}{query}", q.redirect_uri)).into_response()
}

/// `GET /auth/authorize`: with `Authorization: Bearer <API token>` the
/// sign-in is approved at once (for scripts); else the sign-in page, where
/// a person gives an API token and approves.
async fn authorize_page(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<AuthorizeQuery>,
) -> Response {
    if let Err(why) = check_request(&q) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why);
    }
    if headers.contains_key(header::AUTHORIZATION) {
        return match bearer(&state, &headers).await {
            Some((user, token)) => approve(&state, &q, &user, &token),
            None => oauth_error(
                StatusCode::UNAUTHORIZED,
                "access_denied",
                "the bearer token does not work (revoked, expired, or its user disabled)",
            ),
        };
    }
    page(&q, None)
}

/// What the sign-in page posts.
#[derive(Debug, Deserialize)]
struct AuthorizeForm {
    token: String,
    #[serde(flatten)]
    request: AuthorizeQuery,
}

/// `POST /auth/authorize`: the sign-in page's form, an API token and the
/// request it approves.
async fn authorize_form(State(state): State<Shared>, Form(form): Form<AuthorizeForm>) -> Response {
    if let Err(why) = check_request(&form.request) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why);
    }
    let found = state
        .store
        .token_by_hash(&token_hash(form.token.trim()))
        .await
        .ok()
        .flatten();
    match working(found) {
        Some((user, token)) => approve(&state, &form.request, &user, &token),
        None => page(
            &form.request,
            Some("That token does not work: it may be revoked or expired. Use another."),
        ),
    }
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The sign-in page: what is asked, and an API token to approve it with.
fn page(q: &AuthorizeQuery, problem: Option<&str>) -> Response {
    let hidden: String = [
        ("response_type", &q.response_type),
        ("code_challenge", &q.code_challenge),
        ("code_challenge_method", &q.code_challenge_method),
        ("client_id", &q.client_id),
        ("redirect_uri", &q.redirect_uri),
        ("state", &q.state),
    ]
    .iter()
    .map(|(name, value)| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        )
    })
    .collect();
    let problem = problem
        .map(|p| format!("<p class=\"problem\" role=\"alert\">{}</p>", escape(p)))
        .unwrap_or_default();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Sign in mse-cli</title></head><body><main>\
         <h1>Sign in the mse command</h1>\
         <p><code>mse login</code> (mse-cli 0.10) asks to act as you from \
         <code>{}</code>. Give one of your API tokens (the console's Tokens page, or \
         <code>POST /tokens</code>) to approve: the command gets a token of its own, no wider and \
         no longer-lived than this one, which you can revoke.</p>{problem}\
         <form method=\"post\" action=\"{PREFIX}/auth/authorize\">{hidden}\
         <label for=\"token\">API token</label> \
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required> \
         <button type=\"submit\" id=\"approve\">Approve</button></form></main></body></html>",
        escape(&q.redirect_uri)
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// What `/oauth/token` is sent (form-encoded).
#[derive(Debug, Deserialize)]
struct TokenRequest {
    grant_type: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    code_verifier: Option<String>,
    #[serde(default)]
    redirect_uri: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// An access token's claims.
#[derive(Debug, Serialize, Deserialize)]
struct AccessClaims {
    /// The user's id.
    sub: String,
    /// The API token it stands for.
    tid: String,
    exp: i64,
    iat: i64,
}

/// `POST /auth/oauth/token`: an authorization code (with its PKCE
/// verifier) or a refresh token traded for an access token.
async fn token(State(state): State<Shared>, Form(request): Form<TokenRequest>) -> Response {
    match request.grant_type.as_str() {
        "authorization_code" => trade_code(&state, &request).await,
        "refresh_token" => refresh(&state, &request).await,
        other => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant_type `{other}`: only authorization_code and refresh_token"),
        ),
    }
}

fn invalid_grant(why: impl Into<String>) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why)
}

async fn trade_code(state: &Shared, request: &TokenRequest) -> Response {
    let (Some(code), Some(verifier)) = (&request.code, &request.code_verifier) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code and code_verifier are required",
        );
    };
    // Taken out whatever follows: a code is traded once.
    let pending = state
        .compat
        .codes
        .lock()
        .ok()
        .and_then(|mut codes| codes.remove(code));
    let Some(pending) = pending.filter(|p| p.expires_at > now()) else {
        return invalid_grant("unknown, used or expired code: sign in again");
    };
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    if challenge != pending.challenge {
        return invalid_grant("the code_verifier does not match the code_challenge");
    }
    if request.redirect_uri.as_deref() != Some(pending.redirect_uri.as_str())
        || request.client_id.as_deref() != Some(pending.client_id.as_str())
    {
        return invalid_grant("redirect_uri or client_id differ from the authorization's");
    }
    // The approving token still works, and bounds the sign-in's.
    let Some((user, approver)) = working(
        state
            .store
            .token_by_id(&pending.token_id)
            .await
            .ok()
            .flatten(),
    )
    .filter(|(user, _)| user.id == pending.user_id) else {
        return invalid_grant("the token that approved this sign-in no longer works");
    };
    let at = now();
    let asked = NewToken {
        name: SIGN_IN_TOKEN.into(),
        expires_in: None,
        scope: Some(
            approver
                .scope
                .min(crate::api::tokens::widest_scope(user.is_admin)),
        ),
    };
    let (scope, expires_at) = match crate::api::tokens::terms(
        &approver,
        crate::api::tokens::widest_scope(user.is_admin),
        &asked,
        state.max_token_lifetime,
        at,
    ) {
        Ok(terms) => terms,
        Err(e) => return invalid_grant(e.message()),
    };
    let Ok((token, secret)) =
        issue_token(&state.store, &user.id, SIGN_IN_TOKEN, scope, expires_at, at).await
    else {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the store did not answer: try again",
        );
    };
    tokens_answer(state, &user, &token, Some(secret))
}

async fn refresh(state: &Shared, request: &TokenRequest) -> Response {
    let Some(secret) = &request.refresh_token else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token is required",
        );
    };
    let found = state
        .store
        .token_by_hash(&token_hash(secret.trim()))
        .await
        .ok()
        .flatten();
    match working(found) {
        Some((user, token)) => tokens_answer(state, &user, &token, None),
        None => invalid_grant(
            "the refresh token does not work (revoked, expired, or its user disabled): run \
             `mse login` again",
        ),
    }
}

/// The e-mail a user is known by: its name when it is one, else the name
/// at the platform's base domain.
fn email(state: &Shared, user: &User) -> String {
    if user.name.contains('@') {
        user.name.clone()
    } else {
        format!("{}@{}", user.name, state.base_domain)
    }
}

/// The token answer: an access token for `token` (never past its expiry),
/// an id token, and the refresh token when one was just made.
fn tokens_answer(state: &Shared, user: &User, token: &Token, refresh: Option<String>) -> Response {
    let at = now();
    let exp = token
        .expires_at
        .map_or(at + ACCESS_SECS, |end| end.min(at + ACCESS_SECS));
    let key = jsonwebtoken::EncodingKey::from_secret(&state.compat.key);
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let access = jsonwebtoken::encode(
        &header,
        &AccessClaims {
            sub: user.id.clone(),
            tid: token.id.clone(),
            exp,
            iat: at,
        },
        &key,
    );
    let id = jsonwebtoken::encode(
        &header,
        &json!({"sub": user.id, "email": email(state, user), "name": user.name, "iat": at, "exp": exp}),
        &key,
    );
    let (Ok(access), Ok(id)) = (access, id) else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "try again",
        );
    };
    let mut body = json!({
        "access_token": access,
        "id_token": id,
        "token_type": "Bearer",
        "expires_in": exp - at,
        "scope": token.scope.as_str(),
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = refresh.into();
    }
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// The caller of a compatibility route: an access token that verifies,
/// unexpired, whose API token still works, with the scope the method
/// needs.
async fn caller(
    state: &Shared,
    headers: &HeaderMap,
    write: bool,
) -> Result<(User, Token), Response> {
    let unauthorized = |why: &str| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": why, "error_description": why})),
        )
            .into_response()
    };
    let jwt = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .ok_or_else(|| unauthorized("missing access token: run `mse login`"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<AccessClaims>(
        jwt,
        &jsonwebtoken::DecodingKey::from_secret(&state.compat.key),
        &validation,
    )
    .map_err(|_| unauthorized("invalid or expired access token: run `mse login` again"))?
    .claims;
    let found = state.store.token_by_id(&claims.tid).await.ok().flatten();
    let (user, token) = working(found)
        .filter(|(user, _)| user.id == claims.sub)
        .ok_or_else(|| {
            unauthorized("the sign-in's token was revoked or expired: run `mse login`")
        })?;
    let needed = if write { Scope::Deploy } else { Scope::Read };
    if !token.scope.covers(needed) {
        return Err((
            StatusCode::FORBIDDEN,
            Json(json!({"error": format!("this sign-in's scope is `{}`: it reads only", token.scope)})),
        )
            .into_response());
    }
    Ok((user, token))
}

/// A time as the original's API wrote it (RFC 3339, UTC).
fn rfc3339(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `GET /users/me`: who signed in, in the original's shape.
async fn users_me(State(state): State<Shared>, Signed(caller): Signed) -> Response {
    let user = &caller.0;
    Json(json!({
        "uuid": user.id,
        "first_name": user.name,
        "last_name": "",
        "email": email(&state, user),
        "created_at": rfc3339(user.created_at),
    }))
    .into_response()
}

/// The caller as this platform's handlers take it, from an access token.
async fn as_caller(
    state: &Shared,
    headers: &HeaderMap,
    write: bool,
) -> Result<crate::state::Caller, Response> {
    let (mut user, token) = caller(state, headers, write).await?;
    let admin_user = user.is_admin;
    user.is_admin = admin_user && token.scope == Scope::Admin;
    Ok(crate::state::Caller(
        user,
        crate::state::auth::Grant { token, admin_user },
    ))
}

/// The caller of a compatibility route, from its access token: a `GET`
/// needs a sign-in of scope `read`, anything else `deploy`.
struct Signed(crate::state::Caller);

impl axum::extract::FromRequestParts<Shared> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Shared,
    ) -> Result<Self, Response> {
        let write =
            parts.method != axum::http::Method::GET && parts.method != axum::http::Method::HEAD;
        as_caller(state, &parts.headers, write).await.map(Signed)
    }
}

/// An error of this platform's handlers, as the client shows it (its
/// `r.text`): the JSON error, status kept.
fn refused(e: crate::state::ApiError) -> Response {
    e.into_response()
}

/// A project in the original's shape.
fn project_json(user: &User, p: &crate::domain::accounts::Project) -> serde_json::Value {
    json!({
        "uuid": p.id,
        "name": p.name,
        "description": "",
        "owner_uuid": user.id,
        "is_default": p.name == "default",
        "stripe_customer_id": null,
        "stripe_payment_method_id": null,
        "enclave_version": null,
        "created_at": rfc3339(p.created_at),
        "deleted_at": null,
    })
}

/// What `GET /projects` and the app routes filter on.
#[derive(Debug, Deserialize)]
struct Filter {
    #[serde(default)]
    name: Option<String>,
    /// Statuses, comma-separated.
    #[serde(default)]
    status: Option<String>,
}

/// `GET /projects?name=`: the caller's projects (of that name).
async fn projects(
    State(state): State<Shared>,
    Signed(caller): Signed,
    Query(filter): Query<Filter>,
) -> Response {
    match state.store.projects(&caller.0.id).await {
        Ok(projects) => Json(
            projects
                .iter()
                .filter(|p| filter.name.as_ref().is_none_or(|name| *name == p.name))
                .map(|p| project_json(&caller.0, p))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => refused(e.into()),
    }
}

/// The caller's project `id`, or 404.
async fn own_project(
    state: &Shared,
    caller: &crate::state::Caller,
    id: &str,
) -> Result<crate::domain::accounts::Project, Response> {
    let projects = state
        .store
        .projects(&caller.0.id)
        .await
        .map_err(|e| refused(e.into()))?;
    projects.into_iter().find(|p| p.id == id).ok_or_else(|| {
        refused(crate::state::ApiError::not_found(format!(
            "no project {id} of yours"
        )))
    })
}

/// `GET /projects/{uuid}`.
async fn project(
    State(state): State<Shared>,
    Signed(caller): Signed,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match own_project(&state, &caller, &id).await {
        Ok(p) => Json(project_json(&caller.0, &p)).into_response(),
        Err(refused) => refused,
    }
}

/// An app in the original's shape (`App`, which `PartialApp` is part of).
/// An ACME certificate (this platform's, which the original did not
/// have) is said `self`: the node holds its key, as for the RA-TLS one.
fn app_json(user: &User, project_id: &str, app: &mse_api::apps::App) -> serde_json::Value {
    use mse_api::apps::CertificateOrigin;
    let origin = match app.certificate_origin {
        CertificateOrigin::Owner => "owner",
        CertificateOrigin::Operator => "operator",
        CertificateOrigin::SelfSigned | CertificateOrigin::Acme => "self",
    };
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    json!({
        "uuid": app.id,
        "name": app.name,
        "project_uuid": project_id,
        "owner_uuid": user.id,
        "domain_name": app.domain_name,
        "config_domain_name": app.config_domain_name,
        "docker": app.docker,
        "created_at": time(Some(app.created_at)),
        "ready_at": time(app.ready_at),
        "stopped_at": time(app.stopped_at.or(app.onerror_at)),
        "status": app.status,
        "plan": app.resource,
        "ssl_certificate_origin": origin,
        "expires_at": time(Some(app.expires_at)),
        "python_application": app.python_application,
        "healthcheck_endpoint": app.healthcheck_endpoint,
    })
}

/// The id of the caller's project named `name` ("" when it has none).
async fn project_id(state: &Shared, user: &User, name: &str) -> String {
    state
        .store
        .project(&user.id, name)
        .await
        .ok()
        .flatten()
        .map(|p| p.id)
        .unwrap_or_default()
}

/// `GET /projects/{uuid}/apps?name=&status=a,b`: the project's apps.
async fn project_apps(
    State(state): State<Shared>,
    Signed(caller): Signed,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(filter): Query<Filter>,
) -> Response {
    let project = match own_project(&state, &caller, &id).await {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let wanted: Option<Vec<String>> = filter
        .status
        .as_ref()
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(|s| s.trim().to_string()).collect());
    let apps: Vec<mse_api::apps::App> = match state
        .store
        .user_apps(
            &caller.0.id,
            &crate::domain::app::AppFilter {
                project: Some(project.name.clone()),
                name: filter.name.clone(),
                status: None,
                limit: None,
                offset: None,
            },
        )
        .await
    {
        Ok(apps) => super::wire::all(&apps),
        Err(e) => return refused(e.into()),
    };
    Json(
        apps.iter()
            .filter(|app| {
                wanted
                    .as_ref()
                    .is_none_or(|wanted| wanted.iter().any(|w| w.as_str() == app.status.as_str()))
            })
            .map(|app| app_json(&caller.0, &project.id, app))
            .collect::<Vec<_>>(),
    )
    .into_response()
}

/// `GET /plans/{name}`: a resource the caller may use, as a plan.
async fn plan(
    State(state): State<Shared>,
    Signed(caller): Signed,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    match state.store.resource(&caller.0.id, &name).await {
        // The original client takes `memory` for the enclave size (MB),
        // which its context records and its fingerprint covered.
        Ok(Some(r)) => match crate::domain::bounds::enclave_size(&r.enclave_size) {
            Ok(bytes) => Json(json!({"name": r.name, "memory": bytes >> 20, "cores": r.cores}))
                .into_response(),
            Err(e) => refused(crate::state::ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
            )),
        },
        Ok(None) => refused(crate::state::ApiError::not_found(format!(
            "no resource `{name}` for you: `GET /resources` lists yours"
        ))),
        Err(e) => refused(e.into()),
    }
}

/// The original's shape of what one of this platform's app handlers
/// answered.
async fn original_app(
    state: &Shared,
    caller: &crate::state::Caller,
    app: &mse_api::apps::App,
) -> Response {
    let project = project_id(state, &caller.0, &app.project).await;
    Json(app_json(&caller.0, &project, app)).into_response()
}

/// `GET /apps/{uuid}`.
async fn app(
    State(state): State<Shared>,
    Signed(caller): Signed,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match super::apps::get(
        State(state.clone()),
        duplicate(&caller),
        axum::extract::Path(id),
    )
    .await
    {
        Ok(Json(app)) => original_app(&state, &caller, &app).await,
        Err(e) => refused(e),
    }
}

/// The same caller again, for a handler that takes it.
fn duplicate(caller: &crate::state::Caller) -> crate::state::Caller {
    crate::state::Caller(
        caller.0.clone(),
        crate::state::auth::Grant {
            token: caller.1.token.clone(),
            admin_user: caller.1.admin_user,
        },
    )
}

/// `POST /apps/{uuid}/stop`.
async fn stop_app(
    State(state): State<Shared>,
    Signed(caller): Signed,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match super::apps::stop(
        State(state.clone()),
        duplicate(&caller),
        axum::extract::Path(id),
    )
    .await
    {
        Ok((_, Json(app))) => original_app(&state, &caller, &app).await,
        Err(e) => refused(e),
    }
}

/// `DELETE /apps/{uuid}`: a stopped or failed app removed.
async fn remove_app(
    State(state): State<Shared>,
    Signed(caller): Signed,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match super::apps::remove(State(state), caller, axum::extract::Path(id)).await {
        Ok(status) => status.into_response(),
        Err(e) => refused(e),
    }
}

/// `GET /apps/{uuid}/logs`: the log's last bytes as `{"stdout": …}`.
async fn app_logs(
    State(state): State<Shared>,
    Signed(caller): Signed,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let response = match super::apps::logs(State(state), caller, axum::extract::Path(id)).await {
        Ok(response) => response,
        Err(e) => return refused(e),
    };
    let text = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    Json(json!({"stdout": text})).into_response()
}

/// The `conf` part of the original client's `POST /apps`.
#[derive(Debug, Deserialize)]
struct OriginalConf {
    name: String,
    project: String,
    #[serde(default)]
    dev_mode: bool,
    healthcheck_endpoint: String,
    python_application: String,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    ssl_certificate: Option<String>,
    #[serde(default)]
    domain_name: Option<String>,
    plan: String,
    docker: String,
}

/// A 4xx in the shape of this platform's errors.
fn bad(status: StatusCode, why: impl Into<String>) -> Response {
    refused(crate::state::ApiError::new(status, why))
}

/// The original's `conf` as this platform's deployment configuration: its
/// `plan` is our resource, `dev_mode` the operator's certificate, an
/// `ssl_certificate` with its `domain_name` owner mode; a zero-trust app
/// keeps its node's RA-TLS certificate, as on the original.
fn deploy_config(conf: OriginalConf) -> Result<mse_api::apps::DeployConfig, String> {
    let expiration_date = conf
        .expires_at
        .map(|text| {
            chrono::DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| format!("conf.expires_at `{text}`: {e}"))
        })
        .transpose()?;
    let ssl = match (conf.domain_name, conf.ssl_certificate) {
        (Some(domain_name), Some(certificate)) => Some(mse_api::apps::DeploySsl {
            domain_name,
            certificate,
        }),
        (None, None) => None,
        _ => return Err("conf.domain_name and conf.ssl_certificate go together".into()),
    };
    Ok(mse_api::apps::DeployConfig {
        storage_bytes: None,
        name: conf.name,
        project: conf.project,
        resource: conf.plan,
        docker: conf.docker,
        python_application: conf.python_application,
        healthcheck_endpoint: conf.healthcheck_endpoint,
        expiration_date,
        untrusted_ssl: conf.dev_mode && ssl.is_none(),
        ssl,
        no_acme: true,
    })
}

/// `POST /apps`: the original's multipart (`code`, `conf`) deployed as
/// this platform's `POST /apps` deploys (same checks, quotas and
/// placement); the app in the original's shape.
async fn deploy(
    State(state): State<Shared>,
    Signed(caller): Signed,
    request: axum::extract::Request,
) -> Response {
    // The route's body limit travels in the request's extensions: the
    // upload handed on keeps it.
    let extensions = request.extensions().clone();
    let mut multipart =
        match <axum::extract::Multipart as axum::extract::FromRequest<()>>::from_request(
            request,
            &(),
        )
        .await
        {
            Ok(multipart) => multipart,
            Err(e) => return e.into_response(),
        };
    let (mut code, mut conf) = (None, None);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return bad(StatusCode::BAD_REQUEST, format!("the upload: {e}")),
        };
        let name = field.name().unwrap_or_default().to_string();
        let bytes = match field.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return bad(StatusCode::BAD_REQUEST, format!("part `{name}`: {e}")),
        };
        let slot = match name.as_str() {
            "code" => &mut code,
            "conf" => &mut conf,
            other => {
                return bad(
                    StatusCode::BAD_REQUEST,
                    format!("unknown part `{other}`: the parts are `code` and `conf`"),
                )
            }
        };
        if slot.replace(bytes).is_some() {
            return bad(
                StatusCode::BAD_REQUEST,
                format!("part `{name}` given twice"),
            );
        }
    }
    let (Some(code), Some(conf)) = (code, conf) else {
        return bad(
            StatusCode::BAD_REQUEST,
            "the parts `code` and `conf` are required",
        );
    };
    let conf: OriginalConf = match serde_json::from_slice(&conf) {
        Ok(conf) => conf,
        Err(e) => return bad(StatusCode::UNPROCESSABLE_ENTITY, format!("conf: {e}")),
    };
    let config = match deploy_config(conf) {
        Ok(config) => config,
        Err(why) => return bad(StatusCode::UNPROCESSABLE_ENTITY, why),
    };
    // Handed on as this platform's own upload.
    let boundary = format!("mse-compat-{}", hex::encode(rand::random::<[u8; 16]>()));
    let mut body = Vec::with_capacity(code.len() + 1024);
    let config_json = serde_json::to_vec(&config).unwrap_or_default();
    for (name, extra, content) in [
        (
            "config",
            "Content-Type: application/json\r\n",
            config_json.as_slice(),
        ),
        ("code", "Content-Type: application/x-tar\r\n", code.as_ref()),
    ] {
        let filename = if name == "code" {
            "; filename=\"code.tar\""
        } else {
            ""
        };
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{filename}\r\n{extra}\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let mut request = match axum::http::Request::builder()
        .method(axum::http::Method::POST)
        .uri("/apps")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(axum::body::Body::from(body))
    {
        Ok(request) => request,
        Err(e) => return bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    *request.extensions_mut() = extensions;
    let ours = match <axum::extract::Multipart as axum::extract::FromRequest<()>>::from_request(
        request,
        &(),
    )
    .await
    {
        Ok(multipart) => multipart,
        Err(e) => return e.into_response(),
    };
    match super::apps::create(State(state.clone()), duplicate(&caller), ours).await {
        Ok((_, Json(created))) => original_app(&state, &caller, &created.app).await,
        Err(e) => refused(e),
    }
}
