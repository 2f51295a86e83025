//! Stopping the inventory service while its consumers are stuck: a broker that accepts
//! connections and never answers (a cut link, a frozen node) leaves every consumer waiting in its
//! connect. The stop still ends at the drain limit (`common::runtime`): the consumers are aborted,
//! and what they held (nothing yet, here) stays in the broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::config::Settings as _;
use inventory_service::Config;

/// A broker that takes connections and never says a word; counts what it took.
async fn silent_broker() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("amqp://guest:guest@{}/%2f", listener.local_addr().unwrap());
    let taken = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&taken);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(connection);
        }
    });
    (url, taken)
}

#[tokio::test]
async fn consumers_stuck_on_a_silent_broker_do_not_hold_up_the_stop() {
    let server_url = shop_testkit_base::ServerUrls::from_environment().postgres;
    let database_name = format!("inventory_stop_{}", uuid::Uuid::new_v4().simple());
    let (broker_url, connections) = silent_broker().await;
    let mut config = Config::defaults();
    config.http.port = 0;
    config.http.drain_limit = Duration::from_millis(300);
    config.database_url = format!("{server_url}/{database_name}");
    config.rabbitmq_url = broker_url;
    let application = inventory_service::build(config).await.expect("the inventory service starts");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    // Every consumer (four) is waiting for the broker's first word.
    wait_until(|| connections.load(Ordering::SeqCst) >= 4).await;
    stop.send(()).unwrap();

    // Far longer than the limit: this only turns a stop that never ends into a failure.
    let result = tokio::time::timeout(Duration::from_secs(60), service).await;
    let result = result.expect("the service stopped although its consumers were stuck").expect("no panic");
    assert!(result.is_ok(), "{result:?}");

    let server = common::postgres::pool(&format!("{server_url}/postgres"), 1).await.unwrap();
    let statement = format!(r#"DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)"#);
    sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&server).await.unwrap();
    server.close().await;
}

/// Waits until `condition` holds (polling; the test's own timeout ends a wait that never does).
async fn wait_until(condition: impl Fn() -> bool) {
    while !condition() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
