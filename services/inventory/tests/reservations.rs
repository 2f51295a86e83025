//! The reservation logic against a real PostgreSQL: each test creates its own database (named
//! after a fresh uuid), runs the migrations, and drops the database when it ends.
//!
//! The server is `E2E_POSTGRES_URL` (default `postgres://postgres:postgres@127.0.0.1:5432`).

use std::collections::BTreeSet;

use common::messaging::events::{OrderCreated, OrderLine, ProductCreated, ProductDeleted};
use inventory_service::inventory::{self, store as stock};
use inventory_service::reservations::store::{self as reservations, ReleaseOutcome, ReservationOutcome, UnknownProducts};
use sqlx::PgPool;

const PRODUCT_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaa";
const PRODUCT_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbb";
const PRODUCT_C: &str = "cccccccccccccccccccccccc";

/// A fresh, migrated database that is dropped when the test is done with it.
struct TestDatabase {
    pool: PgPool,
    server_url: String,
    name: String,
}

impl TestDatabase {
    async fn new() -> Self {
        let server_url = shop_testkit_base::ServerUrls::from_environment().postgres;
        let name = format!("inventory_test_{}", uuid::Uuid::new_v4().simple());
        let database_url = format!("{server_url}/{name}");
        common::postgres::ensure_database(&database_url).await.expect("create the test database");
        let pool = common::postgres::pool(&database_url, 12).await.expect("connect to the test database");
        inventory_service::MIGRATOR.run(&pool).await.expect("run the migrations");
        Self { pool, server_url, name }
    }

    async fn drop_database(self) {
        self.pool.close().await;
        let server = common::postgres::pool(&format!("{}/postgres", self.server_url), 1).await.expect("connect to the server");
        let statement = format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name);
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&server).await.expect("drop the test database");
        server.close().await;
    }
}

async fn add_product(pool: &PgPool, product_id: &str, quantity: i64) {
    inventory::on_product_created(pool, ProductCreated { product_id: product_id.to_owned(), quantity })
        .await
        .unwrap_or_else(|error| panic!("creating the stock of {product_id} failed: {error:?}"));
}

/// Reserves, failing outright on unknown products (as the last delivery attempt does).
async fn reserve_or_fail(pool: &PgPool, order: &OrderCreated) -> anyhow::Result<ReservationOutcome> {
    reservations::reserve(pool, order, UnknownProducts::Fail).await
}

fn order(order_id: &str, lines: &[(&str, i64)]) -> OrderCreated {
    OrderCreated {
        order_id: order_id.to_owned(),
        user_id: "1".to_owned(),
        items: lines
            .iter()
            .map(|(product_id, quantity)| OrderLine { product_id: (*product_id).to_owned(), quantity: *quantity })
            .collect(),
    }
}

/// (available, reserved) of a product, discontinued or not.
async fn stock_of(pool: &PgPool, product_id: &str) -> (i32, i32) {
    sqlx::query_as("SELECT available_quantity, reserved_quantity FROM inventory WHERE product_id = $1")
        .bind(product_id)
        .fetch_one(pool)
        .await
        .expect("read stock")
}

async fn history_length(pool: &PgPool, product_id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM inventory_history WHERE product_id = $1")
        .bind(product_id)
        .fetch_one(pool)
        .await
        .expect("count history")
}

