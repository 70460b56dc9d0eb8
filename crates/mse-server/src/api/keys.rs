//! The key service's public description (docs/keys.md): where owners reach
//! it and what its evidence must show.

use axum::extract::State;
use axum::Json;
use mse_api::keys::KeyServiceInfo;

use crate::state::{now, ApiResult, Shared};

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
