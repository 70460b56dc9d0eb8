//! The key service's side of the API (docs/keys.md): its public
//! description, owners' keep-running tickets, and what the service itself
//! calls with its credential: redeeming tickets, its sealed records.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::Json;
use mse_api::keys::{
    KeyServiceInfo, PendingRelease, RecoveryHolders, Released, Replica, ReplicaInfo,
    ReplicaStarted, RootCheck, SealedRecord, SealedShares, Ticket, TicketInfo, MAX_SEALED,
};
use serde::Deserialize;

use crate::domain::lifecycle::Status;
use crate::state::auth::token_hash;
use crate::state::{now, ApiError, ApiResult, Caller, Shared};

/// `GET /keys`: the key service's domain, measurement, TEE and node (its
/// leader's), and whether it runs now.
pub async fn info(State(state): State<Shared>) -> ApiResult<Json<KeyServiceInfo>> {
    let domain = mse_api::keys::domain(&state.base_domain);
    let platform = state.store.root_check().await?;
    let replicas = state.store.key_replicas(now()).await?;
    let listed = replicas
        .iter()
        .map(|r| ReplicaInfo {
            node: r.node_id.clone(),
            live: r.live,
            holds_root: platform.is_some() && r.root_check == platform,
        })
        .collect();
    Ok(Json(match replicas.into_iter().next() {
        Some(row) => KeyServiceInfo {
            domain,
            running: row.live && platform.is_some() && row.root_check == platform,
            measurement: Some(row.measurement),
            tee: Some(row.tee),
            node: Some(row.node_id),
            replicas: listed,
        },
        None => KeyServiceInfo {
            domain,
            measurement: None,
            tee: None,
            node: None,
            running: false,
            replicas: listed,
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

/// A replica of the key service making a call, by the credential its node
/// gave it: the node that runs it.
pub struct ServiceCaller(pub String);

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
        state
            .store
            .key_service_by_credential(&token_hash(credential))
            .await?
            .map(ServiceCaller)
            .ok_or_else(missing)
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
    // Its node, while it waits for its configuration.
    let waiting = match (&app.node_addr, &app.node_owner) {
        (Some(node_addr), Some(node)) if app.status == Status::Initializing => {
            Some(PendingRelease {
                app_id: app_id.clone(),
                owner: owner.clone(),
                project: app.project.clone(),
                name: app.spec.name.clone(),
                config_domain: app.config_domain_name.clone(),
                node_addr: node_addr.clone(),
                node: node.clone(),
                revoked_hosts: crate::data::quote_keys::revoked_nodes(&state.store)
                    .await
                    .map_err(|e| ApiError::unavailable(e.to_string()))?
                    .into_iter()
                    .collect(),
                docker: app.spec.docker.clone(),
            })
        }
        _ => None,
    };
    Ok(Json(TicketInfo {
        app_id,
        owner,
        project: app.project,
        name: app.spec.name,
        fingerprint: app.fingerprint,
        waiting,
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
    ServiceCaller(node): ServiceCaller,
) -> ApiResult<Json<Vec<PendingRelease>>> {
    // The leader releases; the other replicas wait to take over.
    let leader = state.store.key_service(now()).await?;
    if leader.is_none_or(|l| l.node_id != node) {
        return Ok(Json(Vec::new()));
    }
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

/// `GET /keys/root`: the check value of the platform's root key, if a
/// replica made it.
pub async fn root(
    State(state): State<Shared>,
    _service: ServiceCaller,
) -> ApiResult<Json<RootCheck>> {
    Ok(Json(RootCheck {
        check: state.store.root_check().await?,
        shares: Vec::new(),
    }))
}

/// `POST /keys/root`: the calling replica holds the root key of this check
/// value (the platform's from now on, when it had none).
pub async fn claim_root(
    State(state): State<Shared>,
    ServiceCaller(node): ServiceCaller,
    Json(body): Json<RootCheck>,
) -> ApiResult<Json<RootCheck>> {
    let check = body
        .check
        .clone()
        .filter(|c| c.len() == 16 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| ApiError::bad_request("check: 16 hex digits"))?;
    if body.shares.len() > usize::from(mse_keys::recovery::MAX_SHARES)
        || body
            .shares
            .iter()
            .any(|s| s.len() > 1024 || mse_keys::holders::holder_of(s).is_err())
    {
        return Err(ApiError::bad_request(
            "shares: at most 32 sealed shares (mse-share-box-v1.…, 1 kB each)",
        ));
    }
    match state
        .store
        .claim_root(&node, &check, &body.shares, now())
        .await
    {
        Ok(()) => Ok(Json(RootCheck {
            check: Some(check),
            shares: Vec::new(),
        })),
        Err(crate::store::keys::RootClaimError::Store(e)) => Err(e.into()),
        Err(other) => Err(ApiError::conflict(other.to_string())),
    }
}

/// `GET /keys/replicas`: the other live replicas holding the platform's
/// root key, the leader first.
pub async fn replicas(
    State(state): State<Shared>,
    ServiceCaller(node): ServiceCaller,
) -> ApiResult<Json<Vec<Replica>>> {
    let platform = state.store.root_check().await?;
    let replicas = state
        .store
        .key_replicas(now())
        .await?
        .into_iter()
        .filter(|r| r.live && r.node_id != node && platform.is_some() && r.root_check == platform)
        .map(|r| Replica {
            node: r.node_id,
            addr: r.addr,
            domain: r.domain,
        })
        .collect();
    Ok(Json(replicas))
}

/// `POST /nodes/key-service`: the calling host runs a replica of the key
/// service, on the port it says of the address the platform knows it by.
pub async fn host_replica_started(
    State(state): State<Shared>,
    super::hosts::NodeCaller(node): super::hosts::NodeCaller,
    Json(body): Json<ReplicaStarted>,
) -> ApiResult<axum::http::StatusCode> {
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(&body.measurement, 64) || !hex(&body.credential_hash, 64) || body.port == 0 {
        return Err(ApiError::bad_request(
            "a replica: port (1-65535), measurement and credential_hash (64 hex digits each)",
        ));
    }
    let address = node
        .address
        .as_deref()
        .ok_or_else(|| ApiError::conflict("this node has no address the proxy reaches"))?;
    let addr = std::net::SocketAddr::new(
        address
            .parse()
            .map_err(|_| ApiError::conflict("this node's address is not an IP"))?,
        body.port,
    )
    .to_string();
    let domain = mse_api::keys::domain(&state.base_domain);
    let started = crate::store::keys::StartedService {
        domain: &domain,
        node_id: &node.id,
        addr: &addr,
        measurement: &body.measurement,
        tee: node.tee,
        credential_hash: Some(&body.credential_hash),
    };
    state.store.set_key_service(&started, now()).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// `DELETE /nodes/key-service`: the calling host's replica ended.
pub async fn host_replica_ended(
    State(state): State<Shared>,
    super::hosts::NodeCaller(node): super::hosts::NodeCaller,
) -> ApiResult<axum::http::StatusCode> {
    state.store.clear_key_service(&node.id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// `GET /keys/recovery`: the holders the replica that makes the root key
/// seals its recovery shares to (`null`: none named).
pub async fn recovery(
    State(state): State<Shared>,
    _service: ServiceCaller,
) -> ApiResult<Json<Option<RecoveryHolders>>> {
    Ok(Json(state.recovery.clone()))
}

/// `GET /keys/recovery-shares` (admin): the root key's recovery shares,
/// each sealed to its holder, for the holders to keep; the platform cannot
/// open them.
pub async fn recovery_shares(
    State(state): State<Shared>,
    caller: Caller,
) -> ApiResult<Json<SealedShares>> {
    crate::state::require_admin(&caller)?;
    Ok(Json(SealedShares {
        check: state.store.root_check().await?,
        shares: state.store.root_shares().await?,
    }))
}
