//! The node-host protocol's API side (see `mse_api::node`): joins, leases
//! that carry the apps to start and stop, packages fetched by SHA-256, and
//! the events and logs hosts report.

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
    Capacity, EventReport, JoinRequest, JoinToken, Joined, LeaseGranted, LeaseRequest, StopOrder,
    MAX_LEASE_WAIT_MS, MAX_LOG_CHUNK, NODE_CREDENTIAL_PREFIX,
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::domain::app::App;
use crate::domain::lifecycle::Status;
use crate::domain::nodes::{Joined as StoreJoined, NodeKind, NodeRow, TokenUse};
use crate::state::backend::NodeBackend as _;
use crate::state::Connection;
use crate::state::{now, ApiError, Shared};

use super::nodes::{
    check_advertisable, grant_of, operator_ca_der, quote_key_error, MAX_CORES, MAX_MEMORY_MB,
};

/// A host's copy of an app's log is kept to this size, bytes.
const MAX_LOG_BYTES: u64 = 1 << 20;

/// An app a host took but does not list as running after this long is lost
/// (seconds): the answer that carried it never arrived, or the host
/// restarted.
const TAKE_GRACE_SECS: i64 = 10;

/// How often a waiting lease call looks at the store (changes made by
/// another API process wake no one here).
const LEASE_LOOK: Duration = Duration::from_millis(250);

/// The node host making a call, by its credential.
pub struct NodeCaller(pub NodeRow);

impl FromRequestParts<Shared> for NodeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let missing = || {
            ApiError::unauthorized(
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
            .node_by_credential(&crate::state::auth::token_hash(credential))
            .await?
            .ok_or_else(missing)?;
        Ok(NodeCaller(node))
    }
}

