//! The user service's HTTP API against a real PostgreSQL: the rules the guide leaves to us and
//! that only show under concurrency or across users (one account per email in any case, one
//! default address, other users' addresses invisible, deactivated users locked out).
//!
//! Each test starts the service in-process on port 0 against its own database named after a
//! uuid, and drops that database at the end, also when the test fails.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use common::config::HttpSettings;
use futures::FutureExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection as _;
use user_service::{Config, PasswordHashing, SigningKeySource};

/// A running service, a client, and a direct connection pool for arranging and inspecting.
#[derive(Clone)]
struct TestApi {
    base_url: String,
    http: reqwest::Client,
    database: sqlx::PgPool,
}

fn postgres_server_url() -> String {
    shop_testkit_base::ServerUrls::from_environment().postgres
}

/// The one account configured as staff (`STAFF_EMAILS`) in these tests.
const STAFF_EMAIL: &str = "staff@shop.example";

/// The claims of a token, read without verifying it (the services verify; this reads).
fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).expect("a JWT has claims");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The service's configuration in these tests: its own database and key file, cheap hashing.
fn test_config(database_url: &str, key_path: std::path::PathBuf) -> Config {
    Config {
        http: HttpSettings {
            host: "127.0.0.1".into(),
            port: 0,
            inherited_listener: None,
            drain_limit: common::config::DEFAULT_DRAIN_LIMIT,
        },
        database_url: database_url.to_owned(),
        database_max_connections: 3,
        profile: common::config::Profile::Development,
        // Generated on first use: this also exercises the development key path.
        signing_key: SigningKeySource::File(key_path),
        key_reload: Duration::from_secs(10),
        access_token_ttl: Duration::from_secs(30 * 60),
        refresh_token_ttl: Duration::from_secs(7 * 24 * 60 * 60),
        password_hashing: PasswordHashing { memory_kib: 64, iterations: 1, parallelism: 1 },
        staff_emails: vec![STAFF_EMAIL.to_owned()],
    }
}

