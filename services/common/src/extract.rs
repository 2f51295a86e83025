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
        let value = match axum::Json::<serde_json::Value>::from_request(request, state).await {
            Ok(axum::Json(value)) => value,
            Err(JsonRejection::JsonSyntaxError(error)) => {
                return Err(ApiError::BadRequest(format!("Malformed JSON body: {}", error.body_text())));
            }
            Err(JsonRejection::JsonDataError(error)) => return Err(ApiError::Unprocessable(error.body_text())),
            Err(other) => return Err(ApiError::Rejected { status: other.status(), detail: other.body_text() }),
        };
        // Every body of this API is an object. serde would read a struct from an array too
        // (`[null, null]` as a profile update that changes nothing, answered 200), so anything
        // else is refused before it is read.
        if !value.is_object() {
            return Err(ApiError::Unprocessable("The body must be a JSON object".to_owned()));
        }
        // The refusal names the field, as axum's own extractor does (`password: invalid type`).
        serde_path_to_error::deserialize(value).map(Json).map_err(|error| {
            let path = error.path().to_string();
            let reason = error.into_inner();
            let detail = if path == "." { reason.to_string() } else { format!("{path}: {reason}") };
            ApiError::Unprocessable(format!("Failed to deserialize the JSON body into the target type: {detail}"))
        })
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct ProfileUpdate {
        first_name: Option<String>,
        last_name: Option<String>,
    }

    async fn extract(content_type: &str, body: &'static str) -> Result<ProfileUpdate, u16> {
        let request =
            Request::builder().method("PUT").header("content-type", content_type).body(Body::from(body)).expect("a request");
        Json::<ProfileUpdate>::from_request(request, &())
            .await
            .map(|Json(value)| value)
            .map_err(|error| error.into_response().status().as_u16())
    }

    #[tokio::test]
    async fn a_body_is_an_object_of_the_right_shape_or_a_4xx() {
        assert!(extract("application/json", r#"{"first_name": "Ada"}"#).await.is_ok());
        // serde alone reads a struct from an array: `[null, null]` would be an update of nothing.
        assert_eq!(extract("application/json", "[null, null]").await.unwrap_err(), 422);
        assert_eq!(extract("application/json", "\"Ada\"").await.unwrap_err(), 422);
        assert_eq!(extract("application/json", r#"{"first_name": 3}"#).await.unwrap_err(), 422);
        let request = Request::builder()
            .method("PUT")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"first_name": 3}"#))
            .expect("a request");
        let refusal = Json::<ProfileUpdate>::from_request(request, &()).await.expect_err("a refusal").to_string();
        assert!(refusal.contains("first_name: invalid type"), "the refusal names the field: {refusal}");
        assert_eq!(extract("application/json", "{").await.unwrap_err(), 400);
        assert_eq!(extract("text/plain", r#"{"first_name": "Ada"}"#).await.unwrap_err(), 415);
    }
}
