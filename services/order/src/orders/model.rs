//! What an order is: its status machine, the document stored in MongoDB, and the JSON shapes the
//! API accepts and answers. Nothing here talks to a database or a broker.

use bson::oid::ObjectId;
use chrono::{DateTime, SubsecRound, Utc};
use common::messaging::OutboxMessage;
use common::messaging::events::{OrderCreated, OrderLine};
use common::money::Cents;
use serde::{Deserialize, Serialize};

/// The life of an order. Every change is a conditional update on the status it starts from, so
/// two changes racing each other (a customer's cancel against an inventory event) never both win.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Processing,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
    Refunded,
}

impl OrderStatus {
    /// The statuses an order may move to from this one, in flow order.
    pub fn allowed_transitions(self) -> &'static [OrderStatus] {
        use OrderStatus::*;
        match self {
            Pending => &[Processing, Cancelled],
            Processing => &[Paid, Cancelled],
            Paid => &[Shipped, Cancelled, Refunded],
            Shipped => &[Delivered, Refunded],
            Delivered => &[Refunded],
            Cancelled | Refunded => &[],
        }
    }

    pub fn can_become(self, next: OrderStatus) -> bool {
        self.allowed_transitions().contains(&next)
    }

    /// Whether the order still holds (or may soon hold) reserved stock that leaving this status
    /// for `next` must give back. A cancel always releases: inventory releases whatever the order
    /// holds and ignores a release for an order that holds nothing. A refund releases only from
    /// `paid`, when the goods never left the warehouse; a refund after shipping is a refund of
    /// money for goods the customer already has, so the stock stays as it is.
    pub fn releases_stock_when_becoming(self, next: OrderStatus) -> bool {
        match next {
            OrderStatus::Cancelled => true,
            OrderStatus::Refunded => self == OrderStatus::Paid,
            _ => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        use OrderStatus::*;
        match self {
            Pending => "pending",
            Processing => "processing",
            Paid => "paid",
            Shipped => "shipped",
            Delivered => "delivered",
            Cancelled => "cancelled",
            Refunded => "refunded",
        }
    }

    /// Whether a request (`PUT /orders/{id}/status`, `DELETE /orders/{id}`) may move an order to
    /// this status. The payment states are reached only through the payment flow's events
    /// (`inventory_reserved`, then `order_processed`): a request that could set them would skip
    /// the stock check and pay for nothing.
    pub fn can_be_requested(self) -> bool {
        !matches!(self, OrderStatus::Processing | OrderStatus::Paid)
    }

    /// Whether moving an order to this status is the customer's own decision: cancelling. The
    /// other requestable statuses (shipped, delivered, refunded) are fulfilment and support,
    /// staff work under `common::auth::StaffPolicy`.
    pub fn is_customers_to_request(self) -> bool {
        self == OrderStatus::Cancelled
    }

    /// The statuses a request may move an order to from this one, for error messages:
    /// "shipped, cancelled, refunded", or "none" for a final status.
    pub fn describe_allowed_transitions(self) -> String {
        let allowed: Vec<&str> =
            self.allowed_transitions().iter().filter(|status| status.can_be_requested()).map(|status| status.as_str()).collect();
        if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") }
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The current time at the precision BSON stores (milliseconds), so that the timestamps in the
/// answer to `POST` and in every later `GET` are the same.
pub fn storable_now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// An order as stored in the `orders` collection. Money is kept as integer cents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderDocument {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub user_id: String,
    pub items: Vec<StoredOrderItem>,
    pub total_price_cents: i64,
    pub status: OrderStatus,
    pub shipping_address: ShippingAddress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_reason: Option<String>,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub updated_at: DateTime<Utc>,
    /// Events about this order not yet confirmed by the broker. They live inside the order's own
    /// document so that the order and its event are written by one single-document operation,
    /// which is atomic on every MongoDB deployment (no transaction, no replica set needed).
    #[serde(default)]
    pub outbox: Vec<OutboxMessage>,
    /// The `Idempotency-Key` the order was placed with, scoped to its customer
    /// ([`IdempotencyKey::scoped`]); absent for an order placed without one. Unique among the
    /// orders that have one, so that a retried request finds the order its first try placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// The `Idempotency-Key` request header of `POST /api/v1/orders/` (the IETF httpapi draft's):
/// 1 to [`IdempotencyKey::MAXIMUM_LENGTH`] visible ASCII characters, sent bare or as a quoted
/// structured-field string (`"8e03978e-..."`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const HEADER: &'static str = "idempotency-key";
    pub const MAXIMUM_LENGTH: usize = 255;

    /// The key in a header value; `None` for a value that is not one.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let unquoted = match value {
            [b'"', inner @ .., b'"'] => inner,
            bare => bare,
        };
        let acceptable = (1..=Self::MAXIMUM_LENGTH).contains(&unquoted.len())
            && unquoted.iter().all(|byte| byte.is_ascii_graphic() && *byte != b'"' && *byte != b'\\');
        acceptable.then(|| Self(String::from_utf8_lossy(unquoted).into_owned()))
    }

    /// The key as stored: the same key from two customers is two keys.
    pub fn scoped(&self, user_id: &str) -> String {
        format!("{user_id}:{}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredOrderItem {
    pub product_id: String,
    pub quantity: i64,
    pub price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShippingAddress {
    #[schema(min_length = 1, max_length = 200)]
    pub line1: String,
    /// Optional, as in the guide's load-test script; answered as `null` when absent.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub line2: Option<String>,
    #[schema(min_length = 1, max_length = 100)]
    pub city: String,
    #[schema(max_length = 100)]
    pub state: String,
    #[schema(min_length = 1, max_length = 20)]
    pub postal_code: String,
    #[schema(min_length = 1, max_length = 100)]
    pub country: String,
}

impl OrderDocument {
    /// A new pending order whose `OrderCreated` event waits in its outbox; `None` when its total
    /// would exceed what is answered to the cent (`common::money::MAXIMUM_EXACT_CENTS`).
    pub fn new_pending(
        user_id: String,
        items: Vec<StoredOrderItem>,
        shipping_address: ShippingAddress,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Option<Self> {
        let id = ObjectId::new();
        let now = storable_now();
        let lines = items.iter().map(|item| Cents(item.price_cents).checked_times(item.quantity));
        let total_price_cents = Cents::checked_sum(lines.collect::<Option<Vec<Cents>>>()?)?.0;
        let event = OrderCreated {
            order_id: id.to_hex(),
            user_id: user_id.clone(),
            items: items.iter().map(|item| OrderLine { product_id: item.product_id.clone(), quantity: item.quantity }).collect(),
        };
        Some(Self {
            id,
            items,
            total_price_cents,
            status: OrderStatus::Pending,
            shipping_address,
            cancellation_reason: None,
            created_at: now,
            updated_at: now,
            outbox: vec![OutboxMessage::new(&event)],
            idempotency_key: idempotency_key.map(|key| key.scoped(&user_id)),
            user_id,
        })
    }

    /// Whether this order is what `request` (validated, its product ids normalised) asks for:
    /// the same customer, lines (product, quantity and price, in order) and address. A retry
    /// with an `Idempotency-Key` must be the same request as the try that placed the order.
    pub fn is_placed_by(&self, request: &CreateOrderRequest) -> bool {
        self.user_id == request.user_id
            && self.shipping_address == request.shipping_address
            && self.items.len() == request.items.len()
            && self.items.iter().zip(&request.items).all(|(stored, asked)| {
                stored.product_id == asked.product_id && stored.quantity == asked.quantity && stored.price_cents == asked.price.0
            })
    }
}

/// `POST /api/v1/orders/` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct CreateOrderRequest {
    /// The caller's own id, as a string (`"1"`).
    pub user_id: String,
    /// 1 to 100 lines, each product at most once.
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<OrderItemRequest>,
    pub shipping_address: ShippingAddress,
}

/// The most lines one order may have.
pub const MAXIMUM_ITEMS: usize = 100;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct OrderItemRequest {
    /// The product's id: 24 hexadecimal digits, in either case (stored in lower case).
    #[schema(pattern = "^[0-9a-fA-F]{24}$", example = "6824f1c1a1b2c3d4e5f60718")]
    pub product_id: String,
    pub quantity: i64,
    /// The price the customer saw; it must equal the catalog price to the cent.
    #[schema(value_type = f64, example = 899.99)]
    pub price: Cents,
}

/// `PUT /api/v1/orders/{id}/status` body. An unknown status value does not deserialize: 422.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct StatusUpdateRequest {
    pub status: OrderStatus,
}

/// `GET /api/v1/orders/` query.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListOrdersQuery {
    /// How many orders to leave out (for paging).
    #[serde(default)]
    #[param(maximum = 9223372036854775807_u64)]
    pub skip: u64,
    /// 1 to 100; 100 when absent.
    #[serde(default = "default_limit")]
    pub limit: i64,
    pub status: Option<OrderStatus>,
}

