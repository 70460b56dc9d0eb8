//! What every handler shares: the state, the one error type, the caller,
//! the routing table, the seam to where apps run, and the application of a
//! node's status events. Built on the store and the domain; handlers and
//! roles build on it.

pub mod auth;
pub mod backend;
pub mod compat;
pub mod error;
pub mod events;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::data::catalog::{self, Published};
use crate::data::dir::DataDir;
use crate::store::Store;
pub use auth::{require_admin, Caller, Grant};
pub use backend::Nodes;
pub use error::{ApiError, ApiResult};
pub use routes::Routes;

/// What every handler sees.
#[derive(Debug)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The operator's material.
    pub data: DataDir,
    /// Apps are at `<uuid>.<base_domain>`.
    pub base_domain: String,
    /// The routing table, shared with the proxy and the local runner.
    pub routes: Arc<Routes>,
    /// Where apps' nodes run: the local runner and the remote hosts.
    pub nodes: Nodes,
    /// How long a renewal of a remote host's lease lasts, seconds.
    pub lease_secs: i64,
    /// How nodes run apps (told to hosts as they join).
    pub node_options: crate::domain::nodes::NodeOptions,
    /// The port apps are served on, as clients reach it (0 until known).
    pub proxy_port: std::sync::atomic::AtomicU16,
    /// The TEE of this machine's nodes (the local runner's).
    pub tee: mse_api::tee::Tee,
    /// The runtime environments.
    pub cache: mse_runtime::EnvCache,
    /// The operator's catalog, as last read.
    pub catalog: catalog::Cached,
    /// The platform's ACME CA: zero-trust apps get a browser-trusted
    /// certificate from it, unless deployed with `no_acme`.
    pub acme: Option<mse_api::node::AcmeCa>,
    /// The longest a token made through the API lives, seconds; `None`:
    /// until revoked, unless its maker asks for less.
    pub max_token_lifetime: Option<i64>,
    /// The original client's sign-ins (`crate::api::compat`).
    pub compat: compat::Compat,
    /// The holders of the key service's recovery shares, if the operator
    /// named any.
    pub recovery: Option<mse_api::keys::RecoveryHolders>,
}

/// Shared state.
pub type Shared = Arc<AppState>;

impl AppState {
    /// The catalog, for a handler: a broken file is the operator's problem,
    /// a 500.
    pub fn current_catalog(&self) -> ApiResult<Arc<Published>> {
        self.catalog.get(&self.data.root).map_err(|e| {
            eprintln!("{e}");
            ApiError::internal(
                "the platform's image catalog is broken; the operator must fix catalog.toml",
            )
        })
    }
}

/// The TCP connection a request came over, in the request's extensions:
/// the true source of a call (what a node host's join is checked against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    /// The client's address.
    pub peer: SocketAddr,
    /// The address of this server the client reached.
    pub local: SocketAddr,
}

/// Now, in Unix seconds: the clock the handlers, the store's callers and
/// the runner read.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
