//! The orders resource: `POST/GET /api/v1/orders/`, `GET/DELETE /api/v1/orders/{id}`,
//! `PUT /api/v1/orders/{id}/status`. Every endpoint needs an access token, and a customer only
//! ever sees and changes their own orders (another customer's order is a 404).
//!
//! Handlers never publish to the broker: an event is stored in the order's outbox by the same
//! write as the change it announces, and the outbox relay (woken here) publishes it.

pub mod model;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bson::oid::ObjectId;
use common::ApiError;
use common::ApiResult;
use common::auth::{CurrentUser, StaffPolicy, TokenVerifier};
use common::error::FieldError;
use common::extract::{Json, Path, Query};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::catalog::{CatalogClient, CatalogEntry};
use crate::metrics::CancelledBecause;
use model::{
    CreateOrderRequest, IdempotencyKey, ListOrdersQuery, MAXIMUM_ITEMS, MAXIMUM_LIMIT, OrderDocument, OrderResponse, OrderStatus,
    StatusUpdateRequest, StoredOrderItem,
};
use store::{Insertion, OrderStore, StatusChange};

/// The most units of one product a single order line may ask for; far above any real order,
/// low enough that no total can overflow.
pub const MAXIMUM_QUANTITY: i64 = 1_000_000;

/// How many times a status change is re-evaluated when another change got there first.
const STATUS_CHANGE_ATTEMPTS: usize = 3;

/// What the order handlers share; their extractors take what they need from it (`FromRef`,
/// derived for every field).
#[derive(Clone, FromRef)]
pub struct OrdersState {
    pub store: OrderStore,
    pub catalog: CatalogClient,
    /// Verifies the caller's access token against the user service's JWKS.
    pub verifier: Arc<TokenVerifier>,
    /// Who may ship, deliver and refund (see `common::auth::StaffPolicy`).
    pub staff_policy: StaffPolicy,
    /// Orders placed, cancelled on request and refunded.
    pub metrics: crate::metrics::OrderMetrics,
}

pub fn router(state: OrdersState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_order, list_orders))
        .routes(routes!(get_order, cancel_order))
        .routes(routes!(update_order_status))
        // The gateway also forwards `/api/v1/orders` without the trailing slash; answer it the
        // same way instead of with a 404 or a redirect that would drop a POST body.
        .route("/api/v1/orders", axum::routing::get(list_orders).post(create_order))
        .with_state(state)
}

