//! The key service's side of the API (docs/keys.md): its public
//! description, owners' keep-running tickets, and what the service itself
//! calls with its credential: redeeming tickets, its sealed records.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::Json;
use mse_api::keys::{
    KeyServiceInfo, PendingRelease, Released, SealedRecord, Ticket, TicketInfo, MAX_SEALED,
};
use serde::Deserialize;

use crate::state::auth::token_hash;
use crate::state::{now, ApiError, ApiResult, Caller, Shared};

/// `GET /keys`: the key service's domain, measurement, TEE and node, and
/// whether it runs now.
pub async fn info(State(state): State<Shared>) -> ApiResult<Json<KeyServiceInfo>> {
    let domain = mse_api::keys::domain(&state.base_domain);
    Ok(Json(match state.store.key_service(now()).await? {
        Some(row) => KeyServiceInfo {
            domain,
            measurement: Some(row.measurement),
            tee: Some(row.tee),
            node: Some(row.node_id),
            running: row.live,
        },
        None => KeyServiceInfo {
            domain,
            measurement: None,
            tee: None,
            node: None,
            running: false,
        },
    }))
}

/// How long a keep-running ticket may wait to be redeemed, seconds.
const TICKET_SECS: i64 = 300;
/// What every key-service credential starts with.
pub const CREDENTIAL_PREFIX: &str = "msekeys_";

/// `POST /apps/{id}/keep-running`: the owner asks for the app's keys to be
/// kept by the key service; a single-use ticket for the service, which
/// marks the app kept when it redeems it.
pub async fn keep_running(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Ticket>> {
    let app = super::apps::own_app(&state, &caller, &id).await?;
    if app.status.is_terminal() {
        return Err(ApiError::conflict(format!(
            "app {id} is {}: only a live app's keys can be kept",
            app.status.as_str()
        )));
    }
    let bytes: [u8; 32] = rand::random();
    let ticket = format!("msekt_{}", hex::encode(bytes));
    let at = now();
    let expires_at = at + TICKET_SECS;
    state
        .store
        .add_key_ticket(&token_hash(&ticket), &id, expires_at, at)
        .await?;
    Ok(Json(Ticket { ticket, expires_at }))
}

/// The key service making a call, by the credential its node gave it.
pub struct ServiceCaller;

impl FromRequestParts<Shared> for ServiceCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let missing = || ApiError::unauthorized("only the key service may call this");
        let credential = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::state::auth::bearer_token)
            .filter(|c| c.starts_with(CREDENTIAL_PREFIX))
            .ok_or_else(missing)?;
        if state
            .store
            .is_key_service_credential(&token_hash(credential))
            .await?
        {
            Ok(ServiceCaller)
        } else {
            Err(missing())
        }
    }
}

/// The body of `POST /keys/tickets/redeem`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redeem {
    ticket: String,
}

/// `POST /keys/tickets/redeem`: whose app a ticket is for, once.
pub async fn redeem(
    State(state): State<Shared>,
    _service: ServiceCaller,
    Json(body): Json<Redeem>,
) -> ApiResult<Json<TicketInfo>> {
    let refused = || ApiError::forbidden("unknown, used or expired ticket: ask for a new one");
    let app_id = state
        .store
        .redeem_key_ticket(&token_hash(&body.ticket), now())
        .await?
        .ok_or_else(refused)?;
    let app = state.store.app(&app_id).await?.ok_or_else(refused)?;
    let owner = state.store.app_owner(&app_id).await?.ok_or_else(refused)?;
    Ok(Json(TicketInfo {
        app_id,
        owner,
        project: app.project,
        name: app.spec.name,
        fingerprint: app.fingerprint,
    }))
}

/// The query of `GET /keys/record`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordQuery {
    name: String,
}

/// `GET /keys/record?name=`: a sealed record of the key service.
pub async fn get_record(
    State(state): State<Shared>,
    _service: ServiceCaller,
    Query(query): Query<RecordQuery>,
) -> ApiResult<Json<SealedRecord>> {
    let sealed = state
        .store
        .key_record(&query.name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no record {}", query.name)))?;
    Ok(Json(SealedRecord {
        name: query.name,
        sealed,
    }))
}

/// `PUT /keys/record`: stores a sealed record of the key service.
pub async fn put_record(
    State(state): State<Shared>,
    _service: ServiceCaller,
    Json(record): Json<SealedRecord>,
) -> ApiResult<axum::http::StatusCode> {
    if record.name.is_empty() || record.name.len() > 1024 {
        return Err(ApiError::bad_request("a record's name is 1 to 1024 bytes"));
    }
    if record.sealed.len() > MAX_SEALED {
        return Err(ApiError::too_large(format!(
            "a sealed record is at most {MAX_SEALED} bytes of base64"
        )));
    }
    state
        .store
        .put_key_record(&record.name, &record.sealed, now())
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// `GET /keys/pending`: the apps restarted on another node whose keys the
/// service is to release, with the hosts the platform revoked.
pub async fn pending(
    State(state): State<Shared>,
    _service: ServiceCaller,
) -> ApiResult<Json<Vec<PendingRelease>>> {
    let revoked: Vec<String> = crate::data::quote_keys::revoked_nodes(&state.store)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .into_iter()
        .collect();
    let mut pending = state.store.pending_releases().await?;
    for app in &mut pending {
        app.revoked_hosts.clone_from(&revoked);
    }
    Ok(Json(pending))
}

/// `POST /keys/released`: what the service did for a pending app, noted
/// for its owner.
pub async fn released(
    State(state): State<Shared>,
    _service: ServiceCaller,
    Json(body): Json<Released>,
) -> ApiResult<axum::http::StatusCode> {
    let note = match (body.released, &body.reason) {
        (true, _) => "keys released by the key service".to_string(),
        (false, reason) => format!(
            "keys refused by the key service: {}",
            mse_api::text::one_line(reason.as_deref().unwrap_or("no reason given"))
        ),
    };
    let note: String = note.chars().take(1024).collect();
    state.store.note_rescheduled(&body.app_id, &note).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