#[tokio::test]
async fn concurrent_orders_for_the_same_stock_never_oversell() {
    let database = TestDatabase::new().await;
    add_product(&database.pool, PRODUCT_A, 10).await;

    let attempts = (0..40).map(|number| {
        let pool = database.pool.clone();
        tokio::spawn(async move { reserve_or_fail(&pool, &order(&format!("order-{number}"), &[(PRODUCT_A, 1)])).await })
    });
    let outcomes: Vec<ReservationOutcome> =
        futures::future::join_all(attempts).await.into_iter().map(|joined| joined.unwrap().unwrap()).collect();

    let reserved = outcomes.iter().filter(|outcome| **outcome == ReservationOutcome::Reserved).count();
    assert_eq!(reserved, 10, "exactly the stock is reserved: {outcomes:?}");
    assert!(outcomes.iter().all(|outcome| match outcome {
        ReservationOutcome::Reserved => true,
        ReservationOutcome::Failed { reason } => reason.contains("insufficient stock"),
        ReservationOutcome::OrderCancelled | ReservationOutcome::ProductsNotKnownYet { .. } => false,
    }));
    assert_eq!(stock_of(&database.pool, PRODUCT_A).await, (0, 10));
    // One creation row plus one row per successful reservation.
    assert_eq!(history_length(&database.pool, PRODUCT_A).await, 11);
    database.drop_database().await;
}

#[tokio::test]
async fn orders_locking_the_same_products_in_opposite_orders_do_not_deadlock() {
    let database = TestDatabase::new().await;
    add_product(&database.pool, PRODUCT_A, 1000).await;
    add_product(&database.pool, PRODUCT_B, 1000).await;
    add_product(&database.pool, PRODUCT_C, 1000).await;

    let attempts = (0..60).map(|number| {
        let pool = database.pool.clone();
        let lines: &[(&str, i64)] = match number % 3 {
            0 => &[(PRODUCT_A, 1), (PRODUCT_B, 2), (PRODUCT_C, 3)],
            1 => &[(PRODUCT_C, 3), (PRODUCT_B, 2), (PRODUCT_A, 1)],
            _ => &[(PRODUCT_B, 2), (PRODUCT_A, 1), (PRODUCT_C, 3)],
        };
        let order = order(&format!("order-{number}"), lines);
        tokio::spawn(async move { reserve_or_fail(&pool, &order).await })
    });
    for joined in futures::future::join_all(attempts).await {
        assert_eq!(joined.unwrap().expect("no deadlock or other error"), ReservationOutcome::Reserved);
    }
    assert_eq!(stock_of(&database.pool, PRODUCT_A).await, (940, 60));
    assert_eq!(stock_of(&database.pool, PRODUCT_B).await, (880, 120));
    assert_eq!(stock_of(&database.pool, PRODUCT_C).await, (820, 180));
    database.drop_database().await;
}

#[tokio::test]
async fn an_order_is_reserved_all_or_nothing() {
    let database = TestDatabase::new().await;
    add_product(&database.pool, PRODUCT_A, 5).await;
    add_product(&database.pool, PRODUCT_B, 1).await;

    let outcome = reserve_or_fail(&database.pool, &order("order-1", &[(PRODUCT_A, 2), (PRODUCT_B, 3)])).await.unwrap();

    assert_eq!(
        outcome,
        ReservationOutcome::Failed { reason: format!("insufficient stock for product {PRODUCT_B}: requested 3, available 1") }
    );
    assert_eq!(stock_of(&database.pool, PRODUCT_A).await, (5, 0), "the line that fitted was not held either");
    assert_eq!(stock_of(&database.pool, PRODUCT_B).await, (1, 0));
    database.drop_database().await;
}

#[tokio::test]
async fn unknown_products_fail_the_order_with_a_reason_naming_them() {
    let database = TestDatabase::new().await;
    add_product(&database.pool, PRODUCT_A, 5).await;

    let outcome = reserve_or_fail(&database.pool, &order("order-1", &[(PRODUCT_A, 1), (PRODUCT_C, 1)])).await.unwrap();

    assert_eq!(outcome, ReservationOutcome::Failed { reason: format!("unknown products: {PRODUCT_C}") });
    assert_eq!(stock_of(&database.pool, PRODUCT_A).await, (5, 0));
    database.drop_database().await;
}

