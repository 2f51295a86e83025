//! What the order service counts beyond every service's figures (see `common::metrics`): the
//! orders it accepted, paid, cancelled (by reason) and refunded, and the time from acceptance to
//! payment. Each change of status is a conditional write that succeeds once, so across replicas
//! each order is counted once: summed over replicas, `orders_placed_total` minus the others is
//! what is still on its way.

use common::messaging::events::InventoryFailed;
use common::metrics::{Metrics, ReasonLabels};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// Buckets of `order_accepted_to_paid_seconds`: from 5 ms to a minute (an order waiting out an
/// outage takes that long).
pub const ACCEPTED_TO_PAID_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0];

/// Why an order was cancelled, as `orders_cancelled_total{reason}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelledBecause {
    /// Inventory had too little stock of a product: the one reason a healthy shop cancels for.
    OutOfStock,
    /// Inventory knew no stock of a product (unknown, or retired from the catalog).
    ProductUnavailable,
    /// Its customer cancelled it.
    Customer,
    /// Staff cancelled someone else's order.
    Staff,
}

impl CancelledBecause {
    /// The reason inventory gave for refusing an order.
    pub fn of_inventory(event: &InventoryFailed) -> Self {
        if event.is_stock_out() { Self::OutOfStock } else { Self::ProductUnavailable }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::OutOfStock => "out_of_stock",
            Self::ProductUnavailable => "product_unavailable",
            Self::Customer => "customer",
            Self::Staff => "staff",
        }
    }
}

/// The order service's own figures. Cheap to clone; every clone counts into the same registry.
#[derive(Clone)]
pub struct OrderMetrics {
    placed: Counter,
    paid: Counter,
    cancelled: Family<ReasonLabels, Counter>,
    refunded: Counter,
    accepted_to_paid: Histogram,
}

impl std::fmt::Debug for OrderMetrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("OrderMetrics")
    }
}

impl OrderMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let cancelled = metrics.reason_counter("orders_cancelled", "Orders cancelled, by reason");
        // Every reason present from the start, at 0, so that a ratio over them is defined before
        // the first cancellation of each kind.
        for reason in [
            CancelledBecause::OutOfStock,
            CancelledBecause::ProductUnavailable,
            CancelledBecause::Customer,
            CancelledBecause::Staff,
        ] {
            drop(cancelled.get_or_create(&ReasonLabels { reason: reason.label() }));
        }
        Self {
            placed: metrics
                .counter("orders_placed", "Orders accepted (201 pending; a replayed Idempotency-Key not counted again)"),
            paid: metrics.counter("orders_paid", "Orders paid"),
            cancelled,
            refunded: metrics.counter("orders_refunded", "Orders refunded"),
            accepted_to_paid: metrics.histogram(
                "order_accepted_to_paid_seconds",
                "Time from an order's acceptance to its payment",
                &ACCEPTED_TO_PAID_BUCKETS,
            ),
        }
    }

    pub fn placed(&self) {
        self.placed.inc();
    }

    /// An order paid `waited` after it was accepted.
    pub fn paid(&self, waited: std::time::Duration) {
        self.paid.inc();
        self.accepted_to_paid.observe(waited.as_secs_f64());
    }

    pub fn cancelled(&self, because: CancelledBecause) {
        self.cancelled.get_or_create(&ReasonLabels { reason: because.label() }).inc();
    }

    pub fn refunded(&self) {
        self.refunded.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_figure_is_reported_under_its_name_and_every_reason_from_the_start() {
        let metrics = Metrics::new();
        let orders = OrderMetrics::register(&metrics);
        let before = metrics.render();
        for reason in ["out_of_stock", "product_unavailable", "customer", "staff"] {
            let line = format!("orders_cancelled_total{{reason=\"{reason}\"}} 0");
            assert!(before.lines().any(|rendered| rendered == line), "{line:?} is not in:\n{before}");
        }
        orders.placed();
        orders.placed();
        orders.paid(std::time::Duration::from_millis(30));
        orders.cancelled(CancelledBecause::OutOfStock);
        orders.cancelled(CancelledBecause::Customer);
        orders.refunded();
        let text = metrics.render();
        for line in [
            "orders_placed_total 2",
            "orders_paid_total 1",
            r#"orders_cancelled_total{reason="out_of_stock"} 1"#,
            r#"orders_cancelled_total{reason="customer"} 1"#,
            r#"orders_cancelled_total{reason="staff"} 0"#,
            "orders_refunded_total 1",
            "order_accepted_to_paid_seconds_count 1",
            r#"order_accepted_to_paid_seconds_bucket{le="0.05"} 1"#,
            r#"order_accepted_to_paid_seconds_bucket{le="0.025"} 0"#,
        ] {
            assert!(text.lines().any(|rendered| rendered == line), "{line:?} is not in:\n{text}");
        }
    }

    #[test]
    fn inventory_s_refusals_are_told_apart_by_their_reason() {
        let refusal = |reason: &str| InventoryFailed { order_id: "o".into(), reason: reason.into() };
        assert_eq!(
            CancelledBecause::of_inventory(&refusal("insufficient stock for 65f0a0000000000000000001 (1 available, 2 ordered)")),
            CancelledBecause::OutOfStock
        );
        assert_eq!(
            CancelledBecause::of_inventory(&refusal("unknown products: 65f0a0000000000000000001")),
            CancelledBecause::ProductUnavailable
        );
        assert_eq!(CancelledBecause::of_inventory(&refusal("retired products: x")), CancelledBecause::ProductUnavailable);
    }
}