async fn with_api<Test, Outcome>(test: Test)
where
    Test: FnOnce(TestApi) -> Outcome,
    Outcome: Future<Output = ()>,
{
    let server_url = postgres_server_url();
    let database_name = format!("user_api_{}", uuid::Uuid::new_v4().simple());
    let database_url = format!("{server_url}/{database_name}");
    let key_path = std::env::temp_dir().join(format!("{database_name}.pem"));
    let config = test_config(&database_url, key_path.clone());
    let application = user_service::build(config).await.expect("the user service starts");
    let base_url = format!("http://127.0.0.1:{}", application.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let database = common::postgres::pool(&database_url, 2).await.expect("the test database is reachable");
    let api = TestApi { base_url, http: reqwest::Client::new(), database: database.clone() };

    let outcome = AssertUnwindSafe(test(api)).catch_unwind().await;

    database.close().await;
    let _ = stop.send(());
    server.await.expect("the server task does not panic").expect("the server stops cleanly");
    let mut connection = sqlx::PgConnection::connect(&format!("{server_url}/postgres")).await.expect("PostgreSQL is reachable");
    // The name is our own `user_api_<uuid>`, not input.
    let statement = format!(r#"DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)"#);
    sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut connection).await.expect("the test database drops");
    connection.close().await.ok();
    let _ = std::fs::remove_file(&key_path);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

impl TestApi {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn register(&self, email: &str) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/auth/register"))
            .json(&json!({"email": email, "password": "Password123", "first_name": "Example", "last_name": "Customer"}))
            .send()
            .await
            .expect("register answers")
    }

    /// Registers `email` and logs in; returns the access token.
    async fn customer(&self, email: &str) -> String {
        assert_eq!(self.register(email).await.status(), StatusCode::CREATED);
        self.log_in(email).await.expect("the new customer logs in")
    }

    async fn log_in(&self, email: &str) -> Result<String, StatusCode> {
        let response = self.log_in_with(email, "Password123").await;
        if response.status() != StatusCode::OK {
            return Err(response.status());
        }
        let tokens: Value = response.json().await.unwrap();
        Ok(tokens["access_token"].as_str().unwrap().to_owned())
    }

    async fn log_in_with(&self, email: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/auth/login"))
            .form(&[("username", email), ("password", password)])
            .send()
            .await
            .expect("login answers")
    }

    async fn send(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the service answers");
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
    }

    async fn add_address(&self, token: &str, line1: &str, is_default: Option<bool>) -> Value {
        let mut body =
            json!({"line1": line1, "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country"});
        if let Some(is_default) = is_default {
            body["is_default"] = json!(is_default);
        }
        let (status, address) = self.send(reqwest::Method::POST, "/api/v1/users/me/addresses", token, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{address}");
        address
    }

    async fn addresses(&self, token: &str) -> Vec<Value> {
        let (status, list) = self.send(reqwest::Method::GET, "/api/v1/users/me/addresses", token, None).await;
        assert_eq!(status, StatusCode::OK);
        list.as_array().unwrap().clone()
    }
}

fn defaults(addresses: &[Value]) -> Vec<String> {
    addresses
        .iter()
        .filter(|address| address["is_default"] == json!(true))
        .map(|address| address["line1"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_accounts_named_in_staff_emails_get_the_staff_role_in_every_token_and_nobody_else_does() {
    with_api(|api| async move {
        // Registered in another letter case than configured: emails compare case-insensitively.
        let staff = api.customer("Staff@Shop.Example").await;
        assert_eq!(claims_of(&staff)["roles"], json!(["staff"]), "{}", claims_of(&staff));
        let customer = api.customer("customer@example.com").await;
        assert!(claims_of(&customer).get("roles").is_none(), "{}", claims_of(&customer));

        // A refreshed pair keeps the role: it is decided again from the account, not copied.
        let login = api
            .http
            .post(api.url("/api/v1/auth/login"))
            .form(&[("username", "staff@shop.example"), ("password", "Password123")])
            .send()
            .await
            .unwrap();
        let tokens: Value = login.json().await.unwrap();
        assert_eq!(claims_of(tokens["refresh_token"].as_str().unwrap())["roles"], json!(["staff"]));
        let refreshed: Value = api
            .http
            .post(api.url("/api/v1/auth/refresh"))
            .json(&json!({ "refresh_token": tokens["refresh_token"] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(claims_of(refreshed["access_token"].as_str().unwrap())["roles"], json!(["staff"]), "{refreshed}");
    })
    .await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_in_different_cases_create_exactly_one_account() {
    with_api(|api| async move {
        let emails = [
            "race@example.com",
            "RACE@example.com",
            "Race@Example.com",
            "race@EXAMPLE.COM",
            "rAcE@example.com",
            "race@example.COM",
        ];
        let responses = futures::future::join_all(emails.iter().map(|email| api.register(email))).await;

        let mut statuses: Vec<StatusCode> = responses.iter().map(reqwest::Response::status).collect();
        statuses.sort();
        let mut expected = vec![StatusCode::CREATED];
        expected.extend(std::iter::repeat_n(StatusCode::CONFLICT, emails.len() - 1));
        assert_eq!(statuses, expected);
        let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&api.database).await.unwrap();
        assert_eq!(users, 1);
    })
    .await;
}

#[tokio::test]
async fn a_registration_answers_the_guides_fields_in_the_guides_order_and_stores_no_plain_password() {
    with_api(|api| async move {
        let text = api.register("customer@example.com").await.text().await.unwrap();
        let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&text).unwrap().keys().cloned().collect();
        // serde_json's Map sorts keys unless preserve_order is on, so check the raw text order.
        let positions: Vec<usize> = [
            "\"id\"",
            "\"email\"",
            "\"first_name\"",
            "\"last_name\"",
            "\"phone\"",
            "\"is_active\"",
            "\"created_at\"",
            "\"addresses\"",
        ]
        .iter()
        .map(|key| text.find(key).unwrap_or_else(|| panic!("{key} missing from {text}")))
        .collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "fields out of order: {text}");
        assert_eq!(keys.len(), 8, "unexpected fields in {text}");

        let stored: String = sqlx::query_scalar("SELECT password_hash FROM users").fetch_one(&api.database).await.unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("Password123"));
    })
    .await;
}

#[tokio::test]
async fn concurrent_new_default_addresses_leave_exactly_one_default() {
    with_api(|api| async move {
        let token = api.customer("customer@example.com").await;
        let lines: Vec<String> = (0..6).map(|number| format!("{number} Example Street")).collect();
        futures::future::join_all(lines.iter().map(|line| api.add_address(&token, line, Some(true)))).await;

        let addresses = api.addresses(&token).await;
        assert_eq!(addresses.len(), 6);
        assert_eq!(defaults(&addresses).len(), 1, "{addresses:?}");
    })
    .await;
}

#[tokio::test]
async fn a_first_address_becomes_the_default_unless_told_otherwise_and_later_ones_do_not() {
    with_api(|api| async move {
        let token = api.customer("customer@example.com").await;
        assert_eq!(api.add_address(&token, "First", None).await["is_default"], json!(true));
        assert_eq!(api.add_address(&token, "Second", None).await["is_default"], json!(false));
        assert_eq!(defaults(&api.addresses(&token).await), vec!["First"]);

        let other = api.customer("other@example.com").await;
        assert_eq!(api.add_address(&other, "Explicitly not", Some(false)).await["is_default"], json!(false));
        assert!(defaults(&api.addresses(&other).await).is_empty());
    })
    .await;
}

#[tokio::test]
async fn moving_the_default_with_an_update_unsets_the_old_default() {
    with_api(|api| async move {
        let token = api.customer("customer@example.com").await;
        api.add_address(&token, "Old default", Some(true)).await;
        let second = api.add_address(&token, "New default", Some(false)).await;

        let path = format!("/api/v1/users/me/addresses/{}", second["id"]);
        let (status, updated) = api.send(reqwest::Method::PUT, &path, &token, Some(json!({"is_default": true}))).await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        assert_eq!(updated["line1"], "New default", "fields left out keep their values");
        assert_eq!(defaults(&api.addresses(&token).await), vec!["New default"]);
    })
    .await;
}

#[tokio::test]
async fn another_customers_address_cannot_be_read_changed_or_deleted_and_the_attempt_changes_nothing() {
    with_api(|api| async move {
        let owner = api.customer("owner@example.com").await;
        let owned = api.add_address(&owner, "Owner Street", Some(true)).await;
        let intruder = api.customer("intruder@example.com").await;
        api.add_address(&intruder, "Intruder Street", Some(true)).await;

        let path = format!("/api/v1/users/me/addresses/{}", owned["id"]);
        let (status, body) =
            api.send(reqwest::Method::PUT, &path, &intruder, Some(json!({"line1": "Stolen", "is_default": true}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body, json!({"detail": "Address not found"}));
        let (status, _) = api.send(reqwest::Method::DELETE, &path, &intruder, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        assert_eq!(api.addresses(&owner).await, vec![owned]);
        // The failed update asked to become the default: the intruder's own default must have
        // survived, because the transaction that unset it was rolled back.
        assert_eq!(defaults(&api.addresses(&intruder).await), vec!["Intruder Street"]);
    })
    .await;
}

#[tokio::test]
async fn invalid_addresses_are_refused_with_every_reason_and_store_nothing() {
    with_api(|api| async move {
        let token = api.customer("customer@example.com").await;
        let body = json!({"line1": " ", "city": "Example City", "state": "", "postal_code": "1".repeat(21), "country": "Example Country"});
        let (status, error) = api.send(reqwest::Method::POST, "/api/v1/users/me/addresses", &token, Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let fields: Vec<&str> = error["detail"].as_array().unwrap().iter().map(|failure| failure["loc"][1].as_str().unwrap()).collect();
        assert_eq!(fields, vec!["line1", "state", "postal_code"]);
        assert!(api.addresses(&token).await.is_empty());

        let (status, _) = api.send(reqwest::Method::PUT, "/api/v1/users/me/addresses/not-a-number", &token, Some(json!({}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    })
    .await;
}

#[tokio::test]
async fn a_deactivated_customer_is_locked_out_although_their_token_is_still_validly_signed() {
    with_api(|api| async move {
        let token = api.customer("customer@example.com").await;
        sqlx::query("UPDATE users SET is_active = FALSE").execute(&api.database).await.unwrap();

        let (status, _) = api.send(reqwest::Method::GET, "/api/v1/users/me", &token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = api.send(reqwest::Method::GET, "/api/v1/users/me/addresses", &token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(api.log_in("customer@example.com").await, Err(StatusCode::UNAUTHORIZED));
    })
    .await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_the_bearer_scheme() {
    with_api(|api| async move {
        let document: Value = api.http.get(api.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
        for path in [
            "/api/v1/auth/register",
            "/api/v1/auth/login",
            "/api/v1/auth/refresh",
            "/api/v1/auth/jwks",
            "/api/v1/users/me",
            "/api/v1/users/me/addresses",
            "/api/v1/users/me/addresses/{address_id}",
        ] {
            assert!(document["paths"][path].is_object(), "{path} missing from the OpenAPI document");
        }
        assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        // Swagger UI's "Authorize" can log in with the password flow itself.
        assert_eq!(document["components"]["securitySchemes"]["oauth2"]["flows"]["password"]["tokenUrl"], "/api/v1/auth/login");
        assert_eq!(document["paths"]["/api/v1/users/me"]["get"]["security"], json!([{"bearer": []}, {"oauth2": []}]));
        // Every error answer has a schema: {"detail": a sentence, or a list of field errors}.
        assert_eq!(
            document["paths"]["/api/v1/auth/login"]["post"]["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        assert!(document["components"]["schemas"]["ErrorDetail"]["oneOf"].is_array(), "{}", document["components"]["schemas"]);
        assert!(
            document["paths"]["/api/v1/auth/login"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
                .is_object()
        );
        let docs = api.http.get(api.url("/api/v1/docs/")).send().await.unwrap();
        assert_eq!(docs.status(), StatusCode::OK);
    })
    .await;
}

/// A registration whose body never comes in full holds a request in flight for ever: the stop
/// still ends at the drain limit (`common::runtime`), with the request abandoned.
#[tokio::test]
async fn a_request_whose_body_never_arrives_does_not_hold_up_the_stop() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server_url = postgres_server_url();
    let database_name = format!("user_api_{}", uuid::Uuid::new_v4().simple());
    let database_url = format!("{server_url}/{database_name}");
    let key_path = std::env::temp_dir().join(format!("{database_name}.pem"));
    let mut config = test_config(&database_url, key_path.clone());
    config.http.drain_limit = Duration::from_millis(300);
    let application = user_service::build(config).await.expect("the user service starts");
    let address = format!("127.0.0.1:{}", application.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    // `Expect: 100-continue`: the server says "100 Continue" once the handler reads the body, so
    // the request is known to be in flight before the stop.
    let mut client = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = "POST /api/v1/auth/register HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
                content-length: 1000\r\nexpect: 100-continue\r\n\r\n";
    client.write_all(head.as_bytes()).await.unwrap();
    let mut continued = [0_u8; 25];
    client.read_exact(&mut continued).await.unwrap();
    assert!(continued.starts_with(b"HTTP/1.1 100 Continue"), "{}", String::from_utf8_lossy(&continued));
    client.write_all(br#"{"email": "slow@example.com""#).await.unwrap();
    stop.send(()).unwrap();

    // Far longer than the drain limit: this only turns a stop that never ends into a failure.
    let stopped = tokio::time::timeout(Duration::from_secs(60), server).await;
    let result = stopped.expect("the service stopped although a request never finished").expect("no panic");
    assert!(result.is_ok(), "{result:?}");
    drop(client);
    let mut connection = sqlx::PgConnection::connect(&format!("{server_url}/postgres")).await.expect("PostgreSQL is reachable");
    let statement = format!(r#"DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)"#);
    sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut connection).await.expect("the test database drops");
    let _ = std::fs::remove_file(&key_path);
}

/// Twenty wrong passwords for one account sent at once get five password checks between them,
/// not one each: each attempt is claimed, under the account's lock, before its password is
/// checked. The account is then throttled for the right password too, and another is not.
#[tokio::test]
async fn concurrent_wrong_passwords_for_one_account_get_the_allowed_checks_between_them() {
    with_api(|api| async move {
        api.customer("target@example.com").await;
        api.customer("bystander@example.com").await;
        let attempts = (0..20).map(|attempt| {
            let api = api.clone();
            async move { api.log_in_with("Target@Example.com", &format!("wrong-{attempt}")).await.status() }
        });
        let statuses = futures::future::join_all(attempts).await;
        let count = |status: StatusCode| statuses.iter().filter(|answered| **answered == status).count();
        assert_eq!(
            (count(StatusCode::UNAUTHORIZED), count(StatusCode::TOO_MANY_REQUESTS)),
            (5, 15),
            "5 wrong passwords checked, the rest throttled: {statuses:?}"
        );
        assert_eq!(api.log_in("target@example.com").await, Err(StatusCode::TOO_MANY_REQUESTS));
        assert!(api.log_in("bystander@example.com").await.is_ok(), "another account is not throttled");
        let (counted,): (i64,) = sqlx::query_as("SELECT count(*) FROM login_attempts WHERE email = 'target@example.com'")
            .fetch_one(&api.database)
            .await
            .unwrap();
        assert_eq!(counted, 5, "a throttled attempt is not counted");
    })
    .await;
}

/// A successful login clears its account's record; the failures before it stop counting.
#[tokio::test]
async fn a_successful_login_clears_the_accounts_failures() {
    with_api(|api| async move {
        api.customer("target@example.com").await;
        for attempt in 0..4 {
            assert_eq!(
                api.log_in_with("target@example.com", &format!("wrong-{attempt}")).await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
        assert!(api.log_in("target@example.com").await.is_ok());
        for attempt in 0..4 {
            assert_eq!(
                api.log_in_with("target@example.com", &format!("again-{attempt}")).await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
        assert!(api.log_in("target@example.com").await.is_ok(), "four failures since the success: not throttled");
    })
    .await;
}