pub const MAXIMUM_LIMIT: i64 = 100;

fn default_limit() -> i64 {
    MAXIMUM_LIMIT
}

/// An order as the API answers it, in the guide's field order. The outbox is never shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderResponse {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub items: Vec<OrderItemResponse>,
    #[schema(value_type = f64, example = 609.97)]
    pub total_price: Cents,
    pub status: OrderStatus,
    pub shipping_address: ShippingAddress,
    #[serde(with = "common::timestamp")]
    #[schema(value_type = String, example = "2025-05-15T11:50:00.123000+00:00")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "common::timestamp")]
    #[schema(value_type = String, example = "2025-05-15T11:50:00.123000+00:00")]
    pub updated_at: DateTime<Utc>,
    /// Present only on an order that inventory could not serve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancellation_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderItemResponse {
    pub product_id: String,
    pub quantity: i64,
    #[schema(value_type = f64, example = 899.99)]
    pub price: Cents,
}

impl From<OrderDocument> for OrderResponse {
    fn from(order: OrderDocument) -> Self {
        Self {
            id: order.id.to_hex(),
            user_id: order.user_id,
            items: order
                .items
                .into_iter()
                .map(|item| OrderItemResponse {
                    product_id: item.product_id,
                    quantity: item.quantity,
                    price: Cents(item.price_cents),
                })
                .collect(),
            total_price: Cents(order.total_price_cents),
            status: order.status,
            shipping_address: order.shipping_address,
            created_at: order.created_at,
            updated_at: order.updated_at,
            cancellation_reason: order.cancellation_reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> ShippingAddress {
        ShippingAddress {
            line1: "123 Example Street".into(),
            line2: Some("Apt 4B".into()),
            city: "Example City".into(),
            state: "EX".into(),
            postal_code: "12345".into(),
            country: "Example Country".into(),
        }
    }

    #[test]
    fn the_status_machine_follows_the_decisions() {
        use OrderStatus::*;
        let every_status = [Pending, Processing, Paid, Shipped, Delivered, Cancelled, Refunded];
        let allowed = [
            (Pending, Processing),
            (Processing, Paid),
            (Paid, Shipped),
            (Shipped, Delivered),
            (Pending, Cancelled),
            (Processing, Cancelled),
            (Paid, Cancelled),
            (Paid, Refunded),
            (Shipped, Refunded),
            (Delivered, Refunded),
        ];
        for from in every_status {
            for to in every_status {
                assert_eq!(from.can_become(to), allowed.contains(&(from, to)), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn only_cancels_and_refunds_of_unshipped_orders_release_stock() {
        use OrderStatus::*;
        assert!(Pending.releases_stock_when_becoming(Cancelled));
        assert!(Paid.releases_stock_when_becoming(Cancelled));
        assert!(Paid.releases_stock_when_becoming(Refunded));
        assert!(!Shipped.releases_stock_when_becoming(Refunded));
        assert!(!Delivered.releases_stock_when_becoming(Refunded));
        assert!(!Paid.releases_stock_when_becoming(Shipped));
    }

    #[test]
    fn the_allowed_transitions_are_described_for_error_messages() {
        assert_eq!(OrderStatus::Paid.describe_allowed_transitions(), "shipped, cancelled, refunded");
        assert_eq!(OrderStatus::Cancelled.describe_allowed_transitions(), "none");
        // The payment states are the events' to set, never a request's.
        assert_eq!(OrderStatus::Pending.describe_allowed_transitions(), "cancelled");
        assert_eq!(OrderStatus::Processing.describe_allowed_transitions(), "cancelled");
        assert!(!OrderStatus::Processing.can_be_requested() && !OrderStatus::Paid.can_be_requested());
    }

    #[test]
    fn cancelling_is_the_only_status_a_customer_decides() {
        use OrderStatus::*;
        let customers: Vec<OrderStatus> = [Pending, Processing, Paid, Shipped, Delivered, Cancelled, Refunded]
            .into_iter()
            .filter(|s| s.is_customers_to_request())
            .collect();
        assert_eq!(customers, [Cancelled]);
    }

    #[test]
    fn a_new_order_totals_exactly_and_carries_its_created_event() {
        let items = vec![
            StoredOrderItem { product_id: "a".into(), quantity: 1, price_cents: 24999 },
            StoredOrderItem { product_id: "b".into(), quantity: 2, price_cents: 17999 },
        ];
        let order = OrderDocument::new_pending("1".into(), items, address(), None).expect("a total within bounds");
        assert_eq!(order.total_price_cents, 60997);
        assert_eq!(order.status, OrderStatus::Pending);
        assert_eq!(order.outbox.len(), 1);
        assert_eq!(order.outbox[0].queue, "order_created");
        assert_eq!(order.outbox[0].correlation_id, order.id.to_hex());
        let event: OrderCreated = serde_json::from_str(&order.outbox[0].payload).unwrap();
        assert_eq!(
            event.items,
            vec![OrderLine { product_id: "a".into(), quantity: 1 }, OrderLine { product_id: "b".into(), quantity: 2 }]
        );
    }

    #[test]
    fn the_response_has_the_guides_fields_in_order_and_hides_the_outbox() {
        let items = vec![StoredOrderItem { product_id: "p".into(), quantity: 1, price_cents: 89999 }];
        let order = OrderDocument::new_pending("1".into(), items, address(), None).expect("a total within bounds");
        let json = serde_json::to_string(&OrderResponse::from(order)).unwrap();
        let keys: Vec<&str> = [
            "\"_id\"",
            "\"user_id\"",
            "\"items\"",
            "\"total_price\"",
            "\"status\"",
            "\"shipping_address\"",
            "\"created_at\"",
            "\"updated_at\"",
        ]
        .into_iter()
        .collect();
        let positions: Vec<usize> =
            keys.iter().map(|key| json.find(key).unwrap_or_else(|| panic!("{key} missing in {json}"))).collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{json}");
        assert!(!json.contains("outbox") && !json.contains("cancellation_reason"), "{json}");
        assert!(json.contains("\"total_price\":899.99"), "{json}");
        assert!(json.contains("\"status\":\"pending\""), "{json}");
    }

    #[test]
    fn an_idempotency_key_is_visible_ascii_bare_or_quoted_and_scoped_to_its_customer() {
        let key = IdempotencyKey::parse(b"8e03978e-40d5-43e8").expect("a bare key");
        assert_eq!(IdempotencyKey::parse(b"\"8e03978e-40d5-43e8\""), Some(key.clone()), "a quoted key is the same key");
        assert_eq!(key.scoped("7"), "7:8e03978e-40d5-43e8");
        assert_ne!(key.scoped("7"), key.scoped("8"), "two customers' keys never meet");
        assert_eq!(IdempotencyKey::parse(&[b'k'; IdempotencyKey::MAXIMUM_LENGTH]).map(|key| key.scoped("1").len()), Some(257));
        for refused in [&b""[..], b"\"\"", b"has space", b"tab\there", b"caf\xc3\xa9", b"quote\"inside", &[b'k'; 256]] {
            assert_eq!(IdempotencyKey::parse(refused), None, "{:?}", String::from_utf8_lossy(refused));
        }
    }

    #[test]
    fn a_retry_places_the_same_order_only_with_the_same_lines_and_address() {
        use super::OrderItemRequest;
        let items = vec![StoredOrderItem { product_id: "a".repeat(24), quantity: 2, price_cents: 89_999 }];
        let order = OrderDocument::new_pending("1".into(), items, address(), None).expect("a total within bounds");
        let request = |quantity: i64, cents: i64, user_id: &str, city: &str| CreateOrderRequest {
            user_id: user_id.into(),
            items: vec![OrderItemRequest { product_id: "a".repeat(24), quantity, price: Cents(cents) }],
            shipping_address: ShippingAddress { city: city.into(), ..address() },
        };
        assert!(order.is_placed_by(&request(2, 89_999, "1", "Example City")));
        assert!(!order.is_placed_by(&request(3, 89_999, "1", "Example City")), "another quantity");
        assert!(!order.is_placed_by(&request(2, 89_998, "1", "Example City")), "another price");
        assert!(!order.is_placed_by(&request(2, 89_999, "2", "Example City")), "another customer");
        assert!(!order.is_placed_by(&request(2, 89_999, "1", "Elsewhere")), "another address");
        let mut two_lines = request(2, 89_999, "1", "Example City");
        two_lines.items.push(OrderItemRequest { product_id: "b".repeat(24), quantity: 1, price: Cents(100) });
        assert!(!order.is_placed_by(&two_lines), "another line");
    }

    #[test]
    fn an_order_whose_total_cannot_be_answered_to_the_cent_is_not_made() {
        let line = |price_cents: i64, quantity: i64| StoredOrderItem { product_id: "a".repeat(24), quantity, price_cents };
        let most_expensive = 1_000_000_000_000_000; // 10,000,000,000,000.00
        assert!(
            OrderDocument::new_pending("1".into(), vec![line(most_expensive, 1_000_000)], address(), None).is_none(),
            "i64 overflow"
        );
        assert!(
            OrderDocument::new_pending("1".into(), vec![line(most_expensive, 10)], address(), None).is_none(),
            "beyond 2^53 cents"
        );
        let two_lines =
            vec![line(common::money::MAXIMUM_EXACT_CENTS, 1), StoredOrderItem { product_id: "b".repeat(24), ..line(1, 1) }];
        assert!(OrderDocument::new_pending("1".into(), two_lines, address(), None).is_none(), "the sum beyond 2^53 cents");
        let order =
            OrderDocument::new_pending("1".into(), vec![line(most_expensive, 9)], address(), None).expect("within bounds");
        assert_eq!(order.total_price_cents, 9_000_000_000_000_000);
    }
}
