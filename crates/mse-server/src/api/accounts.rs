//! The accounts' routes: the caller, users and their grants (admin),
//! projects and resources.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use mse_api::account::{NewGrant, NewProject, NewResource, NewToken, NewUser, UserCreated};

use super::wire;
use crate::domain::bounds;
use crate::domain::quota::MAX_LIVE_APPS_BOUND;
use crate::state::auth::issue_token;
use crate::state::{now, require_admin, ApiError, ApiResult, Caller, Shared};
use crate::store::is_conflict;

/// Refuses a name that is not one (`what` names the field).
pub(crate) fn check_name(what: &str, name: &str) -> ApiResult<()> {
    mse_config::fields::check_name(what, name).map_err(ApiError::unprocessable)
}

/// `GET /me`: the caller.
pub async fn me(caller: Caller) -> Json<mse_api::account::User> {
    Json((&caller.0).into())
}

/// `GET /users` (admin): every user with the resources granted to it.
pub async fn list_users(
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

/// `POST /users` (admin): a new user and its first token.
pub async fn create_user(
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
            return Err(ApiError::conflict(format!(
                "a user named `{}` exists",
                body.name
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let first = NewToken {
        name: "first".to_string(),
        expires_in: None,
        scope: None,
    };
    let (scope, expires_at) = super::tokens::terms(
        &caller.1.token,
        super::tokens::widest_scope(user.is_admin),
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

/// `POST /users/{id}/grants` (admin): grants a resource to a user.
pub async fn grant(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<NewGrant>,
) -> ApiResult<StatusCode> {
    require_admin(&caller)?;
    if state.store.user(&id).await?.is_none() {
        return Err(ApiError::not_found("user not found"));
    }
    if !state.store.resource_exists(&body.resource).await? {
        return Err(ApiError::not_found("resource not found"));
    }
    state.store.grant(&id, &body.resource).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /projects`: the caller's projects.
pub async fn list_projects(
    State(state): State<Shared>,
    caller: Caller,
) -> ApiResult<Json<Vec<mse_api::account::Project>>> {
    Ok(Json(wire::all(&state.store.projects(&caller.0.id).await?)))
}

/// `POST /projects`: a new project of the caller.
pub async fn create_project(
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
        Err(e) if is_conflict(&e) => Err(ApiError::conflict(format!(
            "you have a project named `{}` already",
            body.name
        ))),
        Err(e) => Err(e.into()),
    }
}

/// `GET /projects/{name}`: one of the caller's projects.
pub async fn get_project(
    State(state): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<mse_api::account::Project>> {
    state
        .store
        .project(&caller.0.id, &name)
        .await?
        .map(|project| Json((&project).into()))
        .ok_or_else(|| ApiError::not_found(format!("project `{name}` not found")))
}

/// `GET /resources`: the resources the caller may use.
pub async fn list_resources(
    State(state): State<Shared>,
    caller: Caller,
) -> ApiResult<Json<Vec<mse_api::account::Resource>>> {
    Ok(Json(wire::all(&state.store.resources(&caller.0.id).await?)))
}

/// `GET /resources/{name}`: one resource the caller may use.
pub async fn get_resource(
    State(state): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<mse_api::account::Resource>> {
    state
        .store
        .resource(&caller.0.id, &name)
        .await?
        .map(|resource| Json((&resource).into()))
        .ok_or_else(|| ApiError::not_found(format!("resource `{name}` not found")))
}

/// `POST /resources` (admin): a new resource, its numbers within their bounds.
pub async fn create_resource(
    State(state): State<Shared>,
    caller: Caller,
    Json(body): Json<NewResource>,
) -> ApiResult<(StatusCode, Json<mse_api::account::Resource>)> {
    require_admin(&caller)?;
    mse_config::fields::check_resource(&body.name).map_err(ApiError::unprocessable)?;
    let memory_mb = bounds::integer("memory_mb", &body.memory_mb, &bounds::MEMORY_MB)?;
    let cores = bounds::integer("cores", &body.cores, &bounds::CORES)?;
    let default_hours =
        bounds::integer("default_hours", &body.default_hours, &bounds::DEFAULT_HOURS)?;
    bounds::enclave_size(&body.enclave_size)?;
    if let Some(n) = body.max_live_apps {
        if !(0..=MAX_LIVE_APPS_BOUND).contains(&n) {
            return Err(ApiError::bad_request(format!(
                "max_live_apps must be an integer from 0 to {}, or null, not `{n}`",
                MAX_LIVE_APPS_BOUND
            )));
        }
    }
    let resource = crate::domain::accounts::Resource {
        name: body.name,
        memory_mb,
        cores,
        enclave_size: body.enclave_size,
        default_hours,
        public: body.public,
        max_live_apps: body.max_live_apps,
        tees: {
            let mut tees = body.tees;
            tees.sort();
            tees.dedup();
            tees
        },
    };
    match state.store.create_resource(&resource).await {
        Ok(()) => Ok((StatusCode::CREATED, Json((&resource).into()))),
        Err(e) if is_conflict(&e) => Err(ApiError::conflict(format!(
            "a resource named `{}` exists",
            resource.name
        ))),
        Err(e) => Err(e.into()),
    }
}
