//! The node-host protocol's API side (see `mse_api::node`): join tokens,
//! joins, leases that carry the apps to start and stop, packages fetched by
//! SHA-256, and the events and logs hosts report. Also the admin's view of
//! every node (`GET /nodes`).

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use mse_api::node::{
    Capacity, CreateJoinToken, EventReport, JoinRequest, JoinToken, JoinTokenCreated,
    JoinTokenInfo, Joined, LeaseGranted, LeaseRequest, NodeHost, StopOrder, DEFAULT_GRANT,
    MAX_LEASE_WAIT_MS, MAX_LOG_CHUNK, MAX_TOKEN_HOSTS, NODE_CREDENTIAL_PREFIX,
};
use serde::Deserialize;

use crate::api::{require_admin, ApiError, Caller, Shared};
use crate::backend::NodeBackend as _;
use crate::http_server::Connection;
use crate::routes::unroutable;
use crate::store::nodes::{JoinTokenRow, Joined as StoreJoined, TokenUse};
use crate::store::{NodeKind, NodeRow, Status};

/// The longest a join token may be valid, hours (a year).
const MAX_TOKEN_HOURS: u32 = 8760;
/// The largest memory a host may offer, MB (a petabyte).
const MAX_MEMORY_MB: u64 = 1 << 30;
/// The most cores a host may offer.
const MAX_CORES: u64 = 1 << 16;
/// A host's copy of an app's log is kept to this size, bytes.
const MAX_LOG_BYTES: u64 = 1 << 20;
/// An app a host took but does not list as running after this long is lost
/// (seconds): the answer that carried it never arrived, or the host
/// restarted.
const TAKE_GRACE_SECS: i64 = 10;
/// How often a waiting lease call looks at the store (changes made by
/// another API process wake no one here).
const LEASE_LOOK: Duration = Duration::from_millis(250);

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn unprocessable(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// The node host making a call, by its credential.
pub struct NodeCaller(pub NodeRow);

impl FromRequestParts<Shared> for NodeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let missing = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or invalid node credential: join first (`mse-server --roles node --join`)",
            )
        };
        let credential = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|c| c.starts_with(NODE_CREDENTIAL_PREFIX))
            .ok_or_else(missing)?;
        let node = state
            .store
            .node_by_credential(&crate::api::token_hash(credential))
            .await?
            .ok_or_else(missing)?;
        Ok(NodeCaller(node))
    }
}

fn lease_over(node: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "the lease of node `{node}` ran out and its apps were marked lost: stop every app and \
             join again"
        ),
    )
}

fn quote_key_error(e: crate::quote_keys::QuoteKeyError) -> ApiError {
    use crate::quote_keys::QuoteKeyError;
    match e {
        QuoteKeyError::Store(e) => e.into(),
        QuoteKeyError::Ca(..) => {
            eprintln!("{e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the simulation CA is unreadable",
            )
        }
        e => unprocessable(e.to_string()),
    }
}

/// What a host joining with `token` is granted at most.
fn grant_of(token: &JoinTokenRow) -> Capacity {
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
        return Err(unprocessable(format!(
            "ttl_hours is {hours}: give 1 to {MAX_TOKEN_HOURS}"
        )));
    }
    let max_hosts = request.max_hosts.unwrap_or(1);
    if !(1..=MAX_TOKEN_HOSTS).contains(&max_hosts) {
        return Err(unprocessable(format!(
            "max_hosts is {max_hosts}: give 1 to {MAX_TOKEN_HOSTS}"
        )));
    }
    for (name, value, max) in [
        ("max_memory_mb", request.max_memory_mb, MAX_MEMORY_MB),
        ("max_cores", request.max_cores, MAX_CORES),
    ] {
        if let Some(value) = value.filter(|v| !(1..=max).contains(v)) {
            return Err(unprocessable(format!("{name} is {value}: give 1 to {max}")));
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
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no join token has this id: see `GET /nodes/tokens`",
        ))
    }
}

