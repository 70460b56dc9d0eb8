//! The administrator's side of node hosts: join tokens (made, listed,
//! revoked), every node with its lease and apps (`GET /nodes`), and a
//! host's revocation, re-admission and removal. What hosts themselves call
//! is in [`super::hosts`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use mse_api::node::{
    Capacity, CreateJoinToken, JoinToken, JoinTokenCreated, JoinTokenInfo, NodeHost, DEFAULT_GRANT,
    MAX_TOKEN_HOSTS,
};

use crate::domain::lifecycle::{HOST_REMOVED, HOST_REVOKED};
use crate::domain::nodes::{JoinTokenRow, NodeKind};
use crate::domain::routing::unroutable;
use crate::state::{now, require_admin, ApiError, Caller, Shared};

/// The longest a join token may be valid, hours (a year).
const MAX_TOKEN_HOURS: u32 = 8760;

/// The largest memory a host may offer, MB (a petabyte).
pub(super) const MAX_MEMORY_MB: u64 = 1 << 30;

/// The most cores a host may offer.
pub(super) const MAX_CORES: u64 = 1 << 16;

pub(super) fn quote_key_error(e: crate::data::quote_keys::QuoteKeyError) -> ApiError {
    use crate::data::quote_keys::QuoteKeyError;
    match e {
        QuoteKeyError::Store(e) => e.into(),
        QuoteKeyError::Ca(..) => {
            eprintln!("{e}");
            ApiError::internal("the simulation CA is unreadable")
        }
        e => ApiError::unprocessable(e.to_string()),
    }
}

/// What a host joining with `token` is granted at most.
pub(super) fn grant_of(token: &JoinTokenRow) -> Capacity {
    let count =
        |v: Option<i64>, default: u64| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(default);
    Capacity {
        memory_mb: count(token.max_memory_mb, DEFAULT_GRANT.memory_mb),
        cores: count(token.max_cores, DEFAULT_GRANT.cores),
    }
}

/// `POST /nodes/tokens` (admin): a join token, shown once.
pub async fn create_token(
    State(state): State<Shared>,
    caller: Caller,
    body: Option<Json<CreateJoinToken>>,
) -> Result<(StatusCode, Json<JoinTokenCreated>), ApiError> {
    require_admin(&caller)?;
    let request = body.map(|Json(b)| b).unwrap_or_default();
    let hours = request.ttl_hours.unwrap_or(24);
    if !(1..=MAX_TOKEN_HOURS).contains(&hours) {
        return Err(ApiError::unprocessable(format!(
            "ttl_hours is {hours}: give 1 to {MAX_TOKEN_HOURS}"
        )));
    }
    let max_hosts = request.max_hosts.unwrap_or(1);
    if !(1..=MAX_TOKEN_HOSTS).contains(&max_hosts) {
        return Err(ApiError::unprocessable(format!(
            "max_hosts is {max_hosts}: give 1 to {MAX_TOKEN_HOSTS}"
        )));
    }
    for (name, value, max) in [
        ("max_memory_mb", request.max_memory_mb, MAX_MEMORY_MB),
        ("max_cores", request.max_cores, MAX_CORES),
    ] {
        if let Some(value) = value.filter(|v| !(1..=max).contains(v)) {
            return Err(ApiError::unprocessable(format!(
                "{name} is {value}: give 1 to {max}"
            )));
        }
    }
    if let Some(ip) = request.advertise {
        check_advertisable(&state, ip, None)?;
    }
    let ca_der = operator_ca_der(&state)?;
    let token = JoinToken::new(rand::random(), &ca_der);
    let at = now();
    let row = JoinTokenRow {
        hash: token.secret_hash(),
        created_by: caller.0.id.clone(),
        created_at: at,
        expires_at: at + i64::from(hours) * 3600,
        max_hosts: i64::from(max_hosts),
        max_memory_mb: request.max_memory_mb.map(|v| v as i64),
        max_cores: request.max_cores.map(|v| v as i64),
        advertise: request.advertise.map(|ip| ip.to_string()),
        revoked_at: None,
        hosts: Vec::new(),
    };
    state.store.add_join_token(&row).await?;
    Ok((
        StatusCode::CREATED,
        Json(JoinTokenCreated {
            token: token.to_string(),
            expires_at: row.expires_at,
            id: row.id().to_string(),
            max_hosts,
            grant: Some(grant_of(&row)),
        }),
    ))
}

