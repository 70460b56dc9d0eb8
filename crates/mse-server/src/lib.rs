//! The platform: the control plane's store and REST API, and the operator's
//! data folder. The `mse-server` binary runs them.

pub mod api;
pub mod apps;
pub mod datadir;
pub mod proxy;
pub mod runner;
pub mod store;

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
    /// Where nodes keep their private folders.
    pub nodes_dir: PathBuf,
    /// `simulation` or `gramine`.
    pub quote_provider: String,
}

/// Initialises (first start) or opens the platform. Returns the API state
/// and, on first start, the admin token (also written to `admin.token`, mode
/// 0600). Live apps whose node is gone are marked `on_error` ("node lost").
pub async fn open(settings: &Settings) -> anyhow::Result<(api::Shared, Option<String>)> {
    let now = chrono::Utc::now();
    let data = datadir::init(&settings.data_dir, &settings.base_domain, now)?;
    let url = match &settings.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}?mode=rwc", data.path("mse.db").display()),
    };
    let store = store::Store::open(&url).await?;
    let mut admin_token = None;
    if store.user_count().await? == 0 {
        let admin = store.create_user("admin", true, now.timestamp()).await?;
        let (_, token) = api::issue_token(&store, &admin.id, "admin", now.timestamp()).await?;
        mse_package::context::write_private(&data.path("admin.token"), token.as_bytes())?;
        admin_token = Some(token);
    }
    let runner = runner::Runner::new(
        store.clone(),
        runner::RunnerConfig {
            mse_run: settings.mse_run.clone(),
            data_dir: settings.data_dir.clone(),
            cache_dir: settings.cache_dir.clone(),
            nodes_dir: settings.nodes_dir.clone(),
            quote_provider: settings.quote_provider.clone(),
        },
        Arc::new(runner::Routes::default()),
    );
    runner.recover().await?;
    Ok((
        Arc::new(api::AppState {
            store,
            data,
            base_domain: settings.base_domain.clone(),
            runner,
        }),
        admin_token,
    ))
}
