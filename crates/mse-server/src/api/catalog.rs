//! `GET /catalog`: the platform's image catalog, with its digest as ETag.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::state::{ApiError, Shared};

/// `GET /catalog`: the catalog with its digest, also as the `ETag`; a
/// client that sends the digest it has in `If-None-Match` gets 304 while it
/// is current.
pub async fn get(State(state): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    let current = state.current_catalog()?;
    let etag = format!("\"{}\"", current.digest);
    let etag_value = HeaderValue::from_str(&etag).map_err(|_| ApiError::internal("bad digest"))?;
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    let published = mse_runtime::PublishedCatalog {
        digest: current.digest.clone(),
        images: current.catalog.images.clone(),
        references_signature: current.references_signature.clone(),
    };
    Ok(([(header::ETAG, etag_value)], Json(published)).into_response())
}
