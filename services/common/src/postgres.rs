//! PostgreSQL helpers for the services that keep their data there: create the service's
//! database if it does not exist yet, then open a bounded pool.

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

/// A pool of at most `max_connections`, failing fast when the server is unreachable.
pub async fn pool(database_url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(database_url)
        .await
        .with_context(|| format!("failed to connect to {}", redact_password(database_url)))
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
