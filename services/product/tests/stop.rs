//! Stopping the product service while a request is in flight for ever: a catalog write whose
//! body never arrives in full (a client that stalls, a link that froze). The stop still ends at
//! the drain limit (`common::runtime`), with the request abandoned. The caller's token comes from
//! a real user service, whose key set the product service verifies it against.

use std::time::Duration;

use common::config::Settings as _;
use shop_testkit_base::Client;
use shop_testkit_base::model::Registration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A user service on a database of its own: its URL, and what stops it and removes the database.
async fn user_service(postgres: &str) -> (String, impl std::future::Future<Output = ()>) {
    let name = format!("product_stop_users_{}", uuid::Uuid::new_v4().simple());
    let key_path = std::env::temp_dir().join(format!("{name}.pem"));
    let mut config = user_service::Config::defaults();
    config.http.port = 0;
    config.database_url = format!("{postgres}/{name}");
    config.signing_key = user_service::SigningKeySource::File(key_path.clone());
    config.password_hashing = user_service::PasswordHashing { memory_kib: 64, iterations: 1, parallelism: 1 };
    let users = user_service::build(config).await.expect("the user service starts");
    let url = format!("http://127.0.0.1:{}", users.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(users.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let server = postgres.to_owned();
    let teardown = async move {
        let _ = stop.send(());
        running.await.expect("no panic").expect("the user service stops");
        let pool = common::postgres::pool(&format!("{server}/postgres"), 1).await.expect("PostgreSQL answers");
        let statement = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&pool).await.expect("the database drops");
        pool.close().await;
        let _ = std::fs::remove_file(&key_path);
    };
    (url, teardown)
}

#[tokio::test]
async fn a_write_whose_body_never_arrives_does_not_hold_up_the_stop() {
    let servers = shop_testkit_base::ServerUrls::from_environment();
    let (users_url, stop_users) = user_service(&servers.postgres).await;
    let registration = Registration::customer("writer@example.com", "Password123", "Slow", "Writer");
    let token = Client::new(&users_url).sign_up(&registration).await.expect("signed up").tokens.access_token;

    let database = format!("product_stop_{}", uuid::Uuid::new_v4().simple());
    let mut config = product_service::Config::defaults();
    config.http.port = 0;
    config.http.drain_limit = Duration::from_millis(300);
    config.mongodb_url = servers.mongodb.clone();
    config.mongodb_database = database.clone();
    config.rabbitmq_url = format!("{}/%2f", servers.rabbitmq);
    config.jwks_url = format!("{users_url}/api/v1/auth/jwks");
    let products = product_service::build(config).await.expect("the product service starts");
    let address = format!("127.0.0.1:{}", products.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(products.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    // `Expect: 100-continue`: the server says "100 Continue" once the handler reads the body, so
    // the request is known to be in flight (its token verified) before the stop.
    let mut client = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /api/v1/products/ HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\nexpect: 100-continue\r\n\r\n"
    );
    client.write_all(head.as_bytes()).await.unwrap();
    let mut continued = [0_u8; 25];
    client.read_exact(&mut continued).await.unwrap();
    assert!(continued.starts_with(b"HTTP/1.1 100 Continue"), "{}", String::from_utf8_lossy(&continued));
    client.write_all(br#"{"name": "Slow"#).await.unwrap();
    stop.send(()).unwrap();

    // Far longer than the limit: this only turns a stop that never ends into a failure.
    let result = tokio::time::timeout(Duration::from_secs(60), running).await;
    let result = result.expect("the service stopped although a request never finished").expect("no panic");
    assert!(result.is_ok(), "{result:?}");
    drop(client);

    stop_users.await;
    let mongodb = mongodb::Client::with_uri_str(&servers.mongodb).await.unwrap();
    mongodb.database(&database).drop().await.unwrap();
}