fn lease_over(node: &str) -> ApiError {
    ApiError::conflict(format!(
        "the lease of node `{node}` ran out and its apps were marked lost: stop every app and \
             join again"
    ))
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
        ApiError::unauthorized(format!(
            "the join token is not valid here ({why}): ask the operator for a new one \
                 (`POST /nodes/tokens`)"
        ))
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
    mse_api::node::check_node_id(&request.name).map_err(ApiError::bad_request)?;
    let name = request.name.clone();
    if state.store.barred_nodes().await?.contains(&name) {
        return Err(ApiError::forbidden(format!(
            "node `{name}` was revoked: it joins again only once an admin allows it \
                 (`POST /nodes/{name}/allow`)"
        )));
    }
    let Some(Extension(link)) = link else {
        eprintln!("a join without its connection's addresses: refused");
        return Err(ApiError::internal(
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
        return Err(ApiError::unprocessable(format!(
            "advertise is {ip} but this join comes from {source}: advertise {source}, or have \
             an admin approve {ip} for this host's token (`advertise` in `POST /nodes/tokens`)"
        )));
    }
    let declared = request.capacity;
    if !(1..=MAX_MEMORY_MB).contains(&declared.memory_mb)
        || !(1..=MAX_CORES).contains(&declared.cores)
    {
        return Err(ApiError::unprocessable(format!(
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
            return Err(ApiError::forbidden(format!(
                "the join token joined as many hosts as it may ({}: {}): join again under \
                     one of those names, or ask the operator for a new token",
                hosts.len(),
                hosts.join(", ")
            )))
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
        tee: request.tee,
        memory_mb: capacity.memory_mb as i64,
        cores: capacity.cores as i64,
        lease_secs: state.lease_secs,
        started_at: at,
        seen_at: at,
    };
    match state
        .store
        .join_remote(&row, &crate::state::auth::token_hash(&credential), at)
        .await?
    {
        StoreJoined::Joined => {}
        StoreJoined::Held(held) => {
            if new_use {
                state.store.return_join_token(&token_hash, &name).await?;
            }
            return Err(ApiError::conflict(format!(
                "node id `{}` is held by a live {} node (its lease ends in {} s): give this \
                     host another --node-id, or wait",
                held.id,
                held.kind.as_str(),
                (held.seen_at + held.lease_secs - at).max(0)
            )));
        }
    }
    // Certified once the name is the host's: a refused join certifies
    // nothing, and a key that cannot be certified undoes the join.
    let certified = match crate::data::quote_keys::load_ca(&state.data.root) {
        Ok(ca) => {
            crate::data::quote_keys::certify(&state.store, &ca, &name, &request.quote_key, at).await
        }
        Err(e) => Err(e),
    };
    let quote_chain = match certified {
        Ok(chain) => chain,
        Err(e) => {
            state
                .store
                .forget_remote(&name, &crate::state::auth::token_hash(&credential))
                .await?;
            if new_use {
                state.store.return_join_token(&token_hash, &name).await?;
            }
            return Err(quote_key_error(e));
        }
    };
    eprintln!(
        "node host `{name}` ({}) joined from {}, advertising {ip}; granted {} MB and {} cores \
         (declared {} MB and {} cores)",
        request.tee,
        link.peer,
        capacity.memory_mb,
        capacity.cores,
        declared.memory_mb,
        declared.cores
    );
    let read = |name: &str| {
        std::fs::read_to_string(state.data.path(name)).map_err(|e| {
            eprintln!("cannot read {name}: {e}");
            ApiError::internal("the data folder is broken")
        })
    };
    Ok(Json(Joined {
        node: name,
        credential,
        lease_secs: u64::try_from(state.lease_secs).unwrap_or(30),
        quote_chain,
        signer_pem: read("signer.pub")?,
        quote_provider: request.tee.quote_provider().to_string(),
        config_timeout_secs: state.node_options.config_timeout_secs,
        sandbox: state.node_options.sandbox.as_arg().to_string(),
        capacity: Some(capacity),
        key_service: Some(mse_api::keys::domain(&state.base_domain)),
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
        return Err(ApiError::unprocessable("running lists over 100000 apps"));
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
    let catalog = state.current_catalog()?;
    // One look at the node's live apps, not one per app it runs.
    let live: HashMap<String, App> = state
        .store
        .node_apps(&node.id)
        .await?
        .into_iter()
        .map(|app| (app.id.clone(), app))
        .collect();
    let mut stop = Vec::new();
    for id in running {
        let reason = crate::domain::app::stop_reason(live.get(id), at_time(at));
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
        match crate::domain::assignment::assignment(&app, size.0, size.1, state.acme.as_ref()) {
            Ok(mut assignment) => {
                assignment.storage = state.store.assigned_storage(&app).await?;
                start.push(assignment);
            }
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
    let published = state.current_catalog()?;
    let text =
        std::fs::read_to_string(state.data.path(crate::data::catalog::FILE)).map_err(|e| {
            eprintln!("cannot read the catalog: {e}");
            ApiError::internal("the catalog is unreadable")
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
async fn placed_app(state: &Shared, node: &NodeRow, id: &str) -> Result<App, ApiError> {
    let not_found = || ApiError::not_found(format!("app {id} is not on this node"));
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
    let not_found =
        || ApiError::not_found("no live app on this node has a package of that SHA-256");
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
    let path = crate::data::dir::app_dir(&state.data.root, &app.id).join("code.tar");
    let bytes = tokio::fs::read(&path).await.map_err(|_| not_found())?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
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
    let reported = report.event.status;
    if !crate::domain::lifecycle::report_moves(app.status, reported) {
        return Err(ApiError::conflict(format!(
            "app {} is {}: a report of {} does not move it (an app goes spawning → \
                 initializing → running → stopped or on_error, never back); stop its node",
            app.id,
            app.status.as_str(),
            reported.as_str()
        )));
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
            .map_err(|_| ApiError::unprocessable(format!("listen `{listen}` is not IP:port")))?;
        let route = crate::domain::routing::Route {
            addr,
            mode: crate::domain::routing::RouteMode::Passthrough,
            app_id: app.id.clone(),
            remote: true,
        };
        if Some(addr.ip().to_string()) != node.address
            || addr.port() == 0
            || !state.routes.forwardable(&route)
        {
            return Err(ApiError::unprocessable(format!(
                "listen {addr} is not an app's address on this node's advertised address ({})",
                node.address.as_deref().unwrap_or("none")
            )));
        }
    }
    let routes = state.routes.clone();
    crate::state::events::apply_event(&state.store, &routes, &app, &report.event, true).await;
    if report.event.status == Status::Initializing && app.status == Status::Spawning {
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
        return Err(ApiError::too_large(format!(
            "a log chunk is at most {MAX_LOG_CHUNK} bytes"
        )));
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
    .map_err(|_| ApiError::internal("the log writer failed"))?;
    written.map_err(|e| {
        eprintln!("cannot keep a node host's log: {e}");
        ApiError::internal("cannot keep the log")
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
    crate::data::dir::create_private_dir(dir).map_err(std::io::Error::other)?;
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

/// Unix seconds as a time (the epoch for one out of range, which no app
/// expires before).
fn at_time(at: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(at, 0).unwrap_or_default()
}

/// The persistent storage of an app placed on the caller.
async fn placed_storage(
    state: &Shared,
    node: &NodeRow,
    id: &str,
) -> Result<mse_api::node::AssignedStorage, ApiError> {
    let app = placed_app(state, node, id).await?;
    state
        .store
        .assigned_storage(&app)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("app {id} keeps no persistent storage")))
}

/// `GET /nodes/storage/{app}`: the snapshot the platform holds of the
/// storage of an app placed on the caller (version 0: none).
pub async fn storage_head(
    State(state): State<Shared>,
    NodeCaller(node): NodeCaller,
    Path(id): Path<String>,
) -> Result<Json<mse_api::node::StorageHead>, ApiError> {
    let storage = placed_storage(&state, &node, &id).await?;
    Ok(Json(
        state.store.storage_head(&storage.scope).await?.map_or_else(
            || mse_api::node::StorageHead {
                version: 0,
                manifest: String::new(),
                size: 0,
                blobs: Vec::new(),
            },
            Into::into,
        ),
    ))
}

/// `GET /nodes/storage/{app}/blobs/{id}`: one blob of that storage.
pub async fn storage_blob(
    State(state): State<Shared>,
    NodeCaller(node): NodeCaller,
    Path((app, id)): Path<(String, String)>,
) -> Result<Vec<u8>, ApiError> {
    let storage = placed_storage(&state, &node, &app).await?;
    let not_found = || ApiError::not_found(format!("no blob {id} in app {app}'s storage"));
    if !mse_api::node::is_blob_id(&id) {
        return Err(not_found());
    }
    let text = state
        .store
        .storage_blob(&storage.scope, &id.to_ascii_lowercase())
        .await?
        .ok_or_else(not_found)?;
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text)
        .map_err(|_| ApiError::internal("a stored blob is not base64"))
}

/// `PUT /nodes/storage/{app}/blobs/{id}`: a blob of a snapshot being
/// written back; `id` must be the SHA-256 of its bytes.
pub async fn put_storage_blob(
    State(state): State<Shared>,
    NodeCaller(node): NodeCaller,
    Path((app, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    if body.len() > mse_api::node::MAX_STORAGE_BLOB {
        return Err(ApiError::too_large(format!(
            "a blob is at most {} bytes",
            mse_api::node::MAX_STORAGE_BLOB
        )));
    }
    let storage = placed_storage(&state, &node, &app).await?;
    let seen = hex::encode(Sha256::digest(&body));
    if !mse_api::node::is_blob_id(&id) || !seen.eq_ignore_ascii_case(&id) {
        return Err(ApiError::unprocessable(format!(
            "the blob's SHA-256 is {seen}, not {id}: a blob is named by its hash"
        )));
    }
    let text = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &body);
    match state
        .store
        .put_storage_blob(&storage.scope, &seen, &text, storage.cap_bytes)
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(crate::store::storage::BlobRefused::Store(e)) => Err(e.into()),
        Err(refused) => Err(ApiError::too_large(refused.to_string())),
    }
}

/// `POST /nodes/storage/{app}/head`: the snapshot whose blobs were sent
/// becomes the app's storage — only as a later version, only with every
/// blob held (409 otherwise: the previous one stays whole).
pub async fn commit_storage(
    State(state): State<Shared>,
    NodeCaller(node): NodeCaller,
    Path(app): Path<String>,
    Json(commit): Json<mse_api::node::StorageCommit>,
) -> Result<StatusCode, ApiError> {
    let storage = placed_storage(&state, &node, &app).await?;
    if commit.manifest.len() > 1024 * 1024
        || commit.blobs.len() > 8192
        || !commit.blobs.iter().all(|b| mse_api::node::is_blob_id(b))
    {
        return Err(ApiError::unprocessable(
            "a commit names at most 8192 blobs (64 hex digits each) and a manifest of at most 1 MB",
        ));
    }
    let commit = mse_api::node::StorageCommit {
        blobs: commit
            .blobs
            .iter()
            .map(|b| b.to_ascii_lowercase())
            .collect(),
        ..commit
    };
    match state
        .store
        .commit_storage(&storage.scope, &commit, storage.cap_bytes, now(), &app)
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(crate::store::storage::CommitRefused::Store(e)) => Err(e.into()),
        Err(crate::store::storage::CommitRefused::Rule(rule)) => {
            Err(ApiError::conflict(rule.to_string()))
        }
        Err(refused) => Err(ApiError::unprocessable(refused.to_string())),
    }
}
