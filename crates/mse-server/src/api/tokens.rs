//! API tokens and who may use them: a token's scope and lifetime, the rule
//! that a token never makes one that outlives it or may do more, and an
//! administrator's hold on every user's tokens (list, revoke, disable the
//! user). The caller's token is checked in [`crate::state::Caller`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use mse_api::account::{NewToken, Scope, TokenCreated};

use crate::api::wire;
use crate::domain::accounts::{Token, User};
use crate::domain::app::AppFilter;
use crate::state::auth::issue_token;
use crate::state::{now, require_admin, ApiError, Caller, Shared};

type ApiResult<T> = Result<T, ApiError>;

/// The widest scope a token of `user` may have: `admin` for an
/// administrator, `deploy` for anyone else.
pub fn widest_scope(user_is_admin: bool) -> Scope {
    if user_is_admin {
        Scope::Admin
    } else {
        Scope::Deploy
    }
}

/// The scope and expiry (Unix seconds; `None`: until revoked) of a token
/// asked for with `body`, made with the token `maker` for a user whose
/// widest scope is `widest`, on a platform whose tokens live at most
/// `max_lifetime` seconds.
///
/// The scope defaults to the maker's (within `widest`), the lifetime to
/// the platform's maximum; neither may exceed the maker's: a scope it does
/// not cover, or an expiry after its own, is refused (403), and a default
/// expiry is cut to the maker's.
pub fn terms(
    maker: &Token,
    widest: Scope,
    body: &NewToken,
    max_lifetime: Option<i64>,
    now: i64,
) -> ApiResult<(Scope, Option<i64>)> {
    let scope = body.scope.unwrap_or(maker.scope.min(widest));
    if !maker.scope.covers(scope) {
        return Err(ApiError::forbidden(format!(
            "this token's scope is `{}`: a token never makes one that may do more than \
                 itself; ask for scope {} or less, or use a token of scope `{scope}`",
            maker.scope, maker.scope
        )));
    }
    if !widest.covers(scope) {
        return Err(ApiError::forbidden(format!(
            "scope `{scope}` is for administrators' tokens: ask for scope read or deploy"
        )));
    }
    let asked = body
        .expires_in
        .as_ref()
        .map(|n| {
            crate::domain::bounds::integer(
                "expires_in",
                n,
                &crate::domain::bounds::TOKEN_LIFETIME_SECS,
            )
        })
        .transpose()
        .map_err(|e| ApiError::bad_request(e.0))?;
    if let (Some(asked), Some(max)) = (asked, max_lifetime) {
        if asked > max {
            return Err(ApiError::bad_request(format!(
                "expires_in {asked} s is over this platform's longest token lifetime, \
                     {max} s (the operator's --max-token-lifetime): ask for at most {max}"
            )));
        }
    }
    let mut expires_at = asked.or(max_lifetime).map(|s| now.saturating_add(s));
    if let Some(limit) = maker.expires_at {
        match expires_at {
            Some(at) if at > limit && asked.is_some() => {
                return Err(ApiError::forbidden(format!(
                    "a token never outlives the token that makes it, and this one expires \
                         in {} s: ask for expires_in of at most that",
                    limit.saturating_sub(now).max(0)
                )))
            }
            Some(at) => expires_at = Some(at.min(limit)),
            None => expires_at = Some(limit),
        }
    }
    Ok((scope, expires_at))
}

fn check_name(name: &str) -> ApiResult<()> {
    mse_config::fields::check_name("name", name).map_err(ApiError::unprocessable)
}

/// Makes `user` a token asked for with `body`, with the caller's token.
async fn make(
    state: &Shared,
    caller: &Caller,
    user: &User,
    admin_user: bool,
    body: &NewToken,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    check_name(&body.name)?;
    let at = now();
    let (scope, expires_at) = terms(
        &caller.1.token,
        widest_scope(admin_user),
        body,
        state.max_token_lifetime,
        at,
    )?;
    let (token, secret) =
        issue_token(&state.store, &user.id, &body.name, scope, expires_at, at).await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token: (&token).into(),
            secret,
        }),
    ))
}

/// `GET /tokens`: the caller's working tokens.
pub async fn list(
    State(state): State<Shared>,
    caller: Caller,
) -> ApiResult<Json<Vec<mse_api::account::Token>>> {
    Ok(Json(wire::all(
        &state.store.tokens(&caller.0.id, now()).await?,
    )))
}

/// `POST /tokens`: a token of the caller, within its token's scope and
/// lifetime.
pub async fn create(
    State(state): State<Shared>,
    caller: Caller,
    Json(body): Json<NewToken>,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    make(&state, &caller, &caller.0, caller.1.admin_user, &body).await
}

/// `DELETE /tokens/{id}`: one of the caller's tokens, or anyone's for an
/// administrator.
pub async fn revoke(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let owner = (!caller.0.is_admin).then_some(caller.0.id.as_str());
    if state.store.revoke_token(owner, &id, now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "token not found: see GET /tokens for the ids of your working tokens",
        ))
    }
}

async fn user(state: &Shared, id: &str) -> ApiResult<User> {
    state.store.user(id).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "user `{id}` not found: see GET /users for the users' ids"
        ))
    })
}

