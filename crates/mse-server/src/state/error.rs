//! The one error type of the API's handlers: a status and a message,
//! answered as `{"error": "…"}`. The failures of the floors below turn into
//! it through `From`, so handlers use `?`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mse_api::error::ErrorBody;

use crate::domain::bounds::OutOfBounds;
use crate::store::StoreError;

/// An error answer: `{"error": "…"}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 404: there is no such thing (or it is another user's, which must
    /// not show).
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: no token, or one that does not work.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: the caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    /// 409: it clashes with what exists.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// 413: the body is over its limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// 422: well-formed, but not acceptable.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 500: the platform failed (the detail belongs in the server's log,
    /// not in `message`).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 503: a part the request needs does not answer.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// Its status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // The detail stays in the server's log; the client learns only that
        // the store failed.
        eprintln!("store error: {e}");
        ApiError::internal("the store failed")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody::new(self.message))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// What a handler returns.
pub type ApiResult<T> = Result<T, ApiError>;

impl From<OutOfBounds> for ApiError {
    /// A number out of its bounds is the caller's mistake: 400.
    fn from(e: OutOfBounds) -> Self {
        ApiError::bad_request(e.0)
    }
}

impl From<crate::data::quote_keys::QuoteKeyError> for ApiError {
    fn from(e: crate::data::quote_keys::QuoteKeyError) -> Self {
        match e {
            crate::data::quote_keys::QuoteKeyError::Store(e) => e.into(),
            e => {
                eprintln!("quote keys: {e}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the quote keys failed")
            }
        }
    }
}