/// Places an order. Answers at once with `pending`; inventory and payment follow asynchronously.
#[utoipa::path(
    post,
    path = "/api/v1/orders/",
    tag = "orders",
    request_body = CreateOrderRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, max_length = 255,
         description = "Makes retries safe: the same key from the same customer with the same body places one order, and every retry answers 201 with it (as it is now, with `Idempotent-Replayed: true`); the same key with another body is a 422. Keys are kept as long as their order, so at least 24 hours. 1 to 255 visible ASCII characters, bare or as a quoted string."),
    ),
    security(("bearer" = []), ("oauth2" = [])),
    responses(
        (status = 201, description = "Order accepted, pending; or, for a retried `Idempotency-Key`, the order its first try placed", body = OrderResponse,
         headers(("Idempotent-Replayed" = String, description = "`true` when the answer is the order an earlier request with the same key placed"))),
        (status = 400, description = "A product does not exist or its price differs from the catalog; or a malformed `Idempotency-Key`", body = common::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = common::error::ErrorBody),
        (status = 403, description = "user_id is not the caller", body = common::error::ErrorBody),
        (status = 422, description = "Invalid body: no items, a quantity not above zero, a malformed price, a total beyond 90,071,992,547,409.91; or an `Idempotency-Key` already used for another request", body = common::error::ErrorBody),
        (status = 503, description = "The product service is unavailable", body = common::error::ErrorBody),
    )
)]
async fn create_order(
    State(state): State<OrdersState>,
    caller: CurrentUser,
    headers: HeaderMap,
    Json(mut request): Json<CreateOrderRequest>,
) -> ApiResult<Response> {
    if request.user_id != caller.id.to_string() {
        return Err(ApiError::Forbidden("You can only place orders for yourself".into()));
    }
    let idempotency_key = match headers.get(IdempotencyKey::HEADER) {
        None => None,
        Some(value) => Some(IdempotencyKey::parse(value.as_bytes()).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Idempotency-Key must be 1 to {} visible ASCII characters, bare or in double quotes",
                IdempotencyKey::MAXIMUM_LENGTH
            ))
        })?),
    };
    validate_request(&mut request)?;
    // A retry: the order its first try placed, whatever the catalog says now.
    if let Some(key) = &idempotency_key
        && let Some(placed) = state.store.find_by_idempotency_key(&key.scoped(&request.user_id)).await?
    {
        return replay(placed, &request);
    }
    let product_ids: Vec<String> = request.items.iter().map(|item| item.product_id.clone()).collect();
    let catalog = state
        .catalog
        .look_up_all(&product_ids)
        .await
        .map_err(|error| ApiError::unavailable("The product catalog is unavailable; try again shortly", error))?;
    let items = priced_items(&request, &catalog)?;
    let order =
        OrderDocument::new_pending(request.user_id.clone(), items, request.shipping_address.clone(), idempotency_key.as_ref())
            .ok_or_else(|| {
                ApiError::Unprocessable(format!(
                    "The order's total would exceed {}, the most an order may cost",
                    common::money::Cents(common::money::MAXIMUM_EXACT_CENTS)
                ))
            })?;
    if state.store.insert(&order).await? == Insertion::KeyTaken {
        // A try with the same key got there first, concurrently: answer with its order.
        let key = order.idempotency_key.as_deref().unwrap_or_default();
        let placed = state.store.find_by_idempotency_key(key).await?.ok_or_else(|| {
            ApiError::Conflict("Another request with this Idempotency-Key is being handled; please try again".into())
        })?;
        return replay(placed, &request);
    }
    state.metrics.placed();
    tracing::info!(order_id = %order.id, correlation_id = %order.id, user_id = %order.user_id, total_cents = order.total_price_cents, "order placed");
    Ok((StatusCode::CREATED, Json(OrderResponse::from(order))).into_response())
}

/// The answer to a retried `Idempotency-Key`: the order its first try placed, as it is now, if
/// the retry asks for the same order.
fn replay(placed: OrderDocument, request: &CreateOrderRequest) -> ApiResult<Response> {
    if !placed.is_placed_by(request) {
        return Err(ApiError::Unprocessable(
            "This Idempotency-Key was already used for a different order; send a new key for a new order".into(),
        ));
    }
    tracing::info!(order_id = %placed.id, correlation_id = %placed.id, "order request retried with its idempotency key; answering with the order placed");
    Ok((StatusCode::CREATED, [(REPLAYED_HEADER, "true")], Json(OrderResponse::from(placed))).into_response())
}