/// Refuses an address no host may advertise: one that is not a host's
/// ([`unroutable`]), or the platform's own (a listener's, or the one the
/// join reached, `local`).
fn check_advertisable(
    state: &Shared,
    ip: std::net::IpAddr,
    local: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    if let Some(what) = unroutable(ip) {
        return Err(unprocessable(format!(
            "advertise is {ip}, {what}: give the address the proxy reaches this host at"
        )));
    }
    let routes = state.nodes.local.routes();
    if routes.is_platform_address(ip)
        || local.is_some_and(|l| l.to_canonical() == ip.to_canonical())
    {
        return Err(unprocessable(format!(
            "advertise is {ip}, an address of the platform's own listeners: give the address \
             the proxy reaches this host at"
        )));
    }
    Ok(())
}

fn operator_ca_der(state: &Shared) -> Result<Vec<u8>, ApiError> {
    let pem = std::fs::read(state.data.path("operator-ca.pem")).map_err(|e| {
        eprintln!("cannot read the operator CA: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the operator CA is missing",
        )
    })?;
    mse_attest::ratls::pem_to_der(&pem).map_err(|e| {
        eprintln!("the operator CA: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the operator CA is broken",
        )
    })
}

/// `GET /nodes` (admin): every node with its lease, capacity and apps.
pub async fn list(
    State(state): State<Shared>,
    caller: Caller,
) -> Result<Json<Vec<NodeHost>>, ApiError> {
    require_admin(&caller)?;
    let at = now();
    let revoked = crate::quote_keys::revoked_nodes(&state.store)
        .await
        .map_err(quote_key_error)?;
    let barred = state.store.barred_nodes().await?;
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
                apps: n.apps,
                node: n.node.id,
            }
        })
        .collect();
    Ok(Json(hosts))
}

/// The reason of the apps of a host an admin revoked.
pub const HOST_REVOKED: &str = "node host revoked";
/// The reason of the apps of a host an admin removed.
pub const HOST_REMOVED: &str = "node host removed";

/// Ends the live apps of node `node` (`on_error`, `reason`) and their
/// routes; how many.
async fn end_apps(state: &Shared, node: &str, reason: &str, at: i64) -> Result<u64, ApiError> {
    let apps = state.store.node_apps(node).await?;
    let ended = state.store.fail_node_apps(node, reason, at).await?;
    let routes = state.nodes.local.routes();
    for app in &apps {
        routes.remove_app(&app.id);
    }
    if ended > 0 {
        eprintln!("node `{node}`: {ended} app(s) on_error ({reason})");
    }
    Ok(ended)
}

