//! `/api/v1/products`: the catalog resource.
//!
//! Reads are public. Writes need a verified access token; any signed-in user may manage the
//! catalog (the system has no administrator role). Decisions where the guide is silent:
//! - An id that is not a 24-hex ObjectId is a 422 (it can never name a product); a well-formed id
//!   with no product is a 404.
//! - `PUT` is a partial update: absent fields keep their value. `quantity` is the product's
//!   initial stock; after creation, stock belongs to the inventory service, so a `PUT` may repeat
//!   the current quantity but a different one is a 400 that points to the inventory adjust
//!   endpoint. Nothing else a `PUT` changes concerns inventory, so it publishes no event.
//! - `DELETE` hides the product at once and, in the same write, stores a `ProductDeleted` event;
//!   the inventory service then retires the product's stock record. The hidden tombstone is
//!   removed once the event is published.

pub mod model;
pub mod store;

use axum::extract::State;
use axum::http::StatusCode;
use bson::Document;
use bson::oid::ObjectId;
use common::auth::StaffCaller;
use common::extract::{Json, Path, Query};
use common::messaging::OutboxMessage;
use common::messaging::events::{ProductCreated, ProductDeleted};
use common::{ApiError, ApiResult};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::model::{NewProduct, ProductDocument, ProductFilters, ProductResponse, ProductUpdate};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_products, create_product))
        .routes(routes!(get_product, update_product, delete_product))
        // The collection answers without its trailing slash too (no redirect: it would drop a
        // POST body).
        .route("/api/v1/products", axum::routing::get(list_products).post(create_product))
}

/// Parses a product id from the path: anything but 24 hexadecimal digits is a 422.
fn parse_product_id(text: &str) -> ApiResult<ObjectId> {
    ObjectId::parse_str(text)
        .map_err(|_| ApiError::Unprocessable(format!("{text:?} is not a valid product id (24 hexadecimal digits)")))
}

fn product_not_found(id: ObjectId) -> ApiError {
    ApiError::NotFound(format!("Product {id} not found"))
}

/// List products, optionally filtered; in creation order.
#[utoipa::path(
    get,
    path = "/api/v1/products/",
    tag = "products",
    params(ProductFilters),
    responses(
        (status = 200, description = "The matching products (an empty list when none match)", body = [ProductResponse]),
        (status = 422, description = "A filter of the wrong type or out of range, or an unknown parameter", body = common::error::ErrorBody),
    )
)]
async fn list_products(
    State(state): State<AppState>,
    Query(filters): Query<ProductFilters>,
) -> ApiResult<Json<Vec<ProductResponse>>> {
    let query = filters.validate().map_err(ApiError::Validation)?;
    let products = state.products.find(&query).await?;
    Ok(Json(products.into_iter().map(ProductResponse::from).collect()))
}

/// Create a product; its inventory record follows asynchronously.
#[utoipa::path(
    post,
    path = "/api/v1/products/",
    tag = "products",
    request_body = NewProduct,
    security(("bearer" = []), ("oauth2" = [])),
    responses(
        (status = 201, description = "Created", body = ProductResponse),
        (status = 401, description = "No valid access token", body = common::error::ErrorBody),
        (status = 403, description = "Staff only (`REQUIRE_STAFF_ROLE`), and the token has no staff role", body = common::error::ErrorBody),
        (status = 422, description = "Invalid product", body = common::error::ErrorBody),
    )
)]
async fn create_product(
    State(state): State<AppState>,
    _caller: StaffCaller,
    Json(new_product): Json<NewProduct>,
) -> ApiResult<(StatusCode, Json<ProductResponse>)> {
    new_product.validate().map_err(ApiError::Validation)?;
    let now = common::timestamp::now();
    let product = ProductDocument {
        id: ObjectId::new(),
        name: new_product.name,
        description: new_product.description,
        category: new_product.category,
        price_cents: new_product.price.0,
        quantity: new_product.quantity,
        deleted: false,
        created_at: now,
        updated_at: now,
    };
    let event = OutboxMessage::new(&ProductCreated { product_id: product.id.to_hex(), quantity: product.quantity });
    state.products.insert(&product, &[event]).await?;
    tracing::info!(product_id = %product.id, quantity = product.quantity, "created product");
    Ok((StatusCode::CREATED, Json(product.into())))
}

