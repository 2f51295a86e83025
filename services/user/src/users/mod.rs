//! `/api/v1/users/me`: the caller's own profile, with their addresses.
//!
//! There is deliberately no endpoint that reads or changes another user, and no way to change
//! an email or a password here (the request body refuses unknown fields, so an attempt is a 422
//! rather than a silent no-op).

pub mod store;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use common::auth::CurrentUser;
use common::extract::Json;
use common::{ApiError, ApiResult};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::addresses::AddressResponse;
use crate::state::AppState;
use crate::validation::{MAXIMUM_NAME_LENGTH, Validator};
use store::{ProfileChanges, UserRecord};

pub const TAG: &str = "users";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(read_me, update_me))
}

/// A user as the guide shows it, fields in the guide's order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserResponse {
    #[schema(example = 1)]
    pub id: i64,
    #[schema(example = "customer@example.com")]
    pub email: String,
    #[schema(example = "Example")]
    pub first_name: String,
    #[schema(example = "Customer")]
    pub last_name: String,
    #[schema(example = "555-123-4567")]
    pub phone: Option<String>,
    pub is_active: bool,
    #[serde(with = "common::timestamp")]
    #[schema(value_type = String, format = DateTime, example = "2025-05-15T11:30:00.123456+00:00")]
    pub created_at: DateTime<Utc>,
    pub addresses: Vec<AddressResponse>,
}

impl UserResponse {
    pub fn new(user: UserRecord, addresses: Vec<AddressResponse>) -> Self {
        Self {
            id: user.id,
            email: user.email,
            first_name: user.first_name,
            last_name: user.last_name,
            phone: user.phone,
            is_active: user.is_active,
            created_at: user.created_at,
            addresses,
        }
    }
}

/// Profile changes: every field is optional and an omitted field keeps its value. `phone:
/// null` (or `""`) removes the phone number; the names cannot be removed.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfileRequest {
    #[schema(example = "Example")]
    pub first_name: Option<String>,
    #[schema(example = "Customer")]
    pub last_name: Option<String>,
    #[serde(default, deserialize_with = "present_or_null")]
    #[schema(value_type = Option<String>, example = "555-123-4567")]
    pub phone: Option<Option<String>>,
}

impl UpdateProfileRequest {
    fn validate(&self) -> ApiResult<ProfileChanges> {
        let mut validator = Validator::new();
        let first_name = self.first_name.as_deref().map(|name| validator.required_text("first_name", name, MAXIMUM_NAME_LENGTH));
        let last_name = self.last_name.as_deref().map(|name| validator.required_text("last_name", name, MAXIMUM_NAME_LENGTH));
        let phone = self.phone.as_ref().map(|phone| validator.optional_phone("phone", phone.as_deref()));
        validator.finish()?;
        Ok(ProfileChanges { first_name, last_name, phone })
    }
}

/// With `#[serde(default)]`: an absent field is `None`, an explicit `null` is `Some(None)`, so
/// "leave it" and "clear it" can be told apart.
pub fn present_or_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// The caller, verified by `common::auth::CurrentUser` and then looked up: a token whose user
/// no longer exists or has been deactivated is refused with 401, although its signature holds.
#[derive(Debug, Clone)]
pub struct ActiveUser(pub UserRecord);

impl FromRequestParts<AppState> for ActiveUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = CurrentUser::from_request_parts(parts, state).await?;
        active_user(state, caller.id).await.map(ActiveUser)
    }
}

/// The user with this id if it exists and is active, else a 401.
pub async fn active_user(state: &AppState, user_id: i64) -> ApiResult<UserRecord> {
    match store::find_by_id(&state.pool, user_id).await? {
        Some(user) if user.is_active => Ok(user),
        _ => Err(ApiError::Unauthorized("Could not validate credentials: user not found or inactive".into())),
    }
}

/// The caller with their addresses.
#[utoipa::path(
    get,
    path = "/api/v1/users/me",
    tag = TAG,
    security(("bearer" = []), ("oauth2" = [])),
    responses(
        (status = 200, description = "The caller", body = UserResponse),
        (status = 401, description = "Missing or invalid access token, or the user is gone or inactive", body = common::error::ErrorBody),
    )
)]
async fn read_me(State(state): State<AppState>, ActiveUser(user): ActiveUser) -> ApiResult<Json<UserResponse>> {
    let addresses = crate::addresses::store::list_for_user(&state.pool, user.id).await?;
    Ok(Json(UserResponse::new(user, addresses.into_iter().map(AddressResponse::from).collect())))
}

/// Changes the caller's first name, last name or phone.
#[utoipa::path(
    put,
    path = "/api/v1/users/me",
    tag = TAG,
    security(("bearer" = []), ("oauth2" = [])),
    request_body = UpdateProfileRequest,
    responses(
        (status = 200, description = "The updated caller, with addresses", body = UserResponse),
        (status = 401, description = "Missing or invalid access token", body = common::error::ErrorBody),
        (status = 422, description = "A field is empty, too long or unknown", body = common::error::ErrorBody),
    )
)]
async fn update_me(
    State(state): State<AppState>,
    ActiveUser(user): ActiveUser,
    Json(request): Json<UpdateProfileRequest>,
) -> ApiResult<Json<UserResponse>> {
    let changes = request.validate()?;
    let updated = store::update_profile(&state.pool, user.id, &changes)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("Could not validate credentials: user not found or inactive".into()))?;
    tracing::info!(user_id = user.id, "profile updated");
    let addresses = crate::addresses::store::list_for_user(&state.pool, user.id).await?;
    Ok(Json(UserResponse::new(updated, addresses.into_iter().map(AddressResponse::from).collect())))
}
