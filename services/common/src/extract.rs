//! Drop-in replacements for axum's `Json`, `Query`, `Form` and `Path` extractors whose
//! rejections answer in our `{"detail": ...}` shape with a 4xx status, so that bad input can
//! never surface as a 500 or as axum's plain-text errors.

use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body. Malformed JSON is a 400; JSON of the wrong shape or types is a 422.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(JsonRejection::JsonSyntaxError(error)) => {
                Err(ApiError::BadRequest(format!("Malformed JSON body: {}", error.body_text())))
            }
            Err(JsonRejection::JsonDataError(error)) => Err(ApiError::Unprocessable(error.body_text())),
            Err(other) => Err(ApiError::Rejected { status: other.status(), detail: other.body_text() }),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string. A value of the wrong type (or an operator smuggled in as `a[$ne]=b`, which
/// simply does not deserialize into our plain structs) is a 422.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection: QueryRejection| ApiError::Unprocessable(rejection.body_text()))
    }
}

/// A `application/x-www-form-urlencoded` body, as the OAuth2 password login uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Form<T>(pub T);

impl<T, S> FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(request, state).await {
            Ok(axum::Form(value)) => Ok(Form(value)),
            Err(FormRejection::InvalidFormContentType(error)) => {
                Err(ApiError::Rejected { status: StatusCode::UNSUPPORTED_MEDIA_TYPE, detail: error.body_text() })
            }
            Err(other) => Err(ApiError::Unprocessable(other.body_text())),
        }
    }
}

/// Path parameters. A segment of the wrong type (`/users/me/addresses/abc`) is a 422.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection: PathRejection| ApiError::Unprocessable(rejection.body_text()))
    }
}