fn no_such_node(node: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no node `{node}`: see `GET /nodes`"),
    )
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
    let known = crate::quote_keys::known_node(&state.store, &node)
        .await
        .map_err(quote_key_error)?;
    if !known && held.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("node `{node}` never had a quote key certified: check the node id"),
        ));
    }
    let at = now();
    if held.as_ref().is_some_and(|n| n.kind == NodeKind::Remote) {
        // Barred first: from here no placement picks it.
        state.store.bar_node(&node, at).await?;
        state.store.fence_remote(&node).await?;
        end_apps(&state, &node, HOST_REVOKED, at).await?;
        eprintln!("node host `{node}` revoked: fenced, and barred from joining");
    }
    let revoked = crate::quote_keys::revoke_node(&state.store, &node, at)
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
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("node `{node}` is not barred: only a revoked host needs allowing"),
        ))
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
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "node `{node}` is a live node process of this platform: stop that process \
                 first (its apps stop with it), then remove it"
            ),
        ));
    }
    state.store.fence_remote(&node).await?;
    end_apps(&state, &node, HOST_REMOVED, at).await?;
    if !state.store.remove_node(&node).await? {
        return Err(no_such_node(&node));
    }
    eprintln!("node `{node}` removed");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /nodes/join`: a host joins with a token (or rejoins under its old
/// name once its lease ran out). What it says is not believed: it
/// advertises the address its join comes from (or the one its token
/// approves), it is granted at most what its token allows, a token joins
/// at most its count of hosts, and a barred name joins nothing.
pub async fn join(
    State(state): State<Shared>,
    link: Option<Extension<Connection>>,
    Json(request): Json<JoinRequest>,
) -> Result<Json<Joined>, ApiError> {
    let refused = |why: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!(
                "the join token is not valid here ({why}): ask the operator for a new one \
                 (`POST /nodes/tokens`)"
            ),
        )
    };
    let unknown = "unknown, expired, or of another platform";
    let parsed = JoinToken::parse(&request.token).map_err(|_| refused(unknown))?;
    let at = now();
    if !parsed.pins(&operator_ca_der(&state)?) {
        return Err(refused(unknown));
    }
    let token_hash = parsed.secret_hash();
    let token = match state.store.join_token(&token_hash).await? {
        Some(token) if token.expires_at > at => token,
        _ => return Err(refused(unknown)),
    };
    if token.revoked_at.is_some() {
        return Err(refused("an admin revoked it"));
    }
    mse_api::node::check_node_id(&request.name)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let name = request.name.clone();
    if state.store.barred_nodes().await?.contains(&name) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "node `{name}` was revoked: it joins again only once an admin allows it \
                 (`POST /nodes/{name}/allow`)"
            ),
        ));
    }
    let Some(Extension(link)) = link else {
        eprintln!("a join without its connection's addresses: refused");
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the API cannot tell where this join comes from",
        ));
    };
    let ip = request.advertise;
    let source = link.peer.ip().to_canonical();
    check_advertisable(&state, ip, Some(link.local.ip()))?;
    let approved = token
        .advertise
        .as_deref()
        .and_then(|a| a.parse::<std::net::IpAddr>().ok());
    if ip.to_canonical() != source && approved != Some(ip) {
        return Err(unprocessable(format!(
            "advertise is {ip} but this join comes from {source}: advertise {source}, or have \
             an admin approve {ip} for this host's token (`advertise` in `POST /nodes/tokens`)"
        )));
    }
    let declared = request.capacity;
    if !(1..=MAX_MEMORY_MB).contains(&declared.memory_mb)
        || !(1..=MAX_CORES).contains(&declared.cores)
    {
        return Err(unprocessable(format!(
            "capacity is {} MB and {} cores: give 1 to {MAX_MEMORY_MB} MB and 1 to \
             {MAX_CORES} cores",
            declared.memory_mb, declared.cores
        )));
    }
    // A host offers what it declares, never more than its token grants.
    let grant = grant_of(&token);
    let capacity = Capacity {
        memory_mb: declared.memory_mb.min(grant.memory_mb),
        cores: declared.cores.min(grant.cores),
    };
    let new_use = match state.store.use_join_token(&token_hash, &name, at).await? {
        TokenUse::Taken { new } => new,
        TokenUse::UsedUp { hosts } => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "the join token joined as many hosts as it may ({}: {}): join again under \
                     one of those names, or ask the operator for a new token",
                    hosts.len(),
                    hosts.join(", ")
                ),
            ))
        }
    };
    let credential = format!(
        "{NODE_CREDENTIAL_PREFIX}{}",
        hex::encode(rand::random::<[u8; 32]>())
    );
    let row = NodeRow {
        id: name.clone(),
        kind: NodeKind::Remote,
        host: name.clone(),
        address: Some(ip.to_string()),
        memory_mb: capacity.memory_mb as i64,
        cores: capacity.cores as i64,
        lease_secs: state.lease_secs,
        started_at: at,
        seen_at: at,
    };
    match state
        .store
        .join_remote(&row, &crate::api::token_hash(&credential), at)
        .await?
    {
        StoreJoined::Joined => {}
        StoreJoined::Held(held) => {
            if new_use {
                state.store.return_join_token(&token_hash, &name).await?;
            }
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "node id `{}` is held by a live {} node (its lease ends in {} s): give this \
                     host another --node-id, or wait",
                    held.id,
                    held.kind.as_str(),
                    (held.seen_at + held.lease_secs - at).max(0)
                ),
            ));
        }
    }
    // Certified once the name is the host's: a refused join certifies
    // nothing, and a key that cannot be certified undoes the join.
    let certified = match crate::quote_keys::load_ca(&state.data.root) {
        Ok(ca) => {
            crate::quote_keys::certify(&state.store, &ca, &name, &request.quote_key, at).await
        }
        Err(e) => Err(e),
    };
    let quote_chain = match certified {
        Ok(chain) => chain,
        Err(e) => {
            state
                .store
                .forget_remote(&name, &crate::api::token_hash(&credential))
                .await?;
            if new_use {
                state.store.return_join_token(&token_hash, &name).await?;
            }
            return Err(quote_key_error(e));
        }
    };
    eprintln!(
        "node host `{name}` joined from {}, advertising {ip}; granted {} MB and {} cores \
         (declared {} MB and {} cores)",
        link.peer, capacity.memory_mb, capacity.cores, declared.memory_mb, declared.cores
    );
    let read = |name: &str| {
        std::fs::read_to_string(state.data.path(name)).map_err(|e| {
            eprintln!("cannot read {name}: {e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the data folder is broken",
            )
        })
    };
    Ok(Json(Joined {
        node: name,
        credential,
        lease_secs: u64::try_from(state.lease_secs).unwrap_or(30),
        quote_chain,
        signer_pem: read("signer.pub")?,
        quote_provider: state.quote_provider.clone(),
        config_timeout_secs: state.node_options.config_timeout_secs,
        sandbox: state.node_options.sandbox.as_arg().to_string(),
        capacity: Some(capacity),
    }))
}

/// `POST /nodes/lease`: renews the caller's lease and answers what to start
/// and stop, waiting up to `wait_ms` while there is nothing.
pub async fn lease(
    State(state): State<Shared>,
    NodeCaller(node): NodeCaller,
    Json(request): Json<LeaseRequest>,
) -> Result<Json<LeaseGranted>, ApiError> {
    if request.running.len() > 100_000 {
        return Err(unprocessable("running lists over 100000 apps"));
    }
    let lease_ms = u64::try_from(state.lease_secs).unwrap_or(30) * 1000;
    let wait = Duration::from_millis(request.wait_ms.min(MAX_LEASE_WAIT_MS).min(lease_ms / 3));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let woken = state.nodes.remote.woken();
        let at = now();
        if !state.store.renew_remote(&node.id, at).await? {
            return Err(lease_over(&node.id));
        }
        state
            .store
            .fail_untracked(&node.id, &request.running, at - TAKE_GRACE_SECS, at)
            .await?;
        let answer = work(&state, &node, &request.running, at).await?;
        let idle = answer.start.is_empty() && answer.stop.is_empty();
        if !idle || tokio::time::Instant::now() >= deadline {
            return Ok(Json(answer));
        }
        let look = (tokio::time::Instant::now() + LEASE_LOOK).min(deadline);
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep_until(look) => {}
        }
    }
}

async fn work(
    state: &Shared,
    node: &NodeRow,
    running: &[String],
    at: i64,
) -> Result<LeaseGranted, ApiError> {
    let catalog = crate::catalog::load(state)?;
    // One look at the node's live apps, not one per app it runs.
    let live: HashMap<String, crate::store::App> = state
        .store
        .node_apps(&node.id)
        .await?
        .into_iter()
        .map(|app| (app.id.clone(), app))
        .collect();
    let mut stop = Vec::new();
    for id in running {
        let reason = match live.get(id) {
            Some(app) if app.stop_requested_at.is_some() => Some(crate::runner::STOPPED_BY_OWNER),
            Some(app) if app.expires_at <= at => Some(crate::runner::EXPIRED),
            Some(_) => None,
            None => Some(crate::runner::NO_LONGER_LIVE),
        };
        if let Some(reason) = reason {
            stop.push(StopOrder {
                app: id.clone(),
                reason: reason.to_string(),
            });
        }
    }
    let mut start = Vec::new();
    let taken = state.store.take_assigned(&node.id, at).await?;
    let mut sizes: HashMap<String, (u64, u64)> = HashMap::new();
    for app in taken {
        let size = match sizes.get(&app.spec.resource) {
            Some(size) => *size,
            None => {
                let resource = state.store.any_resource(&app.spec.resource).await?;
                let size = resource.map_or((0, 0), |r| {
                    (
                        u64::try_from(r.memory_mb).unwrap_or(0),
                        u64::try_from(r.cores).unwrap_or(0),
                    )
                });
                sizes.insert(app.spec.resource.clone(), size);
                size
            }
        };
        match crate::runner::assignment(&app, size.0, size.1, state.acme.as_ref()) {
            Ok(assignment) => start.push(assignment),
            Err(why) => {
                state
                    .store
                    .transition(&app.id, Status::OnError, Some(why), at)
                    .await?;
            }
        }
    }
    Ok(LeaseGranted {
        lease_secs: u64::try_from(state.lease_secs).unwrap_or(30),
        catalog_digest: catalog.digest.clone(),
        start,
        stop,
    })
}

/// `GET /nodes/catalog`: the catalog file, for hosts to run its images.
pub async fn catalog(
    State(state): State<Shared>,
    NodeCaller(_node): NodeCaller,
) -> Result<Response, ApiError> {
    let published = crate::catalog::load(&state)?;
    let text = std::fs::read_to_string(state.data.path(crate::catalog::FILE)).map_err(|e| {
        eprintln!("cannot read the catalog: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the catalog is unreadable",
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/toml".to_string()),
            (header::ETAG, format!("\"{}\"", published.digest)),
        ],
        text,
    )
        .into_response())
}

/// The app of a host's call: one placed on the caller (else 404, as an
/// unknown one).
async fn placed_app(
    state: &Shared,
    node: &NodeRow,
    id: &str,
) -> Result<crate::store::App, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("app {id} is not on this node"),
        )
    };
    let app = state.store.app(id).await?.ok_or_else(not_found)?;
    if app.node_owner.as_deref() != Some(node.id.as_str()) {
        return Err(not_found());
    }
    Ok(app)
}

/// `GET /nodes/packages/{sha256}`: the encrypted package of an app placed
/// on the caller, by its SHA-256.
pub async fn package(
    State(state): State<Shared>,
    NodeCaller(node): NodeCaller,
    Path(sha256): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no live app on this node has a package of that SHA-256",
        )
    };
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let app = state
        .store
        .node_apps(&node.id)
        .await?
        .into_iter()
        .find(|a| a.spec.code_sha256.eq_ignore_ascii_case(&sha256))
        .ok_or_else(not_found)?;
    let path = crate::runner::app_dir(&state.data.root, &app.id).join("code.tar");
    let bytes = tokio::fs::read(&path).await.map_err(|_| not_found())?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// The state an app has once a node reported `state`.
fn status_of(state: mse_api::event::State) -> Status {
    use mse_api::event::State;
    match state {
        State::Initializing => Status::Initializing,
        State::Running => Status::Running,
        State::OnError => Status::OnError,
        State::Stopped => Status::Stopped,
    }
}

/// Whether a host's report of `reported` moves an app that is `from` along
/// its state machine, or repeats a live state (a certificate renewal's
/// `running`, a resent `initializing`).
fn report_moves(from: Status, reported: Status) -> bool {
    crate::store::may_move(from, reported) || (from == reported && !from.is_terminal())
}

/// `event` with its texts as the API keeps what a host says: each on one
/// line, without control characters, bounded.
fn cleaned(mut event: mse_api::event::Event) -> mse_api::event::Event {
    use mse_api::text::status_text;
    for text in [
        &mut event.reason,
        &mut event.sandbox,
        &mut event.limits,
        &mut event.fingerprint,
        &mut event.certificate_sha256,
    ]
    .into_iter()
    .flatten()
    {
        *text = status_text(text);
    }
    event.time = status_text(&event.time);
    if let Some(certificate) = &mut event.certificate {
        certificate.issuer = status_text(&certificate.issuer);
        certificate.not_after = status_text(&certificate.not_after);
        if let Some(error) = &mut certificate.error {
            *error = status_text(error);
        }
    }
    event
}

/// `POST /nodes/events`: an event of an app placed on the caller. It only
/// moves the app along its state machine: a terminal app stays as it is.
pub async fn event(
    State(state): State<Shared>,
    NodeCaller(node): NodeCaller,
    Json(report): Json<EventReport>,
) -> Result<StatusCode, ApiError> {
    if !node.live_at(now()) {
        return Err(lease_over(&node.id));
    }
    let app = placed_app(&state, &node, &report.app).await?;
    let reported = status_of(report.event.status);
    if !report_moves(app.status, reported) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "app {} is {}: a report of {} does not move it (an app goes spawning → \
                 initializing → running → stopped or on_error, never back); stop its node",
                app.id,
                app.status.as_str(),
                reported.as_str()
            ),
        ));
    }
    let report = EventReport {
        event: cleaned(report.event),
        ..report
    };
    if let Some(listen) = report.event.listen.as_deref() {
        // A host routes the proxy to its own address only: never to the
        // API's machine or a third party.
        let addr: std::net::SocketAddr = listen
            .parse()
            .map_err(|_| unprocessable(format!("listen `{listen}` is not IP:port")))?;
        let route = crate::routes::Route {
            addr,
            mode: crate::routes::RouteMode::Passthrough,
            app_id: app.id.clone(),
            remote: true,
        };
        if Some(addr.ip().to_string()) != node.address
            || addr.port() == 0
            || !state.nodes.local.routes().forwardable(&route)
        {
            return Err(unprocessable(format!(
                "listen {addr} is not an app's address on this node's advertised address ({})",
                node.address.as_deref().unwrap_or("none")
            )));
        }
    }
    let routes = state.nodes.local.routes();
    crate::runner::apply_event(&state.store, &routes, &app, &report.event, true).await;
    if report.event.status == mse_api::event::State::Initializing && app.status == Status::Spawning
    {
        eprintln!("app {}: initializing on node `{}`", app.id, node.id);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The query of `POST /nodes/logs/{app}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// The body is the whole log so far (the host's copy was rewritten),
    /// not what follows the last chunk.
    #[serde(default)]
    pub replace: bool,
}