/// Says that a `POST /api/v1/orders/` answer is the order of an earlier try with the same key.
const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Lists the caller's orders, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/orders/",
    tag = "orders",
    params(ListOrdersQuery),
    security(("bearer" = []), ("oauth2" = [])),
    responses(
        (status = 200, description = "The caller's orders, newest first", body = [OrderResponse]),
        (status = 401, description = "Missing or invalid token", body = common::error::ErrorBody),
        (status = 422, description = "Invalid skip, limit or status", body = common::error::ErrorBody),
    )
)]
async fn list_orders(
    State(state): State<OrdersState>,
    caller: CurrentUser,
    Query(query): Query<ListOrdersQuery>,
) -> ApiResult<Json<Vec<OrderResponse>>> {
    let mut errors = Vec::new();
    if query.skip > common::limits::MAXIMUM_SKIP {
        errors.push(FieldError::new("query", "skip", format!("skip must be at most {}", common::limits::MAXIMUM_SKIP)));
    }
    if !(1..=MAXIMUM_LIMIT).contains(&query.limit) {
        errors.push(FieldError::new("query", "limit", format!("limit must be between 1 and {MAXIMUM_LIMIT}")));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let orders = state.store.list_for_user(&caller.id.to_string(), query.status, query.skip, query.limit).await?;
    Ok(Json(orders.into_iter().map(OrderResponse::from).collect()))
}

/// One of the caller's orders.
#[utoipa::path(
    get,
    path = "/api/v1/orders/{order_id}",
    tag = "orders",
    params(("order_id" = String, Path, description = "The order's id")),
    security(("bearer" = []), ("oauth2" = [])),
    responses(
        (status = 200, description = "The order", body = OrderResponse),
        (status = 401, description = "Missing or invalid token", body = common::error::ErrorBody),
        (status = 404, description = "No such order among the caller's orders", body = common::error::ErrorBody),
    )
)]
async fn get_order(
    State(state): State<OrdersState>,
    caller: CurrentUser,
    Path(order_id): Path<String>,
) -> ApiResult<Json<OrderResponse>> {
    let order_id = parse_order_id(&order_id)?;
    let order = state.store.find(order_id, owner_scope(&caller).as_deref()).await?.ok_or_else(|| ApiError::not_found("Order"))?;
    Ok(Json(order.into()))
}

/// Moves an order along the status machine. A customer may cancel their own order; shipped,
/// delivered and refunded are staff work (`REQUIRE_STAFF_ROLE`; open to the order's owner when
/// it is off). Staff may change any customer's order; the payment states only events reach.
#[utoipa::path(
    put,
    path = "/api/v1/orders/{order_id}/status",
    tag = "orders",
    params(("order_id" = String, Path, description = "The order's id")),
    request_body = StatusUpdateRequest,
    security(("bearer" = []), ("oauth2" = [])),
    responses(
        (status = 200, description = "The order with its new status", body = OrderResponse),
        (status = 400, description = "The transition is not allowed; the detail names the allowed ones", body = common::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = common::error::ErrorBody),
        (status = 403, description = "Shipped, delivered and refunded need the staff role (`REQUIRE_STAFF_ROLE`)", body = common::error::ErrorBody),
        (status = 404, description = "No such order among the caller's orders", body = common::error::ErrorBody),
        (status = 422, description = "Unknown status value", body = common::error::ErrorBody),
    )
)]
async fn update_order_status(
    State(state): State<OrdersState>,
    caller: CurrentUser,
    Path(order_id): Path<String>,
    Json(request): Json<StatusUpdateRequest>,
) -> ApiResult<Json<OrderResponse>> {
    let order_id = parse_order_id(&order_id)?;
    may_request(request.status, state.staff_policy, &caller.claims)?;
    let order = change_status(&state, order_id, &caller, request.status, |current, next| {
        format!(
            "Cannot change order status from {current} to {next}. Allowed transitions from {current}: {}",
            current.describe_allowed_transitions()
        )
    })
    .await?;
    Ok(Json(order.into()))
}