/// One product.
#[utoipa::path(
    get,
    path = "/api/v1/products/{id}",
    tag = "products",
    params(("id" = String, Path, description = "The product id (24 hexadecimal digits)")),
    responses(
        (status = 200, description = "The product", body = ProductResponse),
        (status = 404, description = "No such product", body = common::error::ErrorBody),
        (status = 422, description = "Not a valid product id", body = common::error::ErrorBody),
    )
)]
async fn get_product(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<ProductResponse>> {
    let id = parse_product_id(&id)?;
    let product = state.products.find_by_id(id).await?.ok_or_else(|| product_not_found(id))?;
    Ok(Json(product.into()))
}

/// Change a product's name, description, category or price (a partial update).
#[utoipa::path(
    put,
    path = "/api/v1/products/{id}",
    tag = "products",
    params(("id" = String, Path, description = "The product id (24 hexadecimal digits)")),
    request_body = ProductUpdate,
    security(("bearer" = []), ("oauth2" = [])),
    responses(
        (status = 200, description = "The product as it is now", body = ProductResponse),
        (status = 400, description = "A different quantity: stock is changed through the inventory service", body = common::error::ErrorBody),
        (status = 401, description = "No valid access token", body = common::error::ErrorBody),
        (status = 403, description = "Staff only (`REQUIRE_STAFF_ROLE`), and the token has no staff role", body = common::error::ErrorBody),
        (status = 404, description = "No such product", body = common::error::ErrorBody),
        (status = 422, description = "Invalid update or product id", body = common::error::ErrorBody),
    )
)]
async fn update_product(
    State(state): State<AppState>,
    _caller: StaffCaller,
    Path(id): Path<String>,
    Json(update): Json<ProductUpdate>,
) -> ApiResult<Json<ProductResponse>> {
    let id = parse_product_id(&id)?;
    update.validate().map_err(ApiError::Validation)?;
    let mut changes = Document::new();
    if let Some(name) = update.name {
        changes.insert("name", name);
    }
    if let Some(description) = update.description {
        changes.insert("description", description);
    }
    if let Some(category) = update.category {
        changes.insert("category", category);
    }
    if let Some(price) = update.price {
        changes.insert("price_cents", price.0);
    }
    changes.insert("updated_at", bson::DateTime::from_chrono(common::timestamp::now()));

    match state.products.update(id, changes, update.quantity).await? {
        Some(product) => Ok(Json(product.into())),
        // Nothing matched: either there is no such product, or the quantity differs.
        None => match (state.products.find_by_id(id).await?, update.quantity) {
            (Some(current), Some(requested)) => Err(ApiError::BadRequest(format!(
                "quantity cannot change from {} to {requested} here: stock is managed by the inventory service \
                 (POST /api/v1/inventory/{id}/adjust)",
                current.quantity
            ))),
            _ => Err(product_not_found(id)),
        },
    }
}

/// Delete a product; its inventory record is retired asynchronously.
#[utoipa::path(
    delete,
    path = "/api/v1/products/{id}",
    tag = "products",
    params(("id" = String, Path, description = "The product id (24 hexadecimal digits)")),
    security(("bearer" = []), ("oauth2" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid access token", body = common::error::ErrorBody),
        (status = 403, description = "Staff only (`REQUIRE_STAFF_ROLE`), and the token has no staff role", body = common::error::ErrorBody),
        (status = 404, description = "No such product", body = common::error::ErrorBody),
        (status = 422, description = "Not a valid product id", body = common::error::ErrorBody),
    )
)]
async fn delete_product(State(state): State<AppState>, _caller: StaffCaller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = parse_product_id(&id)?;
    let event = OutboxMessage::new(&ProductDeleted { product_id: id.to_hex() });
    let deleted_at = bson::DateTime::from_chrono(common::timestamp::now());
    if !state.products.mark_deleted(id, &event, deleted_at).await? {
        return Err(product_not_found(id));
    }
    tracing::info!(product_id = %id, "deleted product");
    Ok(StatusCode::NO_CONTENT)
}
