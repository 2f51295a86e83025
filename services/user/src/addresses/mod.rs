//! `/api/v1/users/me/addresses`: the caller's shipping addresses.
//!
//! Only ever the caller's own: another user's address id answers 404, exactly like an id that
//! does not exist, so ids reveal nothing. At most one address per user is the default.

pub mod store;

use axum::extract::State;
use axum::http::StatusCode;
use common::ApiResult;
use common::extract::{Json, Path};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;
use crate::users::ActiveUser;
use crate::validation::{MAXIMUM_ADDRESS_FIELD_LENGTH, MAXIMUM_ADDRESS_LINE_LENGTH, MAXIMUM_POSTAL_CODE_LENGTH, Validator};
use store::{AddressChanges, AddressRecord, NewAddress};

pub const TAG: &str = "addresses";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_addresses, create_address))
        .routes(routes!(update_address, delete_address))
        // The collection answers with a trailing slash too.
        .route("/api/v1/users/me/addresses/", axum::routing::get(list_addresses).post(create_address))
}

/// An address as the guide shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AddressResponse {
    pub id: i64,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub state: String,
    pub postal_code: String,
    pub country: String,
    pub is_default: bool,
}

impl From<AddressRecord> for AddressResponse {
    fn from(record: AddressRecord) -> Self {
        Self {
            id: record.id,
            line1: record.line1,
            line2: record.line2,
            city: record.city,
            state: record.state,
            postal_code: record.postal_code,
            country: record.country,
            is_default: record.is_default,
        }
    }
}

/// A new address. `line2` is optional; `is_default` omitted makes the address the default only
/// when the user has none yet (so a first address is the default without asking).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAddressRequest {
    #[schema(example = "123 Example Street")]
    pub line1: String,
    #[schema(example = "Apt 4B")]
    pub line2: Option<String>,
    #[schema(example = "Example City")]
    pub city: String,
    #[schema(example = "EX")]
    pub state: String,
    #[schema(example = "12345")]
    pub postal_code: String,
    #[schema(example = "Example Country")]
    pub country: String,
    #[schema(example = true)]
    pub is_default: Option<bool>,
}

/// Changes to an address: every field is optional and an omitted field keeps its value. `line2:
/// null` (or `""`) clears the second line; `is_default: true` moves the default here.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAddressRequest {
    pub line1: Option<String>,
    #[serde(default, deserialize_with = "crate::users::present_or_null")]
    #[schema(value_type = Option<String>)]
    pub line2: Option<Option<String>>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    pub is_default: Option<bool>,
}

impl CreateAddressRequest {
    fn validate(&self) -> ApiResult<NewAddress> {
        let mut validator = Validator::new();
        let address = NewAddress {
            line1: validator.required_text("line1", &self.line1, MAXIMUM_ADDRESS_LINE_LENGTH),
            line2: validator.optional_text("line2", self.line2.as_deref(), MAXIMUM_ADDRESS_LINE_LENGTH),
            city: validator.required_text("city", &self.city, MAXIMUM_ADDRESS_FIELD_LENGTH),
            state: validator.required_text("state", &self.state, MAXIMUM_ADDRESS_FIELD_LENGTH),
            postal_code: validator.required_text("postal_code", &self.postal_code, MAXIMUM_POSTAL_CODE_LENGTH),
            country: validator.required_text("country", &self.country, MAXIMUM_ADDRESS_FIELD_LENGTH),
            is_default: self.is_default,
        };
        validator.finish()?;
        Ok(address)
    }
}

impl UpdateAddressRequest {
    fn validate(&self) -> ApiResult<AddressChanges> {
        let mut validator = Validator::new();
        let mut required = |field: &str, value: &Option<String>, maximum: usize| {
            value.as_deref().map(|text| validator.required_text(field, text, maximum))
        };
        let line1 = required("line1", &self.line1, MAXIMUM_ADDRESS_LINE_LENGTH);
        let city = required("city", &self.city, MAXIMUM_ADDRESS_FIELD_LENGTH);
        let state = required("state", &self.state, MAXIMUM_ADDRESS_FIELD_LENGTH);
        let postal_code = required("postal_code", &self.postal_code, MAXIMUM_POSTAL_CODE_LENGTH);
        let country = required("country", &self.country, MAXIMUM_ADDRESS_FIELD_LENGTH);
        let line2 =
            self.line2.as_ref().map(|line2| validator.optional_text("line2", line2.as_deref(), MAXIMUM_ADDRESS_LINE_LENGTH));
        validator.finish()?;
        Ok(AddressChanges { line1, line2, city, state, postal_code, country, is_default: self.is_default })
    }
}

