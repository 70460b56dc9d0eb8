//! The platform: the control plane's store and REST API, and the operator's
//! data folder. The `mse-server` binary runs them.

pub mod api;
pub mod datadir;
pub mod store;

use std::path::Path;
use std::sync::Arc;

/// Initialises (first start) or opens the platform in `data_dir`. Returns the
/// API state and, on first start, the admin token (also written to
/// `admin.token`, mode 0600).
pub async fn open(
    data_dir: &Path,
    database_url: Option<&str>,
    base_domain: &str,
) -> anyhow::Result<(api::Shared, Option<String>)> {
    let now = chrono::Utc::now();
    let data = datadir::init(data_dir, base_domain, now)?;
    let url = match database_url {
        Some(url) => url.to_string(),
        None => format!("sqlite://{}?mode=rwc", data.path("mse.db").display()),
    };
    let store = store::Store::open(&url).await?;
    let mut admin_token = None;
    if store.user_count().await? == 0 {
        let admin = store.create_user("admin", true, now.timestamp()).await?;
        let token = api::new_token();
        store
            .add_token(
                &admin.id,
                "admin",
                &api::token_hash(&token),
                now.timestamp(),
            )
            .await?;
        mse_package::context::write_private(&data.path("admin.token"), token.as_bytes())?;
        admin_token = Some(token);
    }
    Ok((Arc::new(api::AppState { store, data }), admin_token))
}
