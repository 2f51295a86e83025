//! Queries on the `refresh_tokens` table: which refresh tokens were issued and which are spent.
//!
//! Token ids are bound as text and cast to `uuid` in SQL, which spares the workspace sqlx's
//! `uuid` feature for two statements.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Records a freshly issued refresh token, and forgets the user's expired ones so the table
/// does not grow without bound.
pub async fn record_issued(
    connection: &mut PgConnection,
    jti: Uuid,
    user_id: i64,
    expires_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1 AND expires_at < now()")
        .bind(user_id)
        .execute(&mut *connection)
        .await
        .with_context(|| format!("failed to purge expired refresh tokens of user {user_id}"))?;
    sqlx::query("INSERT INTO refresh_tokens (jti, user_id, expires_at) VALUES ($1::uuid, $2, $3)")
        .bind(jti.to_string())
        .bind(user_id)
        .bind(expires_at)
        .execute(&mut *connection)
        .await
        .with_context(|| format!("failed to record a refresh token of user {user_id}"))?;
    Ok(())
}

/// Marks the refresh token spent. False when it was never issued to this user or is spent
/// already: of two concurrent exchanges of one token, exactly one wins.
pub async fn consume(connection: &mut PgConnection, jti: Uuid, user_id: i64) -> anyhow::Result<bool> {
    let consumed = sqlx::query(
        "UPDATE refresh_tokens SET consumed_at = now() WHERE jti = $1::uuid AND user_id = $2 AND consumed_at IS NULL",
    )
    .bind(jti.to_string())
    .bind(user_id)
    .execute(&mut *connection)
    .await
    .with_context(|| format!("failed to consume a refresh token of user {user_id}"))?;
    Ok(consumed.rows_affected() == 1)
}

/// Begins a transaction (consume the old token and record the new one together, so a failure in
/// between never leaves the user with no valid refresh token).
pub async fn begin(pool: &PgPool) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    pool.begin().await.context("failed to begin a transaction")
}
