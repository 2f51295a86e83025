//! PostgreSQL helpers for the services that keep their data there: create the service's
//! database if it does not exist yet, then open a bounded pool; give a service a role of its own
//! that owns its database and nothing else ([`provision`], what an administrator runs), and check
//! at start that a service does not run as more ([`check_role`]).

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// Creates the database named in `database_url` unless it exists, connecting to the server's
/// `postgres` database to do so. Lets a fresh machine, the test harness and `cargo xtask up` all
/// start a service against an empty server.
pub async fn ensure_database(database_url: &str) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(database_url).with_context(|| format!("invalid database URL {database_url}"))?;
    let database = options.get_database().unwrap_or("postgres").to_owned();
    let mut server = options.database("postgres").connect().await.context("failed to connect to PostgreSQL")?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&database)
        .fetch_one(&mut server)
        .await?;
    if !exists {
        let statement = format!(r#"CREATE DATABASE "{}""#, database.replace('"', "\"\""));
        // The name is quoted as an identifier above; it comes from our own configuration.
        match sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut server).await {
            Ok(_) => tracing::info!(%database, "created database"),
            // Two services or tests racing to create it: the other one won, which is fine.
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P04") => {}
            Err(error) => return Err(error).with_context(|| format!("failed to create database {database}")),
        }
    }
    server.close().await.ok();
    Ok(())
}

/// A service's own role and database, as [`provision`] makes them.
#[derive(Debug, Clone, Copy)]
pub struct OwnDatabase<'a> {
    pub role: &'a str,
    pub password: &'a str,
    pub database: &'a str,
}

/// As an administrator (`admin_url`, a role that may create roles and databases): makes `role` a
/// login role with `password` and no other power (not a superuser, cannot create roles or
/// databases), then makes `database` its own ([`provision_database`]). Idempotent: run it at every
/// deployment. A service's migrations then run as its role.
pub async fn provision(admin_url: &str, own: OwnDatabase<'_>) -> anyhow::Result<()> {
    provision_role(admin_url, own.role, own.password).await?;
    provision_database(admin_url, own.role, own.database).await
}

/// The role half of [`provision`]. Roles are the server's, shared by every database: two
/// provisionings of one role at the same moment may collide, so run it once per deployment.
pub async fn provision_role(admin_url: &str, role: &str, password: &str) -> anyhow::Result<()> {
    let mut server = administrator(admin_url, "postgres").await?;
    let role_name = identifier(role);
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)").bind(role).fetch_one(&mut server).await?;
    if !exists {
        let create = format!("CREATE ROLE {role_name} LOGIN");
        tolerate_race(sqlx::query(sqlx::AssertSqlSafe(create)).execute(&mut server).await, "42710")
            .with_context(|| format!("failed to create the role {role}"))?;
    }
    // A password is a literal, not a parameter, in ALTER ROLE.
    let alter =
        format!("ALTER ROLE {role_name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {}", literal(password));
    sqlx::query(sqlx::AssertSqlSafe(alter))
        .execute(&mut server)
        .await
        .with_context(|| format!("failed to set up the role {role}"))?;
    server.close().await.ok();
    Ok(())
}

async fn administrator(admin_url: &str, database: &str) -> anyhow::Result<sqlx::PgConnection> {
    let admin =
        PgConnectOptions::from_str(admin_url).with_context(|| format!("invalid database URL {}", redact_password(admin_url)))?;
    admin
        .database(database)
        .connect()
        .await
        .with_context(|| format!("failed to connect to PostgreSQL's {database} as its administrator"))
}

