//! The order service on its own, against the real MongoDB server and RabbitMQ of this machine:
//! its HTTP API, its outbox relay and its consumers. The product service and the user service's
//! JWKS are played by a small fake HTTP server, and inventory by a fake consumer of
//! `order_created` that reserves from an in-memory stock, so that these tests need no other
//! service. The end-to-end features (`features/05..08`) cover the real thing.
//!
//! Each test owns a fresh MongoDB database and RabbitMQ vhost, and removes both when it ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use common::config::Settings as _;
use common::messaging::events::{InventoryFailed, InventoryRelease, InventoryReserved, OrderCreated};
use common::messaging::{ConsumerSettings, HandlerError, Publisher, consume};
use futures::StreamExt as _;
use order_service::Config;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const SIGNING_KEY: &str = include_str!("fixtures/test_signing_key.pem");
const JWKS: &str = include_str!("fixtures/test_jwks.json");
const KEY_ID: &str = "order-service-test-key";
/// The broker's management API and its login (`E2E_RABBITMQ_MANAGEMENT_URL`).
/// The order service's consumer prefetch in these tests (`CONSUMER_PREFETCH`).
const CONSUMER_PREFETCH: u16 = 3;

fn management() -> (String, String, String) {
    let login = shop_testkit_base::ServerUrls::from_environment().rabbitmq_management_login();
    (login.url, login.user, login.password)
}

/// The fake product service (and JWKS host).
#[derive(Default)]
struct FakeCatalog {
    prices: Mutex<HashMap<String, f64>>,
    /// When set, every product lookup answers 503, as a product service in trouble would.
    down: AtomicBool,
}

/// The fake inventory: stock per product, and the orders it was asked to release.
#[derive(Default)]
struct FakeInventory {
    available: Mutex<HashMap<String, i64>>,
    released_orders: Mutex<Vec<String>>,
}

struct TestApp {
    address: String,
    http: reqwest::Client,
    catalog: Arc<FakeCatalog>,
    inventory: Arc<FakeInventory>,
    database_name: String,
    mongodb: mongodb::Client,
    vhost: String,
    stop_service: Option<tokio::sync::oneshot::Sender<()>>,
    service: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    stop_fakes: CancellationToken,
    fake_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// Starts the service. With `broker_ready` false the vhost does not exist yet, which the
    /// service sees as a broker it cannot reach; `open_broker` creates it later.
    async fn spawn(broker_ready: bool) -> TestApp {
        Self::spawn_with(broker_ready, common::config::DEFAULT_DRAIN_LIMIT).await
    }