/// `GET /users/{id}/tokens` (administrator): a user's working tokens.
pub async fn list_of_user(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<mse_api::account::Token>>> {
    require_admin(&caller)?;
    let user = user(&state, &id).await?;
    Ok(Json(wire::all(&state.store.tokens(&user.id, now()).await?)))
}

/// `POST /users/{id}/tokens` (administrator): a token for a user, for one
/// whose tokens all expired or were revoked.
pub async fn create_for_user(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<NewToken>,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    require_admin(&caller)?;
    let user = user(&state, &id).await?;
    make(&state, &caller, &user, user.is_admin, &body).await
}

/// `POST /users/{id}/disable` (administrator): the user's tokens are
/// refused from now on, and its live apps stop.
pub async fn disable(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<mse_api::account::User>> {
    require_admin(&caller)?;
    let target = user(&state, &id).await?;
    if target.id == caller.0.id {
        return Err(ApiError::conflict(
            "you cannot disable yourself: another administrator can",
        ));
    }
    let at = now();
    state.store.set_user_disabled(&target.id, Some(at)).await?;
    // After the user's row says so: a deploy counted before is live here,
    // one counted after is refused.
    let apps = state
        .store
        .user_apps(&target.id, &AppFilter::default())
        .await?;
    for app in apps.iter().filter(|app| !app.status.is_terminal()) {
        crate::api::apps::stop_app(
            &state,
            &app.id,
            crate::domain::lifecycle::STOPPED_USER_DISABLED,
        )
        .await?;
    }
    Ok(Json((&user(&state, &id).await?).into()))
}

/// `POST /users/{id}/enable` (administrator): the user's tokens that did
/// not expire and were not revoked work again; its apps stay stopped.
pub async fn enable(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<mse_api::account::User>> {
    require_admin(&caller)?;
    let target = user(&state, &id).await?;
    state.store.set_user_disabled(&target.id, None).await?;
    Ok(Json((&user(&state, &id).await?).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maker(scope: Scope, expires_at: Option<i64>) -> Token {
        Token {
            id: "t".into(),
            name: "maker".into(),
            created_at: 0,
            scope,
            expires_at,
        }
    }

    fn asked(scope: Option<Scope>, expires_in: Option<i64>) -> NewToken {
        NewToken {
            name: "new".into(),
            expires_in: expires_in.map(Into::into),
            scope,
        }
    }

    #[test]
    fn a_token_never_makes_one_that_outlives_it_or_may_do_more() {
        let now = 1_000;
        let read = maker(Scope::Read, Some(now + 60));
        // Defaults: the maker's scope and expiry.
        assert_eq!(
            terms(&read, Scope::Deploy, &asked(None, None), None, now).unwrap(),
            (Scope::Read, Some(now + 60))
        );
        // Wider, or longer: refused, saying why.
        let e = terms(
            &read,
            Scope::Deploy,
            &asked(Some(Scope::Deploy), None),
            None,
            now,
        )
        .unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert!(e.message().contains("scope is `read`"), "{}", e.message());
        let e = terms(&read, Scope::Deploy, &asked(None, Some(61)), None, now).unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert!(e.message().contains("at most that"), "{}", e.message());
        // Shorter: kept.
        assert_eq!(
            terms(&read, Scope::Deploy, &asked(None, Some(30)), None, now).unwrap(),
            (Scope::Read, Some(now + 30))
        );
        // The platform's maximum: the default, and a bound.
        let forever = maker(Scope::Deploy, None);
        assert_eq!(
            terms(&forever, Scope::Deploy, &asked(None, None), Some(3600), now).unwrap(),
            (Scope::Deploy, Some(now + 3600))
        );
        assert_eq!(
            terms(&forever, Scope::Deploy, &asked(None, None), None, now).unwrap(),
            (Scope::Deploy, None)
        );
        let e = terms(
            &forever,
            Scope::Deploy,
            &asked(None, Some(3601)),
            Some(3600),
            now,
        )
        .unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(
            e.message().contains("--max-token-lifetime"),
            "{}",
            e.message()
        );
        // A default within the platform's maximum is cut to the maker's.
        assert_eq!(
            terms(&read, Scope::Deploy, &asked(None, None), Some(3600), now).unwrap(),
            (Scope::Read, Some(now + 60))
        );
        // Out of bounds.
        for bad in [0, -1, i64::MAX] {
            let e = terms(&forever, Scope::Deploy, &asked(None, Some(bad)), None, now).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{bad}");
            assert!(e.message().contains("expires_in"), "{}", e.message());
        }
    }

    #[test]
    fn only_an_administrators_token_has_scope_admin() {
        let admin = maker(Scope::Admin, None);
        // An administrator's token makes a user's token of the user's
        // widest scope by default, never admin.
        assert_eq!(
            terms(&admin, Scope::Deploy, &asked(None, None), None, 0).unwrap(),
            (Scope::Deploy, None)
        );
        let e = terms(
            &admin,
            Scope::Deploy,
            &asked(Some(Scope::Admin), None),
            None,
            0,
        )
        .unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            terms(&admin, Scope::Admin, &asked(None, None), None, 0).unwrap(),
            (Scope::Admin, None)
        );
        let deploy = maker(Scope::Deploy, None);
        assert!(terms(
            &deploy,
            Scope::Admin,
            &asked(Some(Scope::Admin), None),
            None,
            0
        )
        .is_err());
    }
}