/// The database half of [`provision`]: `database` (created if missing) owned by `role`, with every
/// table and sequence already in it, and no other role but administrators allowed to connect.
pub async fn provision_database(admin_url: &str, role: &str, database: &str) -> anyhow::Result<()> {
    let mut server = administrator(admin_url, "postgres").await?;
    let (role_name, database_name) = (identifier(role), identifier(database));
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(database)
        .fetch_one(&mut server)
        .await?;
    if !exists {
        let create = format!("CREATE DATABASE {database_name} OWNER {role_name}");
        tolerate_race(sqlx::query(sqlx::AssertSqlSafe(create)).execute(&mut server).await, "42P04")
            .with_context(|| format!("failed to create the database {database}"))?;
    }
    for statement in [
        format!("ALTER DATABASE {database_name} OWNER TO {role_name}"),
        format!("REVOKE ALL ON DATABASE {database_name} FROM PUBLIC"),
        format!("GRANT CONNECT, TEMPORARY ON DATABASE {database_name} TO {role_name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut server)
            .await
            .with_context(|| format!("failed: {statement}"))?;
    }
    server.close().await.ok();

    // What a database made before its role holds (tables an earlier, superuser, deployment
    // migrated) becomes the role's, so that its next migration may change it.
    let mut inside = administrator(admin_url, database).await?;
    let owned_by_others: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND pg_get_userbyid(c.relowner) <> $1 \
         AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))",
    )
    .bind(role)
    .fetch_all(&mut inside)
    .await?;
    for (relation, kind) in owned_by_others {
        let what = match kind.as_str() {
            "S" => "SEQUENCE",
            "v" => "VIEW",
            "m" => "MATERIALIZED VIEW",
            _ => "TABLE",
        };
        let statement = format!("ALTER {what} public.{} OWNER TO {role_name}", identifier(&relation));
        sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut inside)
            .await
            .with_context(|| format!("failed: {statement}"))?;
    }
    inside.close().await.ok();
    Ok(())
}

/// What [`check_role`] found wrong with the role a service runs as.
pub async fn check_role(pool: &PgPool, profile: crate::config::Profile) -> anyhow::Result<()> {
    let (role, superuser, creates_roles): (String, bool, bool) =
        sqlx::query_as("SELECT rolname::text, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user")
            .fetch_one(pool)
            .await
            .context("failed to read the service's database role")?;
    if !superuser && !creates_roles {
        return Ok(());
    }
    let problem = format!(
        "DATABASE_URL logs in as {role:?}, which {}: a service's role owns its database and nothing else \
         (see common::postgres::provision)",
        if superuser { "is a superuser" } else { "may create roles" }
    );
    match profile {
        crate::config::Profile::Production => anyhow::bail!("APP_ENV=production refuses to start: {problem}"),
        crate::config::Profile::Development => {
            tracing::warn!("{problem}; allowed in development only");
            Ok(())
        }
    }
}

/// `outcome`, or `Ok` when it failed with `code` (another provisioning made the same thing first).
fn tolerate_race<T>(outcome: Result<T, sqlx::Error>, code: &str) -> Result<(), sqlx::Error> {
    match outcome {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some(code) => Ok(()),
        Err(error) => Err(error),
    }
}

/// `name` quoted as an SQL identifier.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` quoted as an SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A pool of at most `max_connections`, failing fast when the server is unreachable.
pub async fn pool(database_url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(database_url)
        .await
        .with_context(|| format!("failed to connect to {}", redact_password(database_url)))
}

/// What `pool` holds now, for `/metrics` (see [`crate::metrics::Metrics::watch_pool`]). sqlx
/// does not tell how many requests wait for a connection; one that waits longer than the acquire
/// timeout fails as a store outage (503 and the consumers' pause).
pub fn usage(pool: &PgPool) -> crate::metrics::PoolUsage {
    let open = u64::from(pool.size());
    let idle = u64::try_from(pool.num_idle()).unwrap_or(u64::MAX).min(open);
    crate::metrics::PoolUsage {
        in_use: open - idle,
        idle,
        max: u64::from(pool.options().get_max_connections()),
        waiting: None,
        checkout_failures: None,
    }
}

fn redact_password(database_url: &str) -> String {
    match url::Url::parse(database_url) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => database_url.to_owned(),
    }
}
