//! `/api/v1/inventory`: stock records, their history and manual adjustments (token required),
//! plus the handlers of the catalog's events that create and retire records.
//!
//! Decisions where the guide is silent:
//! - A product id that is not a 24-hex ObjectId is a 422; an unknown (or deleted) product is a
//!   404. The history of a deleted product stays readable.
//! - An adjustment changes the available quantity only (reserved stock belongs to orders) and is
//!   refused with a 409 when it would go below zero.
//! - A deleted product's record is retired, not removed: its available units are written off,
//!   reserved units stay until their orders are released, and the record is hidden.

pub mod model;
pub mod store;

use axum::extract::State;
use common::auth::{CurrentUser, StaffCaller};
use common::extract::{Json, Path, Query};
use common::messaging::HandlerError;
use common::messaging::events::{ProductCreated, ProductDeleted};
use common::{ApiError, ApiResult};
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::model::{HistoryEntry, HistoryFilters, InventoryFilters, InventoryRecord, Page, StockAdjustment, is_product_id};
use self::store::Discontinued;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_inventory))
        // The collection answers without its trailing slash too.
        .route("/api/v1/inventory", axum::routing::get(list_inventory))
        .routes(routes!(get_inventory))
        .routes(routes!(adjust_inventory))
        .routes(routes!(inventory_history))
}

/// The product id from a path, in the catalog's lowercase form (the product service accepts
/// either case, so this service does too). Anything but 24 hexadecimal digits is a 422.
fn checked_product_id(product_id: &str) -> ApiResult<String> {
    let normalized = product_id.to_ascii_lowercase();
    if is_product_id(&normalized) {
        Ok(normalized)
    } else {
        Err(ApiError::Unprocessable(format!("{product_id:?} is not a valid product id (24 hexadecimal digits)")))
    }
}

fn inventory_not_found(product_id: &str) -> ApiError {
    ApiError::NotFound(format!("Inventory for product {product_id} not found"))
}

/// List stock records in creation order.
#[utoipa::path(
    get,
    path = "/api/v1/inventory/",
    tag = "inventory",
    params(InventoryFilters),
    security(("bearer" = []), ("oauth2" = [])),
    responses(
        (status = 200, description = "Stock records", body = [InventoryRecord]),
        (status = 401, description = "No valid access token", body = common::error::ErrorBody),
        (status = 422, description = "Invalid paging or filter", body = common::error::ErrorBody),
    )
)]
async fn list_inventory(
    State(state): State<AppState>,
    _caller: CurrentUser,
    Query(filters): Query<InventoryFilters>,
) -> ApiResult<Json<Vec<InventoryRecord>>> {
    let page = Page::from_query(filters.skip, filters.limit).map_err(ApiError::Validation)?;
    let records = store::list(&state.pool, filters.low_stock.unwrap_or(false), page).await?;
    Ok(Json(records))
}

/// One product's stock.
#[utoipa::path(
    get,
    path = "/api/v1/inventory/{product_id}",
    tag = "inventory",
    params(("product_id" = String, Path, description = "The product id (24 hexadecimal digits)")),
    security(("bearer" = []), ("oauth2" = [])),
    responses(
        (status = 200, description = "The stock record", body = InventoryRecord),
        (status = 401, description = "No valid access token", body = common::error::ErrorBody),
        (status = 404, description = "No stock record for that product", body = common::error::ErrorBody),
        (status = 422, description = "Not a valid product id", body = common::error::ErrorBody),
    )
)]
async fn get_inventory(
    State(state): State<AppState>,
    _caller: CurrentUser,
    Path(product_id): Path<String>,
) -> ApiResult<Json<InventoryRecord>> {
    let product_id = checked_product_id(&product_id)?;
    let product_id = product_id.as_str();
    let record = store::find(&state.pool, product_id).await?.ok_or_else(|| inventory_not_found(product_id))?;
    Ok(Json(record))
}