/// `POST /nodes/logs/{app}`: the next lines of an app's log (or all of it,
/// `?replace=true`), kept by the API for `GET /apps/{id}/logs`.
pub async fn logs(
    State(state): State<Shared>,
    NodeCaller(node): NodeCaller,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    if body.len() > MAX_LOG_CHUNK {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a log chunk is at most {MAX_LOG_CHUNK} bytes"),
        ));
    }
    placed_app(&state, &node, &id).await?;
    // A host's bytes are text for the owner's terminal: no escape sequence.
    let text = mse_api::text::log_text(&body);
    let path = state.nodes.remote.log_path(&id);
    let dir = state.nodes.remote.logs_dir().to_path_buf();
    let written = tokio::task::spawn_blocking(move || {
        append_log(&dir, &path, text.as_bytes(), query.replace)
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the log writer failed"))?;
    written.map_err(|e| {
        eprintln!("cannot keep a node host's log: {e}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot keep the log")
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// Appends (or writes anew) a log, keeping its last [`MAX_LOG_BYTES`].
fn append_log(
    dir: &std::path::Path,
    path: &std::path::Path,
    bytes: &[u8],
    replace: bool,
) -> std::io::Result<()> {
    crate::process::create_private_dir(dir).map_err(std::io::Error::other)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(!replace)
        .write(true)
        .truncate(replace)
        .open(path)?;
    file.write_all(bytes)?;
    let len = file.metadata()?.len();
    drop(file);
    if len > MAX_LOG_BYTES {
        let kept = mse_run::logs::tail(path).unwrap_or_default();
        std::fs::write(path, kept)?;
    }
    Ok(())
}