/// Cancels one of the caller's orders and releases its stock.
#[utoipa::path(
    delete,
    path = "/api/v1/orders/{order_id}",
    tag = "orders",
    params(("order_id" = String, Path, description = "The order's id")),
    security(("bearer" = []), ("oauth2" = [])),
    responses(
        (status = 204, description = "Cancelled; its stock is released asynchronously"),
        (status = 400, description = "The order is shipped, delivered, cancelled or refunded", body = common::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = common::error::ErrorBody),
        (status = 404, description = "No such order among the caller's orders", body = common::error::ErrorBody),
    )
)]
async fn cancel_order(
    State(state): State<OrdersState>,
    caller: CurrentUser,
    Path(order_id): Path<String>,
) -> ApiResult<StatusCode> {
    let order_id = parse_order_id(&order_id)?;
    change_status(&state, order_id, &caller, OrderStatus::Cancelled, |current, _| {
        format!("Order cannot be cancelled: it is {current}")
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether the caller may ask for `next` at all: cancelling is a customer's to decide; shipping,
/// delivering and refunding are staff work, open to any signed-in caller only under the
/// development policy (`REQUIRE_STAFF_ROLE=false`). A 403 otherwise.
fn may_request(next: OrderStatus, policy: StaffPolicy, claims: &common::auth::Claims) -> ApiResult<()> {
    if !next.is_customers_to_request() && !policy.admits(claims) {
        return Err(StaffPolicy::refusal(&format!("Moving an order to {next}")));
    }
    Ok(())
}

/// Whose orders the caller may see and change: staff any order, everyone else their own.
fn owner_scope(caller: &CurrentUser) -> Option<String> {
    (!caller.claims.is_staff()).then(|| caller.id.to_string())
}

/// Applies a requested status change as a conditional update on the status just read. If a
/// consumer moved the order in between, the change is judged again against the new status.
async fn change_status(
    state: &OrdersState,
    order_id: ObjectId,
    caller: &CurrentUser,
    next: OrderStatus,
    refusal: impl Fn(OrderStatus, OrderStatus) -> String,
) -> ApiResult<OrderDocument> {
    let owner = owner_scope(caller);
    let user_id = owner.as_deref();
    for _ in 0..STATUS_CHANGE_ATTEMPTS {
        let order = state.store.find(order_id, user_id).await?.ok_or_else(|| ApiError::not_found("Order"))?;
        if !order.status.can_become(next) || !next.can_be_requested() {
            return Err(ApiError::BadRequest(refusal(order.status, next)));
        }
        match state.store.change_status(order_id, user_id, order.status, next, None).await? {
            StatusChange::Changed(changed) => {
                match next {
                    OrderStatus::Cancelled if order.user_id == caller.id.to_string() => {
                        state.metrics.cancelled(CancelledBecause::Customer)
                    }
                    OrderStatus::Cancelled => state.metrics.cancelled(CancelledBecause::Staff),
                    OrderStatus::Refunded => state.metrics.refunded(),
                    _ => {}
                }
                tracing::info!(order_id = %order_id, correlation_id = %order_id, by = caller.id, staff = caller.claims.is_staff(), from = %order.status, to = %next, "order status changed on request");
                return Ok(*changed);
            }
            StatusChange::StatusMovedOn => continue,
            StatusChange::NotFound => return Err(ApiError::not_found("Order")),
        }
    }
    Err(ApiError::Conflict("The order changed while we were updating it; please try again".into()))
}

/// A path segment that is not an ObjectId cannot name an order: 404, like any unknown id.
fn parse_order_id(text: &str) -> ApiResult<ObjectId> {
    ObjectId::parse_str(text).map_err(|_| ApiError::not_found("Order"))
}

/// The checks that need no other service: at least one item, quantities above zero, each
/// product once (one line per product keeps inventory's all-or-none reservation simple), and a
/// shipping address with the parts a parcel cannot do without (`line2` and `state` may be empty).
/// Checks the request's shape and limits, and normalises what it names: product ids are stored
/// in lower case, the catalog's form, whatever case they were sent in.
fn validate_request(request: &mut CreateOrderRequest) -> ApiResult<()> {
    use common::limits::{MAXIMUM_ADDRESS_FIELD_LENGTH, MAXIMUM_ADDRESS_LINE_LENGTH, MAXIMUM_POSTAL_CODE_LENGTH};
    let mut errors = Vec::new();
    let address = &request.shipping_address;
    let address_error = |field: &str, msg: String| FieldError {
        loc: vec!["body".into(), "shipping_address".into(), field.into()],
        msg,
        kind: "value_error".into(),
    };
    for (field, value, required, maximum) in [
        ("line1", address.line1.as_str(), true, MAXIMUM_ADDRESS_LINE_LENGTH),
        ("line2", address.line2.as_deref().unwrap_or_default(), false, MAXIMUM_ADDRESS_LINE_LENGTH),
        ("city", address.city.as_str(), true, MAXIMUM_ADDRESS_FIELD_LENGTH),
        ("state", address.state.as_str(), false, MAXIMUM_ADDRESS_FIELD_LENGTH),
        ("postal_code", address.postal_code.as_str(), true, MAXIMUM_POSTAL_CODE_LENGTH),
        ("country", address.country.as_str(), true, MAXIMUM_ADDRESS_FIELD_LENGTH),
    ] {
        if required && value.trim().is_empty() {
            errors.push(address_error(field, format!("{field} must not be empty")));
        } else if value.chars().count() > maximum {
            errors.push(address_error(field, format!("{field} must have at most {maximum} characters")));
        } else if value.chars().any(char::is_control) {
            // NUL, line breaks, terminal escapes: a label printer, a log line or a terminal
            // would take them for something else.
            errors.push(address_error(field, format!("{field} must not contain control characters")));
        }
    }
    if request.items.is_empty() {
        errors.push(FieldError::new("body", "items", "An order needs at least one item"));
    } else if request.items.len() > MAXIMUM_ITEMS {
        errors.push(FieldError::new("body", "items", format!("An order has at most {MAXIMUM_ITEMS} items")));
    }
    for item in &mut request.items {
        item.product_id.make_ascii_lowercase();
    }
    let mut seen = std::collections::HashSet::new();
    for (index, item) in request.items.iter().enumerate() {
        let location = |field: &str| FieldError {
            loc: vec!["body".into(), "items".into(), index.to_string(), field.into()],
            msg: String::new(),
            kind: "value_error".into(),
        };
        if ObjectId::parse_str(&item.product_id).is_err() {
            errors.push(FieldError { msg: "product_id must be 24 hexadecimal digits".into(), ..location("product_id") });
        }
        if item.quantity <= 0 {
            errors.push(FieldError { msg: "Quantity must be greater than 0".into(), ..location("quantity") });
        } else if item.quantity > MAXIMUM_QUANTITY {
            errors.push(FieldError { msg: format!("Quantity must be at most {MAXIMUM_QUANTITY}"), ..location("quantity") });
        }
        if !seen.insert(item.product_id.as_str()) {
            errors.push(FieldError {
                msg: "Each product may appear only once; combine the quantities".into(),
                ..location("product_id")
            });
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(ApiError::Validation(errors)) }
}

/// Checks every item against the catalog: the product must exist and the price the customer
/// sent must be the catalog price to the cent.
fn priced_items(request: &CreateOrderRequest, catalog: &HashMap<String, CatalogEntry>) -> ApiResult<Vec<StoredOrderItem>> {
    let mut problems = Vec::new();
    let mut items = Vec::with_capacity(request.items.len());
    for item in &request.items {
        match catalog.get(&item.product_id) {
            Some(CatalogEntry::Found { price }) if *price == item.price => {
                items.push(StoredOrderItem {
                    product_id: item.product_id.clone(),
                    quantity: item.quantity,
                    price_cents: price.0,
                });
            }
            Some(CatalogEntry::Found { price }) => {
                problems.push(format!("Price of product {} is {price}, not {}", item.product_id, item.price));
            }
            Some(CatalogEntry::Missing) | None => problems.push(format!("Product {} not found", item.product_id)),
        }
    }
    if problems.is_empty() { Ok(items) } else { Err(ApiError::BadRequest(problems.join("; "))) }
}

#[cfg(test)]
mod tests {
    use common::money::Cents;

    use super::model::{OrderItemRequest, ShippingAddress};
    use super::*;

    fn request(items: Vec<(&str, i64, i64)>) -> CreateOrderRequest {
        CreateOrderRequest {
            user_id: "1".into(),
            items: items
                .into_iter()
                .map(|(product_id, quantity, cents)| OrderItemRequest {
                    product_id: product_id.into(),
                    quantity,
                    price: Cents(cents),
                })
                .collect(),
            shipping_address: ShippingAddress {
                line1: "1 Street".into(),
                line2: None,
                city: "City".into(),
                state: "ST".into(),
                postal_code: "1".into(),
                country: "Country".into(),
            },
        }
    }

    fn status_and_detail(error: ApiError) -> (StatusCode, String) {
        (error.status(), format!("{error:?}"))
    }

    const A: &str = "6824f1c1a1b2c3d4e5f6071a";
    const B: &str = "6824f1c1a1b2c3d4e5f6071b";

    #[test]
    fn an_order_without_items_or_with_a_zero_quantity_is_a_422() {
        let (status, _) = status_and_detail(validate_request(&mut request(vec![])).unwrap_err());
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, detail) = status_and_detail(validate_request(&mut request(vec![(A, 0, 100)])).unwrap_err());
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(detail.contains("greater than 0"), "{detail}");
        assert!(validate_request(&mut request(vec![(A, 1, 100), (B, 3, 100)])).is_ok());
    }

    #[test]
    fn a_shipping_address_without_a_city_is_a_422() {
        let mut without_city = request(vec![(A, 1, 100)]);
        without_city.shipping_address.city = "  ".into();
        let (status, detail) = status_and_detail(validate_request(&mut without_city).unwrap_err());
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(detail.contains("city must not be empty"), "{detail}");
    }

    #[test]
    fn control_characters_in_a_shipping_address_are_a_422() {
        for (field, text) in [
            ("line1", "1 Street\u{0}"),
            ("line2", "Flat 2\r\nX-Injected: yes"),
            ("city", "\u{1b}[31mCity"),
            ("country", "Tab\there"),
        ] {
            let mut order = request(vec![(A, 1, 100)]);
            let address = &mut order.shipping_address;
            match field {
                "line1" => address.line1 = text.into(),
                "line2" => address.line2 = Some(text.into()),
                "city" => address.city = text.into(),
                _ => address.country = text.into(),
            }
            let (status, detail) = status_and_detail(validate_request(&mut order).unwrap_err());
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}");
            assert!(detail.contains(&format!("{field} must not contain control characters")), "{detail}");
        }
    }

    #[test]
    fn the_same_product_twice_is_a_422_whatever_the_case_of_its_id() {
        let upper = A.to_ascii_uppercase();
        let (status, detail) =
            status_and_detail(validate_request(&mut request(vec![(A, 1, 100), (&upper, 2, 100)])).unwrap_err());
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(detail.contains("only once"), "{detail}");
    }

    #[test]
    fn product_ids_are_stored_in_lower_case_and_anything_but_an_id_is_a_422() {
        let mut upper = request(vec![(&A.to_ascii_uppercase(), 1, 100)]);
        validate_request(&mut upper).unwrap();
        assert_eq!(upper.items[0].product_id, A);
        let (status, detail) = status_and_detail(validate_request(&mut request(vec![("a", 1, 100)])).unwrap_err());
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(detail.contains("24 hexadecimal digits"), "{detail}");
    }

    #[test]
    fn every_address_field_and_the_number_of_lines_have_limits() {
        use common::limits::{MAXIMUM_ADDRESS_FIELD_LENGTH, MAXIMUM_ADDRESS_LINE_LENGTH, MAXIMUM_POSTAL_CODE_LENGTH};
        type Set = fn(&mut ShippingAddress, String);
        let fields: [(&str, usize, Set); 6] = [
            ("line1", MAXIMUM_ADDRESS_LINE_LENGTH, |address, text| address.line1 = text),
            ("line2", MAXIMUM_ADDRESS_LINE_LENGTH, |address, text| address.line2 = Some(text)),
            ("city", MAXIMUM_ADDRESS_FIELD_LENGTH, |address, text| address.city = text),
            ("state", MAXIMUM_ADDRESS_FIELD_LENGTH, |address, text| address.state = text),
            ("postal_code", MAXIMUM_POSTAL_CODE_LENGTH, |address, text| address.postal_code = text),
            ("country", MAXIMUM_ADDRESS_FIELD_LENGTH, |address, text| address.country = text),
        ];
        for (field, maximum, set) in fields {
            let mut longest = request(vec![(A, 1, 100)]);
            set(&mut longest.shipping_address, "é".repeat(maximum));
            assert!(validate_request(&mut longest).is_ok(), "{field} of {maximum} characters is allowed");
            let mut too_long = request(vec![(A, 1, 100)]);
            set(&mut too_long.shipping_address, "é".repeat(maximum + 1));
            let (status, detail) = status_and_detail(validate_request(&mut too_long).unwrap_err());
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
            assert!(detail.contains(&format!("{field} must have at most {maximum} characters")), "{detail}");
        }
        let ids: Vec<String> = (0..=MAXIMUM_ITEMS).map(|number| format!("{number:024x}")).collect();
        let mut most = request(ids[..MAXIMUM_ITEMS].iter().map(|id| (id.as_str(), 1, 100)).collect());
        assert!(validate_request(&mut most).is_ok());
        let mut too_many = request(ids.iter().map(|id| (id.as_str(), 1, 100)).collect());
        let (status, detail) = status_and_detail(validate_request(&mut too_many).unwrap_err());
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(detail.contains("at most 100 items"), "{detail}");
    }

    #[test]
    fn a_quantity_of_up_to_a_million_is_allowed_and_more_is_a_422_that_says_so() {
        assert!(validate_request(&mut request(vec![(A, MAXIMUM_QUANTITY, 100)])).is_ok());
        let (status, detail) =
            status_and_detail(validate_request(&mut request(vec![(A, MAXIMUM_QUANTITY + 1, 100)])).unwrap_err());
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(detail.contains("Quantity must be at most 1000000"), "{detail}");
    }

    #[test]
    fn only_cancelling_is_a_customer_s_to_ask_for_when_the_staff_role_is_required() {
        let claims = |roles: &[&str]| common::auth::Claims {
            sub: "7".into(),
            kind: common::auth::TokenKind::Access,
            iss: common::auth::ISSUER.into(),
            iat: 0,
            exp: 0,
            jti: "j".into(),
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
        };
        let (customer, staff) = (claims(&[]), claims(&["staff"]));
        let strict = StaffPolicy { require_staff_role: true };
        assert!(may_request(OrderStatus::Cancelled, strict, &customer).is_ok());
        for next in [OrderStatus::Shipped, OrderStatus::Delivered, OrderStatus::Refunded] {
            let (status, detail) = status_and_detail(may_request(next, strict, &customer).unwrap_err());
            assert_eq!(status, StatusCode::FORBIDDEN, "{next}");
            assert!(detail.contains(&format!("Moving an order to {next} is reserved to staff")), "{detail}");
            assert!(may_request(next, strict, &staff).is_ok(), "{next}");
            assert!(may_request(next, StaffPolicy::default(), &customer).is_ok(), "{next} under the development policy");
        }
    }

    #[test]
    fn a_price_that_differs_from_the_catalog_by_a_cent_is_a_400() {
        let catalog = HashMap::from([("a".to_owned(), CatalogEntry::Found { price: Cents(89999) })]);
        let error = priced_items(&request(vec![("a", 1, 89998)]), &catalog).unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error.to_string(), "Price of product a is 899.99, not 899.98");
        let items = priced_items(&request(vec![("a", 2, 89999)]), &catalog).unwrap();
        assert_eq!(items, vec![StoredOrderItem { product_id: "a".into(), quantity: 2, price_cents: 89999 }]);
    }

    #[test]
    fn an_unknown_product_is_a_400_that_names_it() {
        let catalog = HashMap::from([("a".to_owned(), CatalogEntry::Missing)]);
        let error = priced_items(&request(vec![("a", 1, 100)]), &catalog).unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error.to_string(), "Product a not found");
    }
}