#[tokio::test]
async fn an_order_that_overtakes_its_products_stock_record_waits_for_it_without_recording_anything() {
    let database = TestDatabase::new().await;
    add_product(&database.pool, PRODUCT_A, 5).await;
    let early_order = order("order-early", &[(PRODUCT_A, 1), (PRODUCT_C, 2)]);

    let outcome = reservations::reserve(&database.pool, &early_order, UnknownProducts::WaitForThem).await.unwrap();
    assert_eq!(outcome, ReservationOutcome::ProductsNotKnownYet { reason: format!("unknown products: {PRODUCT_C}") });
    assert_eq!(stock_of(&database.pool, PRODUCT_A).await, (5, 0), "nothing may be held while waiting");

    add_product(&database.pool, PRODUCT_C, 4).await;
    let outcome = reservations::reserve(&database.pool, &early_order, UnknownProducts::WaitForThem).await.unwrap();
    assert_eq!(outcome, ReservationOutcome::Reserved, "the retry must not find a recorded outcome from the wait");
    assert_eq!(stock_of(&database.pool, PRODUCT_A).await, (4, 1));
    assert_eq!(stock_of(&database.pool, PRODUCT_C).await, (2, 2));
    database.drop_database().await;
}

#[tokio::test]
async fn a_redelivered_order_returns_the_recorded_outcome_and_changes_nothing() {
    let database = TestDatabase::new().await;
    add_product(&database.pool, PRODUCT_A, 3).await;
    let fits = order("order-fits", &[(PRODUCT_A, 2)]);
    let too_big = order("order-too-big", &[(PRODUCT_A, 2)]);

    assert_eq!(reserve_or_fail(&database.pool, &fits).await.unwrap(), ReservationOutcome::Reserved);
    let failure = reserve_or_fail(&database.pool, &too_big).await.unwrap();
    assert!(matches!(failure, ReservationOutcome::Failed { .. }));
    let history_before = history_length(&database.pool, PRODUCT_A).await;

    // Redeliveries, even after stock came back, answer exactly as the first time.
    stock::adjust(&database.pool, PRODUCT_A, 10, "delivery").await.unwrap().expect("adjusted");
    assert_eq!(reserve_or_fail(&database.pool, &fits).await.unwrap(), ReservationOutcome::Reserved);
    assert_eq!(reserve_or_fail(&database.pool, &too_big).await.unwrap(), failure);

    assert_eq!(stock_of(&database.pool, PRODUCT_A).await, (11, 2));
    assert_eq!(history_length(&database.pool, PRODUCT_A).await, history_before + 1, "only the adjustment was recorded");
    database.drop_database().await;
}

#[tokio::test]
async fn a_release_gives_back_exactly_what_the_order_holds_once() {
    let database = TestDatabase::new().await;
    add_product(&database.pool, PRODUCT_A, 50).await;
    add_product(&database.pool, PRODUCT_B, 75).await;
    let order = order("order-1", &[(PRODUCT_A, 1), (PRODUCT_B, 2), (PRODUCT_B, 1)]);
    reserve_or_fail(&database.pool, &order).await.unwrap();
    assert_eq!(stock_of(&database.pool, PRODUCT_B).await, (72, 3));

    assert_eq!(reservations::release(&database.pool, "order-1").await.unwrap(), ReleaseOutcome::Released { lines: 2 });
    assert_eq!(reservations::release(&database.pool, "order-1").await.unwrap(), ReleaseOutcome::AlreadyReleased);
    // A late redelivery of the order itself reserves nothing again.
    assert_eq!(reserve_or_fail(&database.pool, &order).await.unwrap(), ReservationOutcome::OrderCancelled);

    assert_eq!(stock_of(&database.pool, PRODUCT_A).await, (50, 0));
    assert_eq!(stock_of(&database.pool, PRODUCT_B).await, (75, 0));
    database.drop_database().await;
}

#[tokio::test]
async fn a_release_that_overtakes_its_reservation_leaks_nothing() {
    let database = TestDatabase::new().await;
    add_product(&database.pool, PRODUCT_A, 50).await;

    assert_eq!(reservations::release(&database.pool, "order-1").await.unwrap(), ReleaseOutcome::RecordedBeforeReservation);
    let late_order = order("order-1", &[(PRODUCT_A, 5)]);
    assert_eq!(reserve_or_fail(&database.pool, &late_order).await.unwrap(), ReservationOutcome::OrderCancelled);

    assert_eq!(stock_of(&database.pool, PRODUCT_A).await, (50, 0));
    assert_eq!(history_length(&database.pool, PRODUCT_A).await, 1, "only the creation");
    database.drop_database().await;
}

