//! The platform's public routes: health, where apps are served, and the
//! public keys and certificates clients verify with.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::state::{ApiError, ApiResult, Shared};

/// How long `/health` waits for the store.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /health`: liveness of the API and its store (503 when the store does not answer).
pub async fn health(State(state): State<Shared>) -> Response {
    match tokio::time::timeout(HEALTH_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Json(mse_api::platform::Health::ok()).into_response(),
        Ok(Err(e)) => {
            eprintln!("health: store error: {e}");
            ApiError::unavailable(
                "the store does not answer: every authenticated route fails until it does",
            )
            .into_response()
        }
        Err(_) => ApiError::unavailable(format!(
            "the store did not answer within {} s: every authenticated route fails until it does",
            HEALTH_TIMEOUT.as_secs()
        ))
        .into_response(),
    }
}

fn pem(text: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        text.to_string(),
    )
        .into_response()
}

/// `GET /platform`: where apps are served and how they are attested.
pub async fn platform(State(state): State<Shared>) -> Json<mse_api::platform::Platform> {
    Json(mse_api::platform::Platform {
        base_domain: state.base_domain.clone(),
        proxy_port: state.proxy_port.load(std::sync::atomic::Ordering::Relaxed),
        quote_provider: state.tee.quote_provider().to_string(),
    })
}

/// `GET /signer`: the enclave-signing public key (PEM).
pub async fn signer(State(state): State<Shared>) -> Response {
    pem(&state.data.signer_pub_pem)
}

/// `GET /simulation-ca`: the simulation CA certificate (PEM).
pub async fn simulation_ca(State(state): State<Shared>) -> Response {
    pem(&state.data.simulation_ca_pem)
}

/// `GET /simulation-revoked`: the simulation quote keys the platform revoked.
pub async fn simulation_revoked(State(state): State<Shared>) -> ApiResult<Json<serde_json::Value>> {
    let revoked = crate::data::quote_keys::revoked(&state.store).await?;
    Ok(Json(json!({ "revoked": revoked })))
}

/// `GET /operator-ca`: the operator CA certificate (PEM).
pub async fn operator_ca(State(state): State<Shared>) -> Response {
    pem(&state.data.operator_ca_pem)
}