/// The caller's addresses, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/users/me/addresses",
    tag = TAG,
    security(("bearer" = []), ("oauth2" = [])),
    responses(
        (status = 200, description = "The caller's addresses", body = Vec<AddressResponse>),
        (status = 401, description = "Missing or invalid access token", body = common::error::ErrorBody),
    )
)]
async fn list_addresses(State(state): State<AppState>, ActiveUser(user): ActiveUser) -> ApiResult<Json<Vec<AddressResponse>>> {
    let addresses = store::list_for_user(&state.pool, user.id).await?;
    Ok(Json(addresses.into_iter().map(AddressResponse::from).collect()))
}

/// Adds an address to the caller's account.
#[utoipa::path(
    post,
    path = "/api/v1/users/me/addresses",
    tag = TAG,
    security(("bearer" = []), ("oauth2" = [])),
    request_body = CreateAddressRequest,
    responses(
        (status = 201, description = "The new address", body = AddressResponse),
        (status = 401, description = "Missing or invalid access token", body = common::error::ErrorBody),
        (status = 422, description = "A field is missing, empty or too long", body = common::error::ErrorBody),
    )
)]
async fn create_address(
    State(state): State<AppState>,
    ActiveUser(user): ActiveUser,
    Json(request): Json<CreateAddressRequest>,
) -> ApiResult<(StatusCode, Json<AddressResponse>)> {
    let address = request.validate()?;
    let created = store::insert(&state.pool, user.id, &address).await?;
    tracing::info!(user_id = user.id, address_id = created.id, is_default = created.is_default, "address added");
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// Changes one of the caller's addresses.
#[utoipa::path(
    put,
    path = "/api/v1/users/me/addresses/{address_id}",
    tag = TAG,
    security(("bearer" = []), ("oauth2" = [])),
    params(("address_id" = i64, Path, description = "The address id")),
    request_body = UpdateAddressRequest,
    responses(
        (status = 200, description = "The updated address", body = AddressResponse),
        (status = 401, description = "Missing or invalid access token", body = common::error::ErrorBody),
        (status = 404, description = "The caller has no address with this id", body = common::error::ErrorBody),
        (status = 422, description = "A field is empty or too long", body = common::error::ErrorBody),
    )
)]
async fn update_address(
    State(state): State<AppState>,
    ActiveUser(user): ActiveUser,
    Path(address_id): Path<i64>,
    Json(request): Json<UpdateAddressRequest>,
) -> ApiResult<Json<AddressResponse>> {
    let changes = request.validate()?;
    let updated =
        store::update(&state.pool, user.id, address_id, &changes).await?.ok_or_else(|| common::ApiError::not_found("Address"))?;
    tracing::info!(user_id = user.id, address_id, "address updated");
    Ok(Json(updated.into()))
}

/// Deletes one of the caller's addresses. Deleting the default leaves the user without one.
#[utoipa::path(
    delete,
    path = "/api/v1/users/me/addresses/{address_id}",
    tag = TAG,
    security(("bearer" = []), ("oauth2" = [])),
    params(("address_id" = i64, Path, description = "The address id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid access token", body = common::error::ErrorBody),
        (status = 404, description = "The caller has no address with this id", body = common::error::ErrorBody),
    )
)]
async fn delete_address(
    State(state): State<AppState>,
    ActiveUser(user): ActiveUser,
    Path(address_id): Path<i64>,
) -> ApiResult<StatusCode> {
    if !store::delete(&state.pool, user.id, address_id).await? {
        return Err(common::ApiError::not_found("Address"));
    }
    tracing::info!(user_id = user.id, address_id, "address deleted");
    Ok(StatusCode::NO_CONTENT)
}