/// `GET /nodes/tokens` (admin): every join token (never its secret), with
/// the hosts it joined.
pub async fn list_tokens(
    State(state): State<Shared>,
    caller: Caller,
) -> Result<Json<Vec<JoinTokenInfo>>, ApiError> {
    require_admin(&caller)?;
    let at = now();
    let tokens = state.store.join_tokens().await?;
    Ok(Json(
        tokens
            .iter()
            .map(|t| JoinTokenInfo {
                id: t.id().to_string(),
                created_by: t.created_by.clone(),
                created_at: t.created_at,
                expires_at: t.expires_at,
                max_hosts: u32::try_from(t.max_hosts).unwrap_or(0),
                hosts: t.hosts.clone(),
                grant: grant_of(t),
                advertise: t.advertise.as_deref().and_then(|a| a.parse().ok()),
                revoked: t.revoked_at.is_some(),
                usable: t.usable_at(at),
            })
            .collect(),
    ))
}

/// `DELETE /nodes/tokens/{id}` (admin): revokes a join token; it joins no
/// host after (hosts that joined with it keep their credential: revoke
/// them with `POST /nodes/{node}/revoke`).
pub async fn revoke_token(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    if state.store.revoke_join_token(&id, now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "no join token has this id: see `GET /nodes/tokens`",
        ))
    }
}

/// Refuses an address no host may advertise: one that is not a host's
/// ([`unroutable`]), or the platform's own (a listener's, or the one the
/// join reached, `local`).
pub(super) fn check_advertisable(
    state: &Shared,
    ip: std::net::IpAddr,
    local: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    if let Some(what) = unroutable(ip) {
        return Err(ApiError::unprocessable(format!(
            "advertise is {ip}, {what}: give the address the proxy reaches this host at"
        )));
    }
    let routes = state.routes.clone();
    if routes.is_platform_address(ip)
        || local.is_some_and(|l| l.to_canonical() == ip.to_canonical())
    {
        return Err(ApiError::unprocessable(format!(
            "advertise is {ip}, an address of the platform's own listeners: give the address \
             the proxy reaches this host at"
        )));
    }
    Ok(())
}

pub(super) fn operator_ca_der(state: &Shared) -> Result<Vec<u8>, ApiError> {
    let pem = std::fs::read(state.data.path("operator-ca.pem")).map_err(|e| {
        eprintln!("cannot read the operator CA: {e}");
        ApiError::internal("the operator CA is missing")
    })?;
    mse_attest::ratls::pem_to_der(&pem).map_err(|e| {
        eprintln!("the operator CA: {e}");
        ApiError::internal("the operator CA is broken")
    })
}

/// `GET /nodes` (admin): every node with its lease, capacity and apps.
pub async fn list(
    State(state): State<Shared>,
    caller: Caller,
) -> Result<Json<Vec<NodeHost>>, ApiError> {
    require_admin(&caller)?;
    let at = now();
    let revoked = crate::data::quote_keys::revoked_nodes(&state.store)
        .await
        .map_err(quote_key_error)?;
    let barred = state.store.barred_nodes().await?;
    let drained = state.store.drained_nodes().await?;
    let hosts = state
        .store
        .nodes()
        .await?
        .into_iter()
        .map(|n| {
            let count = |v: i64| u64::try_from(v).unwrap_or(0);
            NodeHost {
                live: n.node.live_at(at),
                lease_until: n.node.seen_at.saturating_add(n.node.lease_secs),
                kind: n.node.kind.as_str().to_string(),
                address: n.node.address.clone(),
                tee: n.node.tee,
                capacity: Capacity {
                    memory_mb: count(n.node.memory_mb),
                    cores: count(n.node.cores),
                },
                used: Capacity {
                    memory_mb: count(n.memory_mb),
                    cores: count(n.cores),
                },
                revoked: revoked.contains(&n.node.id),
                barred: barred.contains(&n.node.id),
                draining: drained.contains(&n.node.id),
                apps: n.apps,
                node: n.node.id,
            }
        })
        .collect();
    Ok(Json(hosts))
}

/// Ends the live apps of node `node` (`on_error`, `reason`) and their
/// routes; how many.
async fn end_apps(state: &Shared, node: &str, reason: &str, at: i64) -> Result<u64, ApiError> {
    let apps = state.store.node_apps(node).await?;
    let ended = state.store.fail_node_apps(node, reason, at).await?;
    let routes = state.routes.clone();
    for app in &apps {
        routes.remove_app(&app.id);
    }
    if ended > 0 {
        eprintln!("node `{node}`: {ended} app(s) on_error ({reason})");
    }
    Ok(ended)
}

fn no_such_node(node: &str) -> ApiError {
    ApiError::not_found(format!("no node `{node}`: see `GET /nodes`"))
}

