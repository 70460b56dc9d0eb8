//! What each account may hold: its custom domains (first deployer keeps
//! one, the operator releases it) and its quotas (live apps, stored bytes;
//! per resource, live apps of everyone). The store enforces them when an
//! app is inserted; these are the rules' API and messages.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use mse_api::account::{Domain, QuotaUse, Resource};
use serde_json::Value;

use crate::api::wire;
use crate::domain::accounts::QuotaChange;
use crate::domain::quota::{QuotaExceeded, MAX_LIVE_APPS_BOUND, MAX_STORED_BYTES_BOUND};
use crate::state::{require_admin, ApiError, Caller, Shared};
use crate::store::Store;

/// Checks that a custom domain is not the platform's: the base domain and
/// every name under it are apps' and configuration domains.
pub fn check_custom_domain(name: &str, base_domain: &str) -> Result<(), String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let base = base_domain.trim_end_matches('.').to_ascii_lowercase();
    if name == base || name.ends_with(&format!(".{base}")) {
        return Err(format!(
            "ssl.domain_name: `{name}` is the platform's: `{base}` and every name under it are \
             apps' and configuration domains; use a domain of your own, or deploy without [ssl] \
             to be served at `<uuid>.{base}`"
        ));
    }
    Ok(())
}

/// The refusal of a deploy of another account's domain.
pub fn domain_taken(name: &str) -> ApiError {
    ApiError::conflict(format!(
        "domain {name} belongs to another account; its owner or the operator can release \
             it (the operator: `DELETE /domains/{name}`)"
    ))
}

/// The refusal of a deploy over a quota: 403, naming the quota, its use and
/// how to free some.
pub fn over_quota(refused: &QuotaExceeded) -> ApiError {
    ApiError::forbidden(refused.to_string())
}

/// A JSON object body, or a 400 saying what is wrong with it.
fn object(
    body: Result<Json<Value>, JsonRejection>,
    fields: &[&str],
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let bad = |m: String| ApiError::bad_request(m);
    let fields_text = fields.join(", ");
    let Json(body) = body.map_err(|e| bad(format!("{}: send a JSON object", e.body_text())))?;
    let Value::Object(map) = body else {
        return Err(bad(format!(
            "send a JSON object with {fields_text}, not `{body}`"
        )));
    };
    if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown field `{unknown}`: the fields are {fields_text}"
        )));
    }
    Ok(map)
}

/// A field that is absent (`None`), `null` (`Some(None)`) or an integer
/// from 0 to `max` (`Some(Some(n))`); anything else is a 400 naming the
/// field and the range.
fn bounded(
    map: &serde_json::Map<String, Value>,
    field: &str,
    max: i64,
) -> Result<Option<Option<i64>>, ApiError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(value) => value
            .as_i64()
            .filter(|n| (0..=max).contains(n))
            .map(|n| Some(Some(n)))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{field} must be an integer from 0 to {max}, or null, not `{value}`"
                ))
            }),
    }
}

/// `GET /domains`: every custom domain and its owner for an administrator,
/// the caller's own for a user.
pub async fn list_domains(
    State(state): State<Shared>,
    caller: Caller,
) -> Result<Json<Vec<Domain>>, ApiError> {
    let user = (!caller.0.is_admin).then_some(caller.0.id.as_str());
    Ok(Json(wire::all(&state.store.domains(user).await?)))
}

/// `DELETE /domains/{name}` (administrator): the next user to deploy the
/// domain gets it. A live app on it keeps running, and no other app can
/// take the domain while it does.
pub async fn release_domain(
    State(state): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    if state.store.release_domain(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "domain {name} belongs to nobody; see GET /domains"
        )))
    }
}

async fn quota_view(store: &Store, id: &str) -> Result<Json<QuotaUse>, ApiError> {
    store
        .user_quota(id)
        .await?
        .map(|(quota, usage)| Json(wire::quota_use(&quota, &usage)))
        .ok_or_else(|| ApiError::not_found("user not found"))
}

/// `GET /users/{id}/quota`: an administrator, or the user itself.
pub async fn get_quota(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<QuotaUse>, ApiError> {
    if !caller.0.is_admin && caller.0.id != id {
        return Err(ApiError::not_found("user not found"));
    }
    quota_view(&state.store, &id).await
}

/// `PUT /users/{id}/quota` (administrator) `{max_live_apps?,
/// max_stored_bytes?}`: a number sets one, `null` returns it to the
/// default, an absent one is kept. Apps already live stay.
pub async fn set_quota(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<QuotaUse>, ApiError> {
    require_admin(&caller)?;
    let map = object(body, &["max_live_apps", "max_stored_bytes"])?;
    let change = QuotaChange {
        max_live_apps: bounded(&map, "max_live_apps", MAX_LIVE_APPS_BOUND)?,
        max_stored_bytes: bounded(&map, "max_stored_bytes", MAX_STORED_BYTES_BOUND)?,
    };
    if !state.store.set_user_quota(&id, &change).await? {
        return Err(ApiError::not_found("user not found"));
    }
    quota_view(&state.store, &id).await
}

/// `PUT /resources/{name}/quota` (administrator) `{max_live_apps}`: the
/// most live apps on the resource, every user's together; `null` lifts
/// the limit.
pub async fn set_resource_quota(
    State(state): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Resource>, ApiError> {
    require_admin(&caller)?;
    let map = object(body, &["max_live_apps"])?;
    let limit = bounded(&map, "max_live_apps", MAX_LIVE_APPS_BOUND)?.ok_or_else(|| {
        ApiError::bad_request(format!(
            "missing max_live_apps: an integer from 0 to {MAX_LIVE_APPS_BOUND}, or null for \
                 no limit"
        ))
    })?;
    if !state.store.set_resource_limit(&name, limit).await? {
        return Err(ApiError::not_found(format!("resource `{name}` not found")));
    }
    state
        .store
        .any_resource(&name)
        .await?
        .map(|resource| Json((&resource).into()))
        .ok_or_else(|| ApiError::not_found(format!("resource `{name}` not found")))
}

/// Records the package size of the apps stored before sizes were, from
/// their `code.tar` in the data folder (0 when it is gone), so that they
/// count in their users' stored bytes.
pub async fn record_package_sizes(
    store: &Store,
    data_dir: &std::path::Path,
) -> Result<(), crate::store::StoreError> {
    for id in store.apps_without_code_bytes().await? {
        let path = crate::data::dir::app_dir(data_dir, &id).join("code.tar");
        let bytes = std::fs::metadata(path)
            .map(|m| i64::try_from(m.len()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        store.set_code_bytes(&id, bytes).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_domain_and_every_name_under_it_are_not_custom_domains() {
        for name in [
            "localhost",
            "LocalHost",
            "a.localhost",
            "0b7c-uuid.localhost",
            "deep.a.LOCALHOST",
            "a.localhost.",
        ] {
            assert!(check_custom_domain(name, "localhost").is_err(), "{name}");
        }
        for name in ["example.com", "notlocalhost", "localhost.example.com"] {
            assert!(check_custom_domain(name, "localhost").is_ok(), "{name}");
        }
        assert!(check_custom_domain("x.apps.example.com", "Apps.Example.com").is_err());
        assert!(check_custom_domain("example.com", "apps.example.com").is_ok());
    }
}
