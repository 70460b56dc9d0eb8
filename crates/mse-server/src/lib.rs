//! The platform: the control plane's store and REST API, the SNI proxy, the
//! node runner, and the operator's data folder. The `mse-server` binary runs
//! them, all in one process or each role in its own ([`Roles`]).
//!
//! The crate is built in floors, each importing only from the floors below
//! it (`tests/floors.rs` checks it; `docs/architecture.md` draws it):
//!
//! 1. [`domain`]: the rules, free of I/O (lifecycle, quotas, placement,
//!    routing, bounds) and the types the store maps its rows onto;
//! 2. [`store`] (SQL only) and [`data`] (the operator's files);
//! 3. [`state`]: what handlers share, the one error type, the caller, the
//!    routing table and the seam to where apps run;
//! 4. [`api`]: the handlers by resource, and the table that routes to them;
//! 5. [`roles`]: the local runner, the proxy, a node host's loop, the HTTP
//!    server;
//! 6. this module and `main`, which wire them together.

pub mod domain;

pub mod data;
pub mod store;

pub mod state;

pub mod api;

pub mod roles;

use std::path::PathBuf;
use std::sync::Arc;

/// How the platform is set up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The data folder.
    pub data_dir: PathBuf,
    /// The store's URL; SQLite in the data folder when `None`.
    pub database_url: Option<String>,
    /// Apps are at `<uuid>.<base_domain>`.
    pub base_domain: String,
    /// The `mse-run` binary.
    pub mse_run: PathBuf,
    /// Where runtime environments are cached.
    pub cache_dir: PathBuf,
    /// What installs their packages.
    pub installer: mse_runtime::Installer,
    /// Where nodes keep their private folders.
    pub nodes_dir: PathBuf,
    /// The TEE of this machine's nodes.
    pub tee: domain::nodes::TeeDevice,
    /// How nodes run apps.
    pub node_options: NodeOptions,
    /// What apps may take of this machine (the node role).
    pub capacity: mse_api::node::Capacity,
    /// How long a renewal of a node's lease lasts, seconds.
    pub lease_secs: i64,
    /// The platform's ACME CA, when it has one.
    pub acme: Option<mse_api::node::AcmeCa>,
    /// The longest a token made through the API lives, seconds (within
    /// [`domain::bounds::TOKEN_LIFETIME_SECS`]); `None`: until revoked, unless its
    /// maker asks for less.
    pub max_token_lifetime: Option<i64>,
    /// The holders the key service seals its root key's recovery shares to
    /// (docs/keys.md), with how many of them recover it.
    pub recovery: Option<mse_api::keys::RecoveryHolders>,
}

/// What this machine has: its memory (MB) and cores, the default capacity
/// of a node.
pub fn machine_capacity() -> mse_api::node::Capacity {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(1024, |kb| kb / 1024);
    mse_api::node::Capacity { memory_mb, cores }
}

pub use domain::nodes::{NodeOptions, CONFIG_TIMEOUT_SECS};

/// The platform's roles. A process plays one or more; processes sharing a
/// store (and, for SQLite, a data folder) make one platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The REST API: accepts deployments (as `spawning` apps in the store)
    /// and records stop requests.
    pub api: bool,
    /// The SNI proxy, routing by the node addresses in the store.
    pub proxy: bool,
    /// The node runner: claims `spawning` apps and runs one `mse-run` each.
    pub node: bool,
}

impl Roles {
    /// Every role: the embedded default.
    pub const ALL: Roles = Roles {
        api: true,
        proxy: true,
        node: true,
    };

    /// Parses a comma-separated list of `api`, `proxy` and `node`.
    pub fn parse(text: &str) -> Result<Roles, String> {
        let mut roles = Roles {
            api: false,
            proxy: false,
            node: false,
        };
        for role in text.split(',').map(str::trim) {
            match role {
                "api" => roles.api = true,
                "proxy" => roles.proxy = true,
                "node" => roles.node = true,
                _ => {
                    return Err(format!(
                        "unknown role `{role}`: the roles are api, proxy and node, comma-separated"
                    ))
                }
            }
        }
        Ok(roles)
    }
}

impl std::fmt::Display for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = [
            (self.api, "api"),
            (self.proxy, "proxy"),
            (self.node, "node"),
        ];
        let names: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        f.write_str(&names.join(","))
    }
}

/// The node id of a node process that names none.
pub const DEFAULT_NODE_ID: &str = "local";

pub use mse_api::node::check_node_id;

/// Initialises (first start) or opens the platform with every role, as node
/// [`DEFAULT_NODE_ID`]: see [`open_as`].
pub async fn open(settings: &Settings) -> anyhow::Result<Opened> {
    open_as(settings, Roles::ALL, DEFAULT_NODE_ID).await
}