    /// Like `spawn`, with the given limit on how long stopping may take.
    async fn spawn_with(broker_ready: bool, drain_limit: Duration) -> TestApp {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let database_name = format!("order_service_test_{unique}");
        let vhost = format!("order_service_test_{unique}");
        let http = reqwest::Client::new();
        if broker_ready {
            create_vhost(&http, &vhost).await;
        }

        let catalog = Arc::new(FakeCatalog::default());
        let fake_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake_address = format!("http://{}", fake_listener.local_addr().unwrap());
        let fake_router = Router::new()
            .route("/api/v1/auth/jwks", get(|| async { ([("content-type", "application/json")], JWKS) }))
            .route("/api/v1/products/", get(fake_products))
            .with_state(Arc::clone(&catalog));
        let stop_fakes = CancellationToken::new();
        let fake_server_stop = stop_fakes.clone();
        let mut fake_tasks = vec![tokio::spawn(async move {
            axum::serve(fake_listener, fake_router).with_graceful_shutdown(fake_server_stop.cancelled_owned()).await.unwrap();
        })];

        let servers = shop_testkit_base::ServerUrls::from_environment();
        let rabbitmq_url = format!("{}/{vhost}", servers.rabbitmq);
        let inventory = Arc::new(FakeInventory::default());
        fake_tasks.extend(spawn_fake_inventory(&rabbitmq_url, &inventory, &stop_fakes));

        let mut config = Config::defaults();
        config.mongodb_url = servers.mongodb;
        config.http.host = "127.0.0.1".into();
        config.http.port = 0;
        config.http.drain_limit = drain_limit;
        config.mongodb_database = database_name.clone();
        config.mongodb_max_pool_size = 5;
        config.rabbitmq_url = rabbitmq_url;
        // Not the default (8): a test proves the setting reaches the broker.
        config.consumer_prefetch = CONSUMER_PREFETCH;
        config.jwks_url = format!("{fake_address}/api/v1/auth/jwks");
        config.product_service_url = fake_address;
        let mongodb = mongodb::Client::with_uri_str(&config.mongodb_url).await.unwrap();
        let application = order_service::build(config).await.expect("the order service starts");
        let address = format!("http://127.0.0.1:{}", application.port());
        let (stop_service, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        TestApp {
            address,
            http,
            catalog,
            inventory,
            database_name,
            mongodb,
            vhost,
            stop_service: Some(stop_service),
            service: Some(service),
            stop_fakes,
            fake_tasks,
        }
    }

    async fn open_broker(&self) {
        create_vhost(&self.http, &self.vhost).await;
    }

    fn add_product(&self, price: f64, stock: i64) -> String {
        let product_id = bson::oid::ObjectId::new().to_hex();
        self.catalog.prices.lock().unwrap().insert(product_id.clone(), price);
        self.inventory.available.lock().unwrap().insert(product_id.clone(), stock);
        product_id
    }

    async fn send(&self, method: reqwest::Method, path: &str, user_id: i64, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.address)).bearer_auth(token_for(user_id));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let text = response.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
    }

    async fn place_order(&self, user_id: i64, items: Value) -> (StatusCode, Value) {
        let body = json!({ "user_id": user_id.to_string(), "items": items, "shipping_address": address() });
        self.send(reqwest::Method::POST, "/api/v1/orders/", user_id, Some(body)).await
    }

    async fn order_status(&self, user_id: i64, order_id: &str) -> String {
        let (_, order) = self.send(reqwest::Method::GET, &format!("/api/v1/orders/{order_id}"), user_id, None).await;
        order["status"].as_str().unwrap_or("").to_owned()
    }

    /// Polls until the order has `expected`, failing with the last status seen.
    async fn wait_for_status(&self, user_id: i64, order_id: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let status = self.order_status(user_id, order_id).await;
            if status == expected {
                return;
            }
            assert!(Instant::now() < deadline, "order {order_id} is still {status:?}, expected {expected:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stored_order_count(&self) -> u64 {
        self.mongodb
            .database(&self.database_name)
            .collection::<bson::Document>("orders")
            .count_documents(bson::doc! {})
            .await
            .unwrap()
    }

    async fn stored_order(&self, order_id: &str) -> bson::Document {
        let id = bson::oid::ObjectId::parse_str(order_id).unwrap();
        self.mongodb
            .database(&self.database_name)
            .collection::<bson::Document>("orders")
            .find_one(bson::doc! { "_id": id })
            .await
            .unwrap()
            .unwrap()
    }

    async fn stop(mut self) {
        let _ = self.stop_service.take().unwrap().send(());
        let stopped = tokio::time::timeout(Duration::from_secs(15), self.service.take().unwrap()).await;
        self.stop_fakes.cancel();
        for task in self.fake_tasks.drain(..) {
            let _ = task.await;
        }
        let _ = self.mongodb.database(&self.database_name).drop().await;
        let (management_url, user, password) = management();
        let _ =
            self.http.delete(format!("{management_url}/api/vhosts/{}", self.vhost)).basic_auth(user, Some(password)).send().await;
        stopped.expect("the service stops within 15 seconds").unwrap().expect("the service stops cleanly");
    }
}

/// `GET /api/v1/products/?ids=a,b`: the products among those ids that exist.
async fn fake_products(
    State(catalog): State<Arc<FakeCatalog>>,
    Query(query): Query<HashMap<String, String>>,
) -> (StatusCode, axum::Json<Value>) {
    if catalog.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({ "detail": "down" })));
    }
    let prices = catalog.prices.lock().unwrap();
    let found: Vec<Value> = query
        .get("ids")
        .map(String::as_str)
        .unwrap_or_default()
        .split(',')
        .filter_map(|id| prices.get(id).map(|price| json!({ "name": "Thing", "price": price, "quantity": 1, "_id": id })))
        .collect();
    (StatusCode::OK, axum::Json(Value::Array(found)))
}

