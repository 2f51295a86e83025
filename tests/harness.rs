//! Tests of the harness's own mechanisms: a check in the harness that
//! cannot fail is as much a defect as one in the services.

use std::time::Duration;

use shop_testkit_base::eventually::eventually;

#[tokio::test]
async fn eventually_gives_up_at_its_deadline_even_while_a_probe_hangs() {
    // A probe that never answers (a request to a service that accepted the connection and went
    // silent) must not keep the wait beyond its deadline.
    let waiting = tokio::spawn(eventually(Duration::from_millis(300), "a probe that hangs", || {
        std::future::pending::<Result<(), String>>()
    }));
    let outcome = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("eventually waited for the hanging probe instead of keeping its deadline");
    let panic = outcome.expect_err("a probe that never succeeds must fail the wait").into_panic();
    let message = panic.downcast_ref::<String>().expect("the failure says what was awaited");
    assert!(message.contains("a probe that hangs did not happen within 300ms"), "{message}");
    assert!(message.contains("still waiting for its answer at the deadline"), "{message}");
}

#[tokio::test]
async fn eventually_retries_failed_probes_and_returns_the_first_success() {
    let mut attempts = 0;
    let value = eventually(Duration::from_secs(10), "the third attempt", || {
        attempts += 1;
        let attempt = attempts;
        async move { if attempt < 3 { Err(format!("connection refused (attempt {attempt})")) } else { Ok(attempt) } }
    })
    .await;
    assert_eq!(value, 3);
}

#[tokio::test]
async fn eventually_reports_the_last_value_it_saw() {
    let waiting = tokio::spawn(eventually(Duration::from_millis(200), "status paid", || async {
        Err::<(), _>("status pending".to_owned())
    }));
    let panic = waiting.await.expect_err("never paid").into_panic();
    let message = panic.downcast_ref::<String>().expect("a message");
    assert!(message.ends_with("last seen: status pending"), "{message}");
}

// The tests below need the servers (`E2E_POSTGRES_URL` and the others, as every test target):
// the harness's own mechanisms that act on them.

/// Each system signs with a key of its own: a token the user service of one scenario issued is
/// refused by another scenario's shop running at the same time (with one key per process, as
/// before, it was accepted: both systems trusted the same key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_one_running_system_is_refused_by_another() {
    use shop_testkit::system::{Setup, System};
    use shop_testkit_base::Client;
    use shop_testkit_base::model::Registration;

    let first = System::start(&Setup::default()).await.expect("the first system starts");
    let second = System::start(&Setup::default()).await.expect("the second system starts");
    assert_ne!(first.signing_key_fingerprint(), second.signing_key_fingerprint(), "two live systems share a signing key");

    let email = "keys@example.com";
    let first_gateway = Client::new(first.gateway_url());
    let second_gateway = Client::new(second.gateway_url());
    for gateway in [&first_gateway, &second_gateway] {
        gateway.register(&Registration::customer(email, "Password123", "Key", "Holder")).await.expect("registered");
    }
    let token = first_gateway.log_in(email, "Password123").await.expect("logged in").access_token;
    let http = reqwest::Client::new();
    let status_at = |gateway: String| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            http.get(format!("{gateway}/api/v1/users/me")).bearer_auth(token).send().await.expect("answers").status().as_u16()
        }
    };
    assert_eq!(status_at(first.gateway_url()).await, 200, "the token works where it was issued");
    assert_eq!(status_at(second.gateway_url()).await, 401, "another system accepted a token it never issued");

    let expectations = shop_testkit::teardown::Expectations::default();
    shop_testkit::teardown::tear_down(first, &expectations).await;
    shop_testkit::teardown::tear_down(second, &expectations).await;
}

/// The sweep removes the databases and vhost of a system nobody owns, and leaves alone one this
/// process claimed and one something is connected to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_removes_only_what_no_running_process_owns() {
    use sqlx::Connection as _;
    let infrastructure = shop_testkit::infrastructure::get().await;
    let management = shop_testkit_base::management::Management::new(infrastructure.rabbitmq_management_login());
    let mongodb = mongodb::Client::with_uri_str(&infrastructure.mongodb).await.expect("MongoDB client");
    let fresh_id = || uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let (abandoned, claimed, connected) = (fresh_id(), fresh_id(), fresh_id());

    let mut server = sqlx::PgConnection::connect(&format!("{}/postgres", infrastructure.postgres)).await.expect("PostgreSQL");
    for id in [&abandoned, &claimed, &connected] {
        for service in ["users", "inventory"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "e2e_{id}_{service}""#)))
                .execute(&mut server)
                .await
                .expect("database created");
        }
        mongodb
            .database(&format!("e2e_{id}_orders"))
            .collection::<bson::Document>("orders")
            .insert_one(bson::doc! { "status": "paid" })
            .await
            .expect("MongoDB database created");
        management.create_vhost(&format!("e2e-{id}")).await.expect("vhost created");
    }
    shop_testkit::sweep::claim(&claimed);
    // A system of another machine's run, say: unclaimed here, but connected to its database.
    let holding =
        sqlx::PgConnection::connect(&format!("{}/e2e_{connected}_inventory", infrastructure.postgres)).await.expect("connected");

    let report = shop_testkit::sweep::sweep(infrastructure, Duration::from_secs(1)).await.expect("the sweep runs");
    println!("{}", report.describe());

    let databases: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database").fetch_all(&mut server).await.expect("listed");
    let mongodb_databases = mongodb.list_database_names().await.expect("listed");
    let vhosts = management.request(reqwest::Method::GET, "/api/vhosts", None).await.expect("listed").to_string();
    let has_data = |id: &str| {
        (
            databases.contains(&format!("e2e_{id}_users")),
            mongodb_databases.contains(&format!("e2e_{id}_orders")),
            vhosts.contains(&format!("\"e2e-{id}\"")),
        )
    };
    let (abandoned_data, claimed_data, connected_data) = (has_data(&abandoned), has_data(&claimed), has_data(&connected));

    // Clean up what the sweep rightly kept, before asserting.
    drop(holding);
    for id in [&claimed, &connected] {
        for service in ["users", "inventory"] {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(r#"DROP DATABASE IF EXISTS "e2e_{id}_{service}" WITH (FORCE)"#)))
                .execute(&mut server)
                .await;
        }
        let _ = mongodb.database(&format!("e2e_{id}_orders")).drop().await;
        let _ = management.delete_vhost(&format!("e2e-{id}")).await;
    }
    assert!(report.removed.contains(&abandoned), "{}", report.describe());
    assert_eq!(abandoned_data, (false, false, false), "the abandoned system's data is still there");
    assert_eq!(claimed_data, (true, true, true), "the sweep removed data of a system this process owns");
    assert_eq!(connected_data, (true, true, true), "the sweep removed data of a system something is connected to");
}
