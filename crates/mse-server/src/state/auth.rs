//! Who calls: bearer tokens (stored hashed), their scopes, and the caller
//! every authenticated handler takes.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};
use mse_api::account::Scope;
use sha2::{Digest, Sha256};

use super::error::{ApiError, ApiResult};
use super::{now, Shared};
use crate::domain::accounts::{Token, User};
use crate::store::{Store, StoreError};

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

pub(crate) use crate::domain::lifecycle::utc;

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
            ApiError::unauthorized(
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
            return Err(ApiError::forbidden(format!(
                "user disabled: an administrator disabled `{}`, and its tokens are refused \
                     until one enables it again (`POST /users/{}/enable`)",
                user.name, user.id
            )));
        }
        if let Some(at) = token.expires_at.filter(|at| *at <= now()) {
            return Err(ApiError::unauthorized(format!(
                "token `{}` expired at {}: use another token, make a new one with a token \
                     that works (`POST /tokens`, or the console's Tokens page), or ask an \
                     administrator for one (`POST /users/{}/tokens`)",
                token.name,
                utc(at),
                user.id
            )));
        }
        let needed = needed_scope(&parts.method);
        if !token.scope.covers(needed) {
            return Err(ApiError::forbidden(format!(
                "this token's scope is `{}`, which allows GET requests only; {} needs scope \
                     `{needed}`: use a token of that scope",
                token.scope, parts.method
            )));
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
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Refuses a caller whose token may not administer the platform.
pub fn require_admin(caller: &Caller) -> ApiResult<()> {
    if caller.0.is_admin {
        Ok(())
    } else if caller.1.admin_user {
        Err(ApiError::forbidden(format!(
            "this token's scope is `{}`; administering the platform needs scope `admin`: \
                 use an administrator's token of scope admin",
            caller.1.token.scope
        )))
    } else {
        Err(ApiError::forbidden("only an administrator may do this"))
    }
}