/// Inventory's part of the flow, all or none, as the real inventory service does it.
fn spawn_fake_inventory(
    rabbitmq_url: &str,
    inventory: &Arc<FakeInventory>,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let publisher = Arc::new(Publisher::new(rabbitmq_url, "fake inventory"));
    let reserving_inventory = Arc::clone(inventory);
    let reserve = consume::<OrderCreated, _, _>(
        rabbitmq_url.to_owned(),
        ConsumerSettings::new("fake-inventory"),
        move |order, _| {
            let inventory = Arc::clone(&reserving_inventory);
            let publisher = Arc::clone(&publisher);
            async move {
                let reserved = {
                    let mut available = inventory.available.lock().unwrap();
                    let enough =
                        order.items.iter().all(|line| available.get(&line.product_id).copied().unwrap_or(0) >= line.quantity);
                    if enough {
                        for line in &order.items {
                            *available.get_mut(&line.product_id).unwrap() -= line.quantity;
                        }
                    }
                    enough
                };
                let outcome = if reserved {
                    publisher.publish(&InventoryReserved { order_id: order.order_id }).await
                } else {
                    publisher.publish(&InventoryFailed { order_id: order.order_id, reason: "Insufficient stock".into() }).await
                };
                outcome.map_err(HandlerError::Retry)
            }
        },
        stop.clone(),
    );
    let releasing_inventory = Arc::clone(inventory);
    let release = consume::<InventoryRelease, _, _>(
        rabbitmq_url.to_owned(),
        ConsumerSettings::new("fake-inventory"),
        move |release, _| {
            let inventory = Arc::clone(&releasing_inventory);
            async move {
                inventory.released_orders.lock().unwrap().push(release.order_id);
                Ok(())
            }
        },
        stop.clone(),
    );
    vec![tokio::spawn(reserve), tokio::spawn(release)]
}

async fn create_vhost(http: &reqwest::Client, vhost: &str) {
    let (management_url, user, password) = management();
    let created =
        http.put(format!("{management_url}/api/vhosts/{vhost}")).basic_auth(&user, Some(&password)).send().await.unwrap();
    assert!(created.status().is_success(), "cannot create vhost {vhost}: {}", created.status());
    let permitted = http
        .put(format!("{management_url}/api/permissions/{vhost}/{user}"))
        .basic_auth(&user, Some(&password))
        .json(&json!({ "configure": ".*", "write": ".*", "read": ".*" }))
        .send()
        .await
        .unwrap();
    assert!(permitted.status().is_success(), "cannot grant guest access to {vhost}: {}", permitted.status());
}

fn token_for(user_id: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = common::auth::Claims {
        sub: user_id.to_string(),
        kind: common::auth::TokenKind::Access,
        iss: common::auth::ISSUER.into(),
        iat: now,
        exp: now + 600,
        jti: uuid::Uuid::new_v4().to_string(),
        roles: Vec::new(),
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(KEY_ID.into());
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_rsa_pem(SIGNING_KEY.as_bytes()).unwrap()).unwrap()
}

fn address() -> Value {
    json!({
        "line1": "123 Example Street", "line2": "Apt 4B", "city": "Example City",
        "state": "EX", "postal_code": "12345", "country": "Example Country"
    })
}

#[tokio::test]
async fn an_order_is_accepted_pending_and_reaches_paid() {
    let app = TestApp::spawn(true).await;
    let headphones = app.add_product(249.99, 100);
    let watch = app.add_product(179.99, 75);

    let started = Instant::now();
    let (status, order) = app
        .place_order(
            1,
            json!([
                { "product_id": headphones, "quantity": 1, "price": 249.99 },
                { "product_id": watch, "quantity": 2, "price": 179.99 }
            ]),
        )
        .await;

    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "pending");
    assert_eq!(order["total_price"], json!(609.97));
    assert_eq!(order["user_id"], "1");
    assert_eq!(order["items"][1], json!({ "product_id": watch, "quantity": 2, "price": 179.99 }));
    assert_eq!(order["shipping_address"], address());
    let keys: Vec<&String> = order.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["_id", "user_id", "items", "total_price", "status", "shipping_address", "created_at", "updated_at"]);
    let order_id = order["_id"].as_str().unwrap().to_owned();
    app.wait_for_status(1, &order_id, "paid").await;
    println!("order placed to paid in {:?}", started.elapsed());

    let stored = app.stored_order(&order_id).await;
    assert_eq!(stored.get_i64("total_price_cents").unwrap(), 60997);
    // The relay marks an event published once the broker confirms it, and the broker may hand it
    // to the consumer (which pays the order) before that: the outbox empties soon after, not at
    // the moment the order is paid.
    shop_testkit_base::eventually::eventually(Duration::from_secs(15), "the published events leave the outbox", || async {
        let stored = app.stored_order(&order_id).await;
        if stored.get_array("outbox").unwrap().is_empty() { Ok(()) } else { Err(format!("{stored}")) }
    })
    .await;
    assert_eq!(app.inventory.available.lock().unwrap()[&watch], 73);
    app.stop().await;
}