/// Add or remove available stock by hand (a delivery, a count, breakage).
#[utoipa::path(
    post,
    path = "/api/v1/inventory/{product_id}/adjust",
    tag = "inventory",
    params(("product_id" = String, Path, description = "The product id (24 hexadecimal digits)")),
    request_body = StockAdjustment,
    security(("bearer" = []), ("oauth2" = [])),
    responses(
        (status = 200, description = "The stock record after the change", body = InventoryRecord),
        (status = 401, description = "No valid access token", body = common::error::ErrorBody),
        (status = 403, description = "Staff only (`REQUIRE_STAFF_ROLE`), and the token has no staff role", body = common::error::ErrorBody),
        (status = 404, description = "No stock record for that product", body = common::error::ErrorBody),
        (status = 409, description = "The change would take the available quantity below zero", body = common::error::ErrorBody),
        (status = 422, description = "Invalid adjustment or product id", body = common::error::ErrorBody),
    )
)]
async fn adjust_inventory(
    State(state): State<AppState>,
    _caller: StaffCaller,
    Path(product_id): Path<String>,
    Json(adjustment): Json<StockAdjustment>,
) -> ApiResult<Json<InventoryRecord>> {
    let product_id = checked_product_id(&product_id)?;
    let product_id = product_id.as_str();
    adjustment.validate().map_err(ApiError::Validation)?;
    let reason = adjustment.reason.trim();
    if let Some(record) = store::adjust(&state.pool, product_id, adjustment.quantity_change, reason).await? {
        tracing::info!(product_id, quantity_change = adjustment.quantity_change, reason, "adjusted stock");
        return Ok(Json(record));
    }
    // Nothing changed: say whether the record is missing or the change does not fit.
    let current = store::find(&state.pool, product_id).await?.ok_or_else(|| inventory_not_found(product_id))?;
    Err(ApiError::Conflict(format!(
        "cannot change the available quantity of product {product_id} by {}: {} available and {} reserved, and \
         available must stay at least 0 and available plus reserved at most {}",
        adjustment.quantity_change,
        current.available_quantity,
        current.reserved_quantity,
        i32::MAX
    )))
}

/// Every change to a product's stock, oldest first. It names the orders that reserved and
/// released stock, other customers' included, so with `REQUIRE_STAFF_ROLE=true` it is staff
/// work like the stock's writes.
#[utoipa::path(
    get,
    path = "/api/v1/inventory/{product_id}/history",
    tag = "inventory",
    params(("product_id" = String, Path, description = "The product id (24 hexadecimal digits)"), HistoryFilters),
    security(("bearer" = []), ("oauth2" = [])),
    responses(
        (status = 200, description = "The changes", body = [HistoryEntry]),
        (status = 401, description = "No valid access token", body = common::error::ErrorBody),
        (status = 403, description = "Staff only (REQUIRE_STAFF_ROLE=true) and the token has no staff role", body = common::error::ErrorBody),
        (status = 404, description = "No stock record for that product", body = common::error::ErrorBody),
        (status = 422, description = "Not a valid product id, or invalid paging", body = common::error::ErrorBody),
    )
)]
async fn inventory_history(
    State(state): State<AppState>,
    _caller: StaffCaller,
    Path(product_id): Path<String>,
    Query(filters): Query<HistoryFilters>,
) -> ApiResult<Json<Vec<HistoryEntry>>> {
    let product_id = checked_product_id(&product_id)?;
    let product_id = product_id.as_str();
    let page = Page::from_query(filters.skip, filters.limit).map_err(ApiError::Validation)?;
    if !store::exists(&state.pool, product_id).await? {
        return Err(inventory_not_found(product_id));
    }
    Ok(Json(store::history(&state.pool, product_id, page).await?))
}

/// `product_created`: create the product's stock record, exactly once.
pub async fn on_product_created(pool: &PgPool, event: ProductCreated) -> Result<(), HandlerError> {
    if !is_product_id(&event.product_id) {
        return Err(HandlerError::Reject(anyhow::anyhow!("{:?} is not a product id", event.product_id)));
    }
    let Ok(initial_quantity) =
        i32::try_from(event.quantity).map_err(drop).and_then(|quantity| if quantity >= 0 { Ok(quantity) } else { Err(()) })
    else {
        return Err(HandlerError::Reject(anyhow::anyhow!("{} is not a valid initial quantity", event.quantity)));
    };
    if store::create_for_new_product(pool, &event.product_id, initial_quantity).await? {
        tracing::info!(product_id = %event.product_id, initial_quantity, "created stock record");
    } else {
        tracing::info!(product_id = %event.product_id, "stock record exists already; event ignored");
    }
    Ok(())
}

/// `product_deleted`: retire the product's stock record.
pub async fn on_product_deleted(pool: &PgPool, event: ProductDeleted) -> Result<(), HandlerError> {
    if !is_product_id(&event.product_id) {
        return Err(HandlerError::Reject(anyhow::anyhow!("{:?} is not a product id", event.product_id)));
    }
    let outcome = store::discontinue(pool, &event.product_id).await?;
    match outcome {
        Discontinued::Retired => tracing::info!(product_id = %event.product_id, "retired stock record"),
        Discontinued::RecordedBeforeCreation => {
            tracing::info!(product_id = %event.product_id, "product deleted before its stock record existed; recorded")
        }
        Discontinued::AlreadyDiscontinued => {
            tracing::info!(product_id = %event.product_id, "stock record retired already; event ignored")
        }
    }
    Ok(())
}
