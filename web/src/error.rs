//! The HTTP edge's error: a plain message and status for the user, the cause in the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Errors a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested device does not exist.
    #[error("no device named {0:?}")]
    UnknownDevice(String),
    /// A request parameter is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The store failed; details go to the log only.
    #[error("the database is not answering")]
    Store(#[from] store::Error),
}

/// Result alias for handlers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::UnknownDevice(_) => StatusCode::NOT_FOUND,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Store(cause) => {
                tracing::error!(error = %cause, "Store request failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let body = serde_json::json!({ "error": self.to_string() });
        (status, axum::Json(body)).into_response()
    }
}