#[tokio::test]
async fn orders_that_fail_a_check_are_refused_and_nothing_is_stored() {
    let app = TestApp::spawn(true).await;
    let phone = app.add_product(899.99, 50);

    let (status, body) = app.place_order(1, json!([{ "product_id": phone, "quantity": 1, "price": 899.98 }])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["detail"], format!("Price of product {phone} is 899.99, not 899.98"));

    let unknown = bson::oid::ObjectId::new().to_hex();
    let (status, body) = app.place_order(1, json!([{ "product_id": unknown, "quantity": 1, "price": 1.0 }])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, _) = app.place_order(1, json!([])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app.place_order(1, json!([{ "product_id": phone, "quantity": 0, "price": 899.99 }])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app.place_order(1, json!([{ "product_id": phone, "quantity": 1, "price": 899.999 }])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let someone_else = json!({ "user_id": "2", "items": [{ "product_id": phone, "quantity": 1, "price": 899.99 }], "shipping_address": address() });
    let (status, body) = app.send(reqwest::Method::POST, "/api/v1/orders/", 1, Some(someone_else)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    app.catalog.down.store(true, Ordering::SeqCst);
    let (status, body) = app.place_order(1, json!([{ "product_id": phone, "quantity": 1, "price": 899.99 }])).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    let without_token = app.http.get(format!("{}/api/v1/orders/", app.address)).send().await.unwrap();
    assert_eq!(without_token.status().as_u16(), 401);

    assert_eq!(app.stored_order_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn status_changes_follow_the_status_machine_and_stay_private() {
    let app = TestApp::spawn(true).await;
    let phone = app.add_product(899.99, 50);
    let (_, order) = app.place_order(1, json!([{ "product_id": phone, "quantity": 1, "price": 899.99 }])).await;
    let order_id = order["_id"].as_str().unwrap().to_owned();
    app.wait_for_status(1, &order_id, "paid").await;
    let status_path = format!("/api/v1/orders/{order_id}/status");

    let (status, shipped) = app.send(reqwest::Method::PUT, &status_path, 1, Some(json!({ "status": "shipped" }))).await;
    assert_eq!(status, StatusCode::OK, "{shipped}");
    assert_eq!(shipped["status"], "shipped");
    assert_ne!(shipped["updated_at"], order["updated_at"]);

    let (status, body) = app.send(reqwest::Method::PUT, &status_path, 1, Some(json!({ "status": "processing" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["detail"],
        "Cannot change order status from shipped to processing. Allowed transitions from shipped: delivered, refunded"
    );

    let (status, _) = app.send(reqwest::Method::PUT, &status_path, 1, Some(json!({ "status": "teleported" }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, body) = app.send(reqwest::Method::DELETE, &format!("/api/v1/orders/{order_id}"), 1, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["detail"], "Order cannot be cancelled: it is shipped");

    let (status, _) = app.send(reqwest::Method::GET, &format!("/api/v1/orders/{order_id}"), 2, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.send(reqwest::Method::PUT, &status_path, 2, Some(json!({ "status": "delivered" }))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.send(reqwest::Method::GET, "/api/v1/orders/not-an-id", 1, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, others) = app.send(reqwest::Method::GET, "/api/v1/orders/", 2, None).await;
    assert_eq!((status, others), (StatusCode::OK, json!([])));
    assert!(app.inventory.released_orders.lock().unwrap().is_empty(), "shipping releases nothing");
    app.stop().await;
}

/// An event about an order this service never had is refused for good (dead-lettered), while
/// one about an order that has moved on is a harmless duplicate: the store tells the two apart.
#[tokio::test]
async fn an_event_for_an_order_that_never_existed_is_refused_and_one_that_moved_on_is_ignored() {
    use order_service::consumers::{ConsumerContext, on_inventory_reserved, on_order_processed};
    use order_service::orders::model::OrderStatus;
    use order_service::orders::store::{OrderStore, StatusChange};

    let app = TestApp::spawn(true).await;
    let phone = app.add_product(899.99, 50);
    let (_, order) = app.place_order(1, json!([{ "product_id": phone, "quantity": 1, "price": 899.99 }])).await;
    let order_id = order["_id"].as_str().unwrap().to_owned();
    app.wait_for_status(1, &order_id, "paid").await;
    let store = OrderStore::new(&app.mongodb.database(&app.database_name));
    let paid = bson::oid::ObjectId::parse_str(&order_id).unwrap();
    let never = bson::oid::ObjectId::new();

    let change = |id, user: Option<&'static str>| {
        let store = store.clone();
        async move { store.change_status(id, user, OrderStatus::Pending, OrderStatus::Processing, None).await.unwrap() }
    };
    assert!(matches!(change(never, None).await, StatusChange::NotFound));
    assert!(matches!(change(paid, None).await, StatusChange::StatusMovedOn));
    assert!(matches!(change(paid, Some("1")).await, StatusChange::StatusMovedOn));
    // Another customer's order is, to that customer, an order that does not exist.
    assert!(matches!(change(paid, Some("2")).await, StatusChange::NotFound));

    let metrics = common::metrics::Metrics::new();
    let context = ConsumerContext { store, metrics: order_service::metrics::OrderMetrics::register(&metrics) };
    let unknown = on_inventory_reserved(&context, InventoryReserved { order_id: never.to_hex() }).await;
    assert!(matches!(unknown, Err(HandlerError::Reject(_))), "{unknown:?}");
    let duplicate = on_order_processed(&context, common::messaging::events::OrderProcessed { order_id: order_id.clone() }).await;
    assert!(duplicate.is_ok(), "{duplicate:?}");
    assert_eq!(app.order_status(1, &order_id).await, "paid");
    assert!(!metrics.render().contains("orders_paid_total 1"), "a duplicate payment is not counted again");
    app.stop().await;
}

/// Tries of one order sent at once with one `Idempotency-Key` race to insert it: the unique index
/// lets one in, and every other try answers 201 with that order, replayed; a later retry finds it.
#[tokio::test]
async fn tries_sent_at_once_with_one_idempotency_key_place_one_order() {
    let app = TestApp::spawn(true).await;
    let phone = app.add_product(899.99, 50);
    let body = json!({
        "user_id": "1",
        "items": [{ "product_id": phone, "quantity": 1, "price": 899.99 }],
        "shipping_address": address(),
    });
    let url = format!("{}/api/v1/orders/", app.address);
    let try_once = || async {
        let response = app
            .http
            .post(&url)
            .bearer_auth(token_for(1))
            .header("Idempotency-Key", "checkout-42")
            .json(&body)
            .send()
            .await
            .unwrap();
        let replayed = response.headers().get("idempotent-replayed").is_some();
        let status = response.status().as_u16();
        let order: Value = response.json().await.unwrap();
        (status, order["_id"].as_str().unwrap_or_default().to_owned(), replayed)
    };
    let answers = futures::future::join_all((0..8).map(|_| try_once())).await;
    let placed = &answers[0].1;
    for (status, id, _) in &answers {
        assert_eq!((*status, id), (201, placed), "{answers:?}");
    }
    assert_eq!(answers.iter().filter(|(_, _, replayed)| !replayed).count(), 1, "one try placed it: {answers:?}");
    let (status, id, replayed) = try_once().await;
    assert_eq!((status, &id, replayed), (201, placed, true));
    assert_eq!(app.stored_order_count().await, 1);
    app.stop().await;
}

/// `CONSUMER_PREFETCH` is what each of the order service's consumers asks the broker for: at most
/// that many deliveries unacknowledged at once, as the broker itself reports.
#[tokio::test]
async fn each_consumer_asks_the_broker_for_the_configured_prefetch() {
    let app = TestApp::spawn(true).await;
    let (management_url, user, password) = management();
    let queues = ["inventory_reserved", "order_processed", "inventory_failed"];
    // A deadline for a start on a loaded machine, not a measure of speed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let consumers: Value = app
            .http
            .get(format!("{management_url}/api/consumers/{}", app.vhost))
            .basic_auth(&user, Some(&password))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let prefetch: Vec<(String, u64)> = consumers
            .as_array()
            .unwrap()
            .iter()
            .map(|consumer| {
                (
                    consumer["queue"]["name"].as_str().unwrap_or_default().to_owned(),
                    consumer["prefetch_count"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let every_queue = queues.iter().all(|queue| prefetch.iter().any(|(name, _)| name == queue));
        if every_queue {
            for queue in queues {
                let counts: Vec<u64> = prefetch.iter().filter(|(name, _)| name == queue).map(|(_, count)| *count).collect();
                assert_eq!(counts, [u64::from(CONSUMER_PREFETCH)], "{queue}: {prefetch:?}");
            }
            break;
        }
        assert!(Instant::now() < deadline, "not every consumer is registered with the broker: {prefetch:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}

/// `skip` goes as far as MongoDB can count (i64::MAX); beyond that is a 422, not a 500.
#[tokio::test]
async fn the_list_skips_as_far_as_mongodb_counts_and_no_further() {
    let app = TestApp::spawn(true).await;
    let farthest = common::limits::MAXIMUM_SKIP;
    let (status, body) = app.send(reqwest::Method::GET, &format!("/api/v1/orders/?skip={farthest}"), 1, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
    let (status, body) = app.send(reqwest::Method::GET, &format!("/api/v1/orders/?skip={}", farthest + 1), 1, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains(&format!("skip must be at most {farthest}")), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_cancel_releases_the_stock_once_and_the_list_is_newest_first() {
    let app = TestApp::spawn(true).await;
    let phone = app.add_product(899.99, 50);
    let (_, first) = app.place_order(1, json!([{ "product_id": phone, "quantity": 1, "price": 899.99 }])).await;
    let (_, second) = app.place_order(1, json!([{ "product_id": phone, "quantity": 2, "price": 899.99 }])).await;
    let second_id = second["_id"].as_str().unwrap().to_owned();
    app.wait_for_status(1, &second_id, "paid").await;

    let (status, body) = app.send(reqwest::Method::DELETE, &format!("/api/v1/orders/{second_id}"), 1, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(app.order_status(1, &second_id).await, "cancelled");
    let (status, _) = app.send(reqwest::Method::DELETE, &format!("/api/v1/orders/{second_id}"), 1, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a second cancel is refused");

    let deadline = Instant::now() + Duration::from_secs(15);
    while app.inventory.released_orders.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no inventory_release arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(*app.inventory.released_orders.lock().unwrap(), vec![second_id.clone()]);

    let (_, listed) = app.send(reqwest::Method::GET, "/api/v1/orders/", 1, None).await;
    let listed_ids: Vec<&str> = listed.as_array().unwrap().iter().map(|order| order["_id"].as_str().unwrap()).collect();
    assert_eq!(listed_ids, [second_id.as_str(), first["_id"].as_str().unwrap()]);
    let (_, cancelled_only) = app.send(reqwest::Method::GET, "/api/v1/orders/?status=cancelled", 1, None).await;
    assert_eq!(cancelled_only.as_array().unwrap().len(), 1);
    let (_, paged) = app.send(reqwest::Method::GET, "/api/v1/orders/?skip=1&limit=1", 1, None).await;
    assert_eq!(paged[0]["_id"], first["_id"]);
    let (status, _) = app.send(reqwest::Method::GET, "/api/v1/orders/?status=lost", 1, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test]
async fn an_order_for_more_than_the_stock_is_cancelled_with_a_reason() {
    let app = TestApp::spawn(true).await;
    let phone = app.add_product(899.99, 5);
    let (_, order) = app.place_order(1, json!([{ "product_id": phone, "quantity": 6, "price": 899.99 }])).await;
    let order_id = order["_id"].as_str().unwrap().to_owned();
    app.wait_for_status(1, &order_id, "cancelled").await;
    let (_, cancelled) = app.send(reqwest::Method::GET, &format!("/api/v1/orders/{order_id}"), 1, None).await;
    assert_eq!(cancelled["cancellation_reason"], "Insufficient stock");
    assert_eq!(app.inventory.available.lock().unwrap()[&phone], 5);
    app.stop().await;
}

#[tokio::test]
async fn an_order_placed_while_the_broker_is_unreachable_is_processed_once_it_is_back() {
    let app = TestApp::spawn(false).await;
    let phone = app.add_product(899.99, 50);
    let (status, order) = app.place_order(1, json!([{ "product_id": phone, "quantity": 1, "price": 899.99 }])).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let order_id = order["_id"].as_str().unwrap().to_owned();
    assert_eq!(app.order_status(1, &order_id).await, "pending");
    assert_eq!(app.stored_order(&order_id).await.get_array("outbox").unwrap().len(), 1, "the event waits in the outbox");

    app.open_broker().await;
    app.wait_for_status(1, &order_id, "paid").await;
    app.stop().await;
}

#[tokio::test]
async fn concurrent_cancels_of_one_order_succeed_once_and_queue_one_release() {
    // No broker: the order stays pending and its events stay in the outbox where we can count them.
    let app = TestApp::spawn(false).await;
    let phone = app.add_product(899.99, 50);
    let (_, order) = app.place_order(1, json!([{ "product_id": phone, "quantity": 1, "price": 899.99 }])).await;
    let order_id = order["_id"].as_str().unwrap().to_owned();

    let path = format!("/api/v1/orders/{order_id}");
    let cancels = (0..10).map(|_| app.send(reqwest::Method::DELETE, &path, 1, None));
    let statuses: Vec<StatusCode> = futures::future::join_all(cancels).await.into_iter().map(|(status, _)| status).collect();

    assert_eq!(statuses.iter().filter(|status| **status == StatusCode::NO_CONTENT).count(), 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|status| *status == StatusCode::NO_CONTENT || *status == StatusCode::BAD_REQUEST),
        "{statuses:?}"
    );
    let stored = app.stored_order(&order_id).await;
    let queues: Vec<&str> =
        stored.get_array("outbox").unwrap().iter().map(|entry| entry.as_document().unwrap().get_str("queue").unwrap()).collect();
    assert_eq!(queues, ["order_created", "inventory_release"]);
    app.open_broker().await;
    app.stop().await;
}

#[tokio::test]
async fn health_and_the_openapi_document_are_served() {
    let app = TestApp::spawn(true).await;
    let health: Value = app.http.get(format!("{}/health", app.address)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health, json!({ "status": "healthy", "service": "order-service" }));
    let specification: Value =
        app.http.get(format!("{}/api/v1/openapi.json", app.address)).send().await.unwrap().json().await.unwrap();
    let paths = specification["paths"].as_object().unwrap();
    assert!(paths.contains_key("/api/v1/orders/") && paths.contains_key("/api/v1/orders/{order_id}/status"), "{paths:?}");
    let documentation = app.http.get(format!("{}/api/v1/docs/", app.address)).send().await.unwrap();
    assert_eq!(documentation.status().as_u16(), 200);
    app.stop().await;
}

#[tokio::test]
async fn the_service_creates_the_indexes_its_queries_rely_on() {
    // The customer's order list (newest first) and the outbox relay's look-ups by event id must
    // not scan the whole collection as orders grow.
    let app = TestApp::spawn(true).await;
    let indexes: Vec<bson::Document> = app
        .mongodb
        .database(&app.database_name)
        .collection::<bson::Document>("orders")
        .list_indexes()
        .await
        .unwrap()
        .map(|index| bson::to_document(&index.unwrap().keys).unwrap())
        .collect()
        .await;
    assert!(indexes.contains(&bson::doc! { "user_id": 1, "created_at": -1, "_id": -1 }), "{indexes:?}");
    assert!(indexes.contains(&bson::doc! { "outbox.id": 1 }), "{indexes:?}");
    app.stop().await;
}

/// An order whose body never comes in full holds a request in flight for ever: the stop still
/// ends at the drain limit (`common::runtime`), with the request abandoned.
#[tokio::test]
async fn an_order_whose_body_never_arrives_does_not_hold_up_the_stop() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = TestApp::spawn_with(true, Duration::from_millis(300)).await;
    let mut client = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    // `Expect: 100-continue`: the server says "100 Continue" once the handler reads the body, so
    // the request is known to be in flight before the stop.
    let head = format!(
        "POST /api/v1/orders/ HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\n\
         content-length: 1000\r\nexpect: 100-continue\r\n\r\n",
        token_for(1)
    );
    client.write_all(head.as_bytes()).await.unwrap();
    let mut continued = [0_u8; 25];
    client.read_exact(&mut continued).await.unwrap();
    assert!(continued.starts_with(b"HTTP/1.1 100 Continue"), "{}", String::from_utf8_lossy(&continued));
    client.write_all(br#"{"items": ["#).await.unwrap();
    // Fails when the service does not stop within 15 s (far longer than the limit).
    app.stop().await;
    drop(client);
}