/// `POST /nodes/{node}/revoke` (admin): revokes a node's quote keys (its
/// quotes stop verifying). A remote host is fenced at once too: its
/// credential and lease end (its next call is refused), its apps end
/// `on_error` ("node host revoked"), nothing is placed on it, and its name
/// joins nothing, with any token, until an admin allows it (`POST
/// /nodes/{node}/allow`). The platform's own node (`local`) keeps running:
/// only its keys are revoked.
pub async fn revoke(
    State(state): State<Shared>,
    caller: Caller,
    Path(node): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&caller)?;
    let held = state.store.node(&node).await?;
    let known = crate::data::quote_keys::known_node(&state.store, &node)
        .await
        .map_err(quote_key_error)?;
    if !known && held.is_none() {
        return Err(ApiError::not_found(format!(
            "node `{node}` never had a quote key certified: check the node id"
        )));
    }
    let at = now();
    if held.as_ref().is_some_and(|n| n.kind == NodeKind::Remote) {
        // Barred first: from here no placement picks it.
        state.store.bar_node(&node, at).await?;
        state.store.fence_remote(&node).await?;
        end_apps(&state, &node, HOST_REVOKED, at).await?;
        eprintln!("node host `{node}` revoked: fenced, and barred from joining");
    }
    let revoked = crate::data::quote_keys::revoke_node(&state.store, &node, at)
        .await
        .map_err(quote_key_error)?;
    Ok(Json(
        serde_json::json!({ "node": node, "revoked_keys": revoked }),
    ))
}

/// `POST /nodes/{node}/allow` (admin): lifts the bar of a revoked host's
/// name: it may join again (with a token that has a use left for it, or
/// the one it joined with).
pub async fn allow(
    State(state): State<Shared>,
    caller: Caller,
    Path(node): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    if state.store.allow_node(&node).await? {
        eprintln!("node `{node}` allowed to join again");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "node `{node}` is not barred: only a revoked host needs allowing"
        )))
    }
}

/// What the platform says of a drain.
const NODE_DRAINED: &str = "node drained";

/// `POST /nodes/{node}/drain` (admin): nothing new is placed on the node,
/// and each of its apps the key service keeps starts again on another node
/// that fits (`rescheduled from NODE: node drained`), its keys released by
/// the service; once it is placed, the node is told to stop it. Its other
/// apps run on until they end. `DELETE /nodes/{node}/drain` ends the drain.
pub async fn drain(
    State(state): State<Shared>,
    caller: Caller,
    Path(node): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&caller)?;
    state
        .store
        .node(&node)
        .await?
        .ok_or_else(|| no_such_node(&node))?;
    let at = now();
    state.store.drain_node(&node, at).await?;
    let mut moved = Vec::new();
    let mut unplaced = Vec::new();
    for id in state.store.kept_apps_of(&node).await? {
        // An app with persistent storage stops first (writing its home
        // back) and is placed again once it has stopped.
        let stored = state.store.app(&id).await?;
        if stored.is_some_and(|a| a.spec.storage_bytes.is_some() && a.node_addr.is_some())
            && state.store.begin_move(&id, NODE_DRAINED).await?
        {
            state.nodes.stop(&id, crate::domain::lifecycle::MOVING);
            moved.push(id);
            continue;
        }
        match state
            .store
            .reschedule_kept(&id, &node, NODE_DRAINED, Some(&node), at)
            .await
        {
            Ok(true) => moved.push(id),
            Ok(false) => {}
            Err(crate::store::StoreError::NoRoom(_)) => unplaced.push(id),
            Err(e) => return Err(e.into()),
        }
    }
    let staying: Vec<String> = state
        .store
        .node_apps(&node)
        .await?
        .into_iter()
        .map(|app| app.id)
        .filter(|id| !unplaced.contains(id) && !moved.contains(id))
        .collect();
    eprintln!(
        "node `{node}` drained: {} kept app(s) moved, {} without room stay, {} other app(s) run on",
        moved.len(),
        unplaced.len(),
        staying.len()
    );
    Ok(Json(serde_json::json!({
        "node": node,
        "moved": moved,
        "no_room": unplaced,
        "staying": staying,
    })))
}

/// `DELETE /nodes/{node}/drain` (admin): apps may be placed on the node
/// again.
pub async fn undrain(
    State(state): State<Shared>,
    caller: Caller,
    Path(node): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    if state.store.undrain_node(&node).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("node `{node}` is not drained")))
    }
}

/// `DELETE /nodes/{node}` (admin): removes a remote host: its apps end
/// first (`on_error`, "node host removed"), then its credential and lease
/// with it; it may join again with a token. The platform's own node is
/// removed only once its lease ran out (stop its process first).
pub async fn remove(
    State(state): State<Shared>,
    caller: Caller,
    Path(node): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    let held = state
        .store
        .node(&node)
        .await?
        .ok_or_else(|| no_such_node(&node))?;
    let at = now();
    if held.kind == NodeKind::Local && held.live_at(at) {
        return Err(ApiError::conflict(format!(
            "node `{node}` is a live node process of this platform: stop that process \
                 first (its apps stop with it), then remove it"
        )));
    }
    state.store.fence_remote(&node).await?;
    end_apps(&state, &node, HOST_REMOVED, at).await?;
    if !state.store.remove_node(&node).await? {
        return Err(no_such_node(&node));
    }
    eprintln!("node `{node}` removed");
    Ok(StatusCode::NO_CONTENT)
}