#[tokio::test]
async fn a_reservation_racing_its_release_ends_with_all_stock_back() {
    let database = TestDatabase::new().await;
    add_product(&database.pool, PRODUCT_A, 1000).await;

    let mut outcomes = BTreeSet::new();
    for number in 0..30 {
        let order_id = format!("order-{number}");
        let reserve = {
            let pool = database.pool.clone();
            let order = order(&order_id, &[(PRODUCT_A, 7)]);
            tokio::spawn(async move { reserve_or_fail(&pool, &order).await })
        };
        let release = {
            let pool = database.pool.clone();
            let order_id = order_id.clone();
            tokio::spawn(async move { reservations::release(&pool, &order_id).await })
        };
        let (reserved, released) = (reserve.await.unwrap().unwrap(), release.await.unwrap().unwrap());
        outcomes.insert(format!("{reserved:?} / {released:?}"));
    }

    assert_eq!(stock_of(&database.pool, PRODUCT_A).await, (1000, 0), "whichever came first, nothing leaked: {outcomes:?}");
    database.drop_database().await;
}

#[tokio::test]
async fn a_duplicated_product_created_event_changes_nothing() {
    let database = TestDatabase::new().await;
    add_product(&database.pool, PRODUCT_A, 100).await;
    reserve_or_fail(&database.pool, &order("order-1", &[(PRODUCT_A, 4)])).await.unwrap();

    add_product(&database.pool, PRODUCT_A, 100).await;

    let record = stock::find(&database.pool, PRODUCT_A).await.unwrap().expect("record");
    assert_eq!((record.available_quantity, record.reserved_quantity, record.reorder_threshold), (96, 4, 10));
    assert_eq!(history_length(&database.pool, PRODUCT_A).await, 2);
    database.drop_database().await;
}

#[tokio::test]
async fn a_deleted_product_stays_deleted_whichever_event_comes_first() {
    let database = TestDatabase::new().await;
    let delete = |product_id: &str| {
        let pool = database.pool.clone();
        let event = ProductDeleted { product_id: product_id.to_owned() };
        async move { inventory::on_product_deleted(&pool, event).await.expect("delete handled") }
    };

    // Created, reserved from, deleted: available written off, the reservation still releasable.
    add_product(&database.pool, PRODUCT_A, 20).await;
    reserve_or_fail(&database.pool, &order("order-1", &[(PRODUCT_A, 5)])).await.unwrap();
    delete(PRODUCT_A).await;
    delete(PRODUCT_A).await;
    assert!(stock::find(&database.pool, PRODUCT_A).await.unwrap().is_none(), "hidden once deleted");
    assert_eq!(stock_of(&database.pool, PRODUCT_A).await, (0, 5));
    reservations::release(&database.pool, "order-1").await.unwrap();
    assert_eq!(stock_of(&database.pool, PRODUCT_A).await, (0, 0));
    let outcome = reserve_or_fail(&database.pool, &order("order-2", &[(PRODUCT_A, 1)])).await.unwrap();
    assert!(matches!(outcome, ReservationOutcome::Failed { reason } if reason.contains("unknown products")));

    // Deleted before its creation event arrived: the late creation brings nothing back.
    delete(PRODUCT_B).await;
    add_product(&database.pool, PRODUCT_B, 30).await;
    assert!(stock::find(&database.pool, PRODUCT_B).await.unwrap().is_none());
    assert_eq!(stock_of(&database.pool, PRODUCT_B).await, (0, 0));
    database.drop_database().await;
}

