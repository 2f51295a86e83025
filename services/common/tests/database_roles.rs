//! A service's own database role against a real PostgreSQL: `common::postgres::provision` makes a
//! role that owns its database and nothing else (it cannot reach another service's database,
//! create databases or roles), takes over what an earlier superuser deployment left in its
//! database, and may be run again; `check_role` refuses a superuser in production.
//!
//! The server is `E2E_POSTGRES_URL`, whose user may create roles and databases. Each test makes
//! roles and databases of its own and drops them.

use common::config::Profile;
use common::postgres::{OwnDatabase, check_role, provision};
use sqlx::{Connection, PgConnection};

struct Owned {
    role: String,
    database: String,
}

impl Owned {
    fn new(what: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self { role: format!("e2e_role_{what}_{}", &id[..12]), database: format!("e2e_roles_{what}_{}", &id[..12]) }
    }

    fn own(&self) -> OwnDatabase<'_> {
        OwnDatabase { role: &self.role, password: "a-password", database: &self.database }
    }

    /// The role's URL to `database`.
    fn url_to(&self, database: &str) -> String {
        let mut url = url::Url::parse(&admin_url()).unwrap();
        url.set_username(&self.role).unwrap();
        url.set_password(Some("a-password")).unwrap();
        url.set_path(database);
        url.to_string()
    }
}

fn admin_url() -> String {
    shop_testkit_base::ServerUrls::from_environment().postgres
}

async fn admin(database: &str) -> PgConnection {
    PgConnection::connect(&format!("{}/{database}", admin_url())).await.expect("the administrator connects")
}

async fn execute(connection: &mut PgConnection, statement: &str) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned())).execute(connection).await.map(drop)
}

async fn drop_all(owned: &[&Owned]) {
    let mut server = admin("postgres").await;
    for owned in owned {
        execute(&mut server, &format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, owned.database)).await.unwrap();
        execute(&mut server, &format!(r#"DROP ROLE IF EXISTS "{}""#, owned.role)).await.unwrap();
    }
}

fn denied(outcome: Result<impl std::fmt::Debug, sqlx::Error>, what: &str) {
    let error = outcome.expect_err(what).to_string();
    assert!(error.contains("permission denied") || error.contains("must be superuser"), "{what}: {error}");
}

#[tokio::test]
async fn a_services_role_owns_its_database_and_nothing_else() {
    let (users, inventory) = (Owned::new("users"), Owned::new("inventory"));
    provision(&admin_url(), users.own()).await.expect("provisioned");
    provision(&admin_url(), inventory.own()).await.expect("provisioned");

    // Its migrations run as it: it creates and changes tables in its own database.
    let mut own = PgConnection::connect(&users.url_to(&users.database)).await.expect("the role connects to its database");
    execute(&mut own, "CREATE TABLE accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text)").await.unwrap();
    execute(&mut own, "ALTER TABLE accounts ADD COLUMN staff boolean NOT NULL DEFAULT false").await.unwrap();
    execute(&mut own, "INSERT INTO accounts (email) VALUES ('a@example.com')").await.unwrap();

    // Nothing else: another service's database, new databases, new roles, and superuser powers.
    denied(PgConnection::connect(&users.url_to(&inventory.database)).await, "the users role reaches inventory's database");
    denied(execute(&mut own, "CREATE DATABASE e2e_roles_not_allowed").await, "the role creates a database");
    denied(execute(&mut own, "CREATE ROLE e2e_roles_not_allowed").await, "the role creates a role");
    denied(execute(&mut own, "COPY accounts TO PROGRAM 'true'").await, "the role runs a program on the server");
    own.close().await.ok();

    let pool = common::postgres::pool(&users.url_to(&users.database), 1).await.unwrap();
    check_role(&pool, Profile::Production).await.expect("its own role passes in production");
    pool.close().await;
    drop_all(&[&users, &inventory]).await;
}

#[tokio::test]
async fn production_refuses_a_superuser_and_development_lets_it_run() {
    let pool = common::postgres::pool(&format!("{}/postgres", admin_url()), 1).await.unwrap();
    let refused = check_role(&pool, Profile::Production).await.expect_err("a superuser in production").to_string();
    assert!(refused.contains("is a superuser") && refused.contains("APP_ENV=production"), "{refused}");
    check_role(&pool, Profile::Development).await.expect("development warns only");
    pool.close().await;
}

/// A role that is no superuser but may create roles could make itself another's: refused in
/// production like a superuser.
#[tokio::test]
async fn production_refuses_a_role_that_may_create_roles() {
    let creator = Owned::new("creator");
    provision(&admin_url(), creator.own()).await.expect("provisioned");
    let mut server = admin("postgres").await;
    execute(&mut server, &format!(r#"ALTER ROLE "{}" CREATEROLE"#, creator.role)).await.unwrap();
    server.close().await.ok();

    let pool = common::postgres::pool(&creator.url_to(&creator.database), 1).await.unwrap();
    let refused = check_role(&pool, Profile::Production).await.expect_err("a role that may create roles").to_string();
    assert!(refused.contains("may create roles") && refused.contains(&creator.role), "{refused}");
    check_role(&pool, Profile::Development).await.expect("development warns only");
    pool.close().await;
    drop_all(&[&creator]).await;
}

#[tokio::test]
async fn a_database_an_earlier_deployment_migrated_as_a_superuser_becomes_the_roles_and_provisioning_again_changes_nothing() {
    let inventory = Owned::new("earlier");
    let mut server = admin("postgres").await;
    execute(&mut server, &format!(r#"CREATE DATABASE "{}""#, inventory.database)).await.unwrap();
    let mut inside = admin(&inventory.database).await;
    execute(&mut inside, "CREATE TABLE stock (product_id text PRIMARY KEY, available bigint NOT NULL)").await.unwrap();
    execute(&mut inside, "CREATE TABLE history (id bigserial PRIMARY KEY, product_id text NOT NULL)").await.unwrap();
    execute(&mut inside, "INSERT INTO stock VALUES ('p', 5)").await.unwrap();
    inside.close().await.ok();

    provision(&admin_url(), inventory.own()).await.expect("provisioned");
    provision(&admin_url(), inventory.own()).await.expect("provisioned again");
    let mut own = PgConnection::connect(&inventory.url_to(&inventory.database)).await.expect("connects");
    // Its next migration changes the tables made before it existed, and its rows are intact.
    execute(&mut own, "ALTER TABLE stock ADD COLUMN reserved bigint NOT NULL DEFAULT 0").await.unwrap();
    execute(&mut own, "INSERT INTO history (product_id) VALUES ('p')").await.unwrap();
    let available: i64 =
        sqlx::query_scalar("SELECT available FROM stock WHERE product_id = 'p'").fetch_one(&mut own).await.unwrap();
    assert_eq!(available, 5);
    own.close().await.ok();
    server.close().await.ok();
    drop_all(&[&inventory]).await;
}