/// Initialises (first start) or opens the platform for a process playing
/// `roles`. Returns the shared state and, on the first start of an API, the
/// admin token (also written to `admin.token`, mode 0600).
///
/// With the node role, the process takes node id `node_id` (refused while
/// another live process holds it) and marks the live apps held under that id
/// `on_error` ("node lost"): their nodes died with the previous process.
/// Without it, the state's runner is detached and starts nothing. With the
/// proxy role, the routing table follows the store.
pub async fn open_as(settings: &Settings, roles: Roles, node_id: &str) -> anyhow::Result<Opened> {
    use anyhow::Context as _;
    check_node_id(node_id).map_err(anyhow::Error::msg)?;
    let now = chrono::Utc::now();
    // Held until the store is ready: processes starting together wait here.
    let root = settings.data_dir.clone();
    let _lock = tokio::task::spawn_blocking(move || data::dir::lock(&root))
        .await
        .context("cannot lock the data folder")??;
    let data = data::dir::init(&settings.data_dir, &settings.base_domain, now)?;
    if let Some(what) = data::catalog::install_default(&data.root)? {
        println!("{what}: {}", data.path(data::catalog::FILE).display());
    }
    // Checked before anything serves; kept for the requests that need it.
    let catalog = data::catalog::Cached::default();
    catalog.get(&data.root).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n(the format is in docs/catalog.md; move the file away to start from the default)"
        )
    })?;
    if roles.api {
        data::dir::clean_incoming(&settings.data_dir)?;
    }
    let url = match &settings.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}?mode=rwc", data.path("mse.db").display()),
    };
    let store = store::Store::open(&url).await?;
    if roles.api {
        api::tenancy::record_package_sizes(&store, &data.root).await?;
    }
    let mut admin_token = None;
    if roles.api && store.user_count().await? == 0 {
        match store.create_user("admin", true, now.timestamp()).await {
            Ok(admin) => {
                // The operator's own: it lives until revoked, whatever the
                // longest lifetime of the tokens made through the API.
                let (_, token) = state::auth::issue_token(
                    &store,
                    &admin.id,
                    "admin",
                    mse_api::account::Scope::Admin,
                    None,
                    now.timestamp(),
                )
                .await?;
                mse_package::context::write_private(&data.path("admin.token"), token.as_bytes())?;
                admin_token = Some(token);
            }
            // Another API process on the same store made it first.
            Err(e) if store::is_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let config = roles::runner::RunnerConfig {
        mse_run: settings.mse_run.clone(),
        data_dir: settings.data_dir.clone(),
        cache_dir: settings.cache_dir.clone(),
        installer: settings.installer.clone(),
        nodes_dir: settings.nodes_dir.clone(),
        tee: settings.tee.clone(),
        node_id: node_id.to_string(),
        options: settings.node_options,
        capacity: settings.capacity,
        lease_secs: settings.lease_secs,
        acme: settings.acme.clone(),
    };
    let routes = Arc::new(state::Routes::default());
    if roles.proxy {
        routes.follow(store.clone());
    }
    let runner = if roles.node {
        let runner = roles::runner::Runner::new(store.clone(), config, routes.clone());
        runner.register().await?;
        runner.recover().await?;
        runner.make_quote_key().await?;
        runner
    } else {
        roles::runner::Runner::detached(store.clone(), config, routes.clone())
    };
    let remote_logs = data.path("node-logs");
    let compat = state::compat::Compat::new(
        &std::fs::read(data.root.join("signer.key"))
            .context("cannot read the enclave-signing key")?,
    );
    let state = Arc::new(state::AppState {
        store,
        data,
        base_domain: settings.base_domain.clone(),
        routes,
        nodes: state::Nodes {
            local: Arc::new(runner.clone()),
            remote: Arc::new(state::backend::RemoteHosts::new(remote_logs)),
        },
        lease_secs: settings.lease_secs,
        node_options: settings.node_options,
        proxy_port: std::sync::atomic::AtomicU16::new(0),
        tee: settings.tee.tee,
        cache: mse_runtime::EnvCache::new(&settings.cache_dir)
            .with_installer(settings.installer.clone()),
        catalog,
        acme: settings.acme.clone(),
        max_token_lifetime: settings.max_token_lifetime,
        compat,
        recovery: settings.recovery.clone(),
    });
    Ok(Opened {
        state,
        runner,
        admin_token,
    })
}

/// An opened platform: what its processes share, and its runner.
#[derive(Debug)]
pub struct Opened {
    /// What every handler sees.
    pub state: state::Shared,
    /// This process's node runner (detached without the node role).
    pub runner: roles::runner::Runner,
    /// On the first start of an API, the admin token (also written to
    /// `admin.token`, mode 0600).
    pub admin_token: Option<String>,
}