#[tokio::test]
async fn adjustments_never_take_stock_below_zero() {
    let database = TestDatabase::new().await;
    add_product(&database.pool, PRODUCT_A, 3).await;

    assert!(stock::adjust(&database.pool, PRODUCT_A, -4, "count").await.unwrap().is_none());
    let record = stock::adjust(&database.pool, PRODUCT_A, -3, "count").await.unwrap().expect("fits");
    assert_eq!(record.available_quantity, 0);
    assert!(stock::adjust(&database.pool, PRODUCT_A, i32::MAX, "overflow").await.unwrap().is_some());
    assert!(stock::adjust(&database.pool, PRODUCT_A, 1, "overflow").await.unwrap().is_none(), "past the column's range");
    assert_eq!(history_length(&database.pool, PRODUCT_A).await, 3);
    database.drop_database().await;
}

/// Stock adjusted up to the limit while units are reserved: the order holding them can still be
/// released (the whole stock, available + reserved, is what is bounded), so its units come back.
#[tokio::test]
async fn an_order_reserved_before_stock_is_adjusted_to_the_limit_can_still_be_released() {
    let database = TestDatabase::new().await;
    add_product(&database.pool, PRODUCT_A, 10).await;
    let order = order("order-near-the-limit", &[(PRODUCT_A, 4)]);
    assert_eq!(reserve_or_fail(&database.pool, &order).await.unwrap(), ReservationOutcome::Reserved);

    let room = i32::MAX - 10;
    assert!(stock::adjust(&database.pool, PRODUCT_A, room + 1, "delivery").await.unwrap().is_none(), "past the bound");
    let record = stock::adjust(&database.pool, PRODUCT_A, room, "delivery").await.unwrap().expect("fits exactly");
    assert_eq!((record.available_quantity, record.reserved_quantity), (i32::MAX - 4, 4));

    let released = reservations::release(&database.pool, &order.order_id).await.expect("the release fits");
    assert_eq!(released, ReleaseOutcome::Released { lines: 1 });
    assert_eq!(stock_of(&database.pool, PRODUCT_A).await, (i32::MAX, 0));
    database.drop_database().await;
}

/// A release that fails for a reason retrying cannot cure (here stock written before the bound
/// existed, so giving the units back overflows) is an ERROR naming the order and a counted
/// failure an alert can watch, not only a dead letter; an outage is neither.
#[tokio::test]
async fn a_release_that_cannot_succeed_is_counted_for_alerting() {
    use common::messaging::HandlerError;
    use common::messaging::events::InventoryRelease;
    use inventory_service::reservations::{ReservationMetrics, on_inventory_release};

    let database = TestDatabase::new().await;
    add_product(&database.pool, PRODUCT_A, 10).await;
    let order = order("order-over-the-limit", &[(PRODUCT_A, 4)]);
    assert_eq!(reserve_or_fail(&database.pool, &order).await.unwrap(), ReservationOutcome::Reserved);
    // As a database written before the bound: available at the limit with units reserved.
    sqlx::query("ALTER TABLE inventory DROP CONSTRAINT inventory_total_fits").execute(&database.pool).await.unwrap();
    sqlx::query("UPDATE inventory SET available_quantity = 2147483647 WHERE product_id = $1")
        .bind(PRODUCT_A)
        .execute(&database.pool)
        .await
        .unwrap();

    let metrics = common::metrics::Metrics::new();
    let reservation_metrics = ReservationMetrics::register(&metrics);
    let release = InventoryRelease { order_id: order.order_id.clone() };
    let outcome = on_inventory_release(&database.pool, &reservation_metrics, release).await;
    assert!(matches!(outcome, Err(HandlerError::Retry(_))), "retried, then dead-lettered: {outcome:?}");
    let rendered = metrics.render();
    assert!(
        rendered.lines().any(|line| line == r#"stock_operation_failures_total{outcome="release"} 1"#),
        "the failure is counted:\n{rendered}"
    );
    assert_eq!(stock_of(&database.pool, PRODUCT_A).await, (i32::MAX, 4), "nothing changed");
    database.drop_database().await;
}
