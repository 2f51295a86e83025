//! The one error type every handler returns, and its JSON mapping: `{"detail": "..."}`, the
//! shape the guide's FastAPI original used.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is well formed but asks for something the rules forbid.
    #[error("{0}")]
    BadRequest(String),
    /// 401 with `WWW-Authenticate: Bearer`: no token, or one we could not verify.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a verified caller asks for something that is not theirs to ask.
    #[error("{0}")]
    Forbidden(String),
    /// 404: nothing by that id that the caller may see.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request collides with existing state (a duplicate email, say).
    #[error("{0}")]
    Conflict(String),
    /// 422: the body or query does not validate; `detail` says why.
    #[error("{0}")]
    Unprocessable(String),
    /// 422 with a list of field errors, as FastAPI answers validation failures.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 4xx as the framework chose it (415 for a missing content type, 413 for a body too
    /// large): a request refused before any of our code saw it.
    #[error("{detail}")]
    Rejected { status: StatusCode, detail: String },
    /// 429 with `Retry-After` (whole seconds, rounded up): the caller asked too often.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: std::time::Duration },
    /// 503: a dependency is down; the caller may retry. The caller reads `detail`, which names no
    /// host, port or URL; `cause` (which may) is logged with the request id, never sent. Made
    /// with [`ApiError::unavailable`].
    #[error("{detail}")]
    Unavailable { detail: String, cause: String },
    /// 500: a bug or an infrastructure failure. The cause chain is logged, never sent.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Every error answer's body, as the OpenAPI documents declare it: `{"detail": ...}`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub detail: ErrorDetail,
}

/// What went wrong: a sentence, or (a 422 for invalid fields) one entry per field.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ErrorDetail {
    Message(String),
    Fields(Vec<FieldError>),
}

/// One field's validation failure, shaped like FastAPI's `{"loc": [...], "msg": ..., "type": ...}`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    pub fn new(location: &str, field: &str, message: impl Into<String>) -> Self {
        Self { loc: vec![location.to_owned(), field.to_owned()], msg: message.into(), kind: "value_error".to_owned() }
    }
}

impl ApiError {
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    /// A 503 whose caller reads `detail` and whose `cause` goes to the log only.
    pub fn unavailable(detail: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        ApiError::Unavailable { detail: detail.into(), cause: format!("{cause:#}") }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) | ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Rejected { status, .. } => *status,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A 503 with its JSON detail.
fn unavailable_response(detail: String) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({ "detail": detail }))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            // A store or the broker that is down or timing out is an outage, not a bug: the
            // caller gets a 503 it may retry, and it is logged as the operational event it is.
            // The distinction is made on the error's types (see `is_infrastructure_failure`).
            ApiError::Internal(cause) if crate::failure::is_infrastructure_failure(cause) => {
                tracing::warn!(error = ?cause, "request failed because a dependency is unavailable");
                return unavailable_response("Service temporarily unavailable".into());
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = ?cause, "request failed with an internal error");
                json!({ "detail": "Internal server error" })
            }
            ApiError::Unavailable { detail, cause } => {
                tracing::warn!(%detail, %cause, "request failed because a dependency is unavailable");
                return unavailable_response(detail.clone());
            }
            ApiError::Validation(errors) => json!(ErrorBody { detail: ErrorDetail::Fields(errors.clone()) }),
            other => json!(ErrorBody { detail: ErrorDetail::Message(other.to_string()) }),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::TooManyRequests { retry_after, .. } = &self {
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What failed inside (a URL, a host and port) is logged, never answered.
    #[tokio::test]
    async fn an_unavailable_dependency_is_answered_without_its_address() {
        let error = ApiError::unavailable(
            "Token signing keys are unavailable; try again shortly",
            "http://127.0.0.1:8003/api/v1/auth/jwks: error sending request: connection refused",
        );
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        assert_eq!(&body[..], br#"{"detail":"Token signing keys are unavailable; try again shortly"}"#);
    }
}
