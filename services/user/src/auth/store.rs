//! Queries on the `refresh_tokens` table: which refresh tokens were issued and which are spent.
//!
//! Token ids are bound as text and cast to `uuid` in SQL, which spares the workspace sqlx's
//! `uuid` feature for two statements.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Records a freshly issued refresh token of the family `family_id` (the login it descends
/// from), and forgets the user's expired ones so the table does not grow without bound.
pub async fn record_issued(
    connection: &mut PgConnection,
    jti: Uuid,
    family_id: Uuid,
    user_id: i64,
    expires_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1 AND expires_at < now()")
        .bind(user_id)
        .execute(&mut *connection)
        .await
        .with_context(|| format!("failed to purge expired refresh tokens of user {user_id}"))?;
    sqlx::query("INSERT INTO refresh_tokens (jti, family_id, user_id, expires_at) VALUES ($1::uuid, $2::uuid, $3, $4)")
        .bind(jti.to_string())
        .bind(family_id.to_string())
        .bind(user_id)
        .bind(expires_at)
        .execute(&mut *connection)
        .await
        .with_context(|| format!("failed to record a refresh token of user {user_id}"))?;
    Ok(())
}

/// What presenting a refresh token found.
#[derive(Debug, PartialEq, Eq)]
pub enum Consumption {
    /// It was live and is spent now; the new token joins this family.
    Consumed { family_id: Uuid },
    /// It was spent before: someone presents it a second time. Its family is `family_id`.
    Reused { family_id: Uuid },
    /// Revoked (by reuse detection or a logout), or never issued to this user.
    Refused,
}

/// Marks the refresh token spent, if it is live: of two concurrent exchanges of one token,
/// exactly one wins, and the other finds it reused.
pub async fn consume(connection: &mut PgConnection, jti: Uuid, user_id: i64) -> anyhow::Result<Consumption> {
    let context = || format!("failed to consume a refresh token of user {user_id}");
    let consumed: Option<(String,)> = sqlx::query_as(
        "UPDATE refresh_tokens SET consumed_at = now() \
         WHERE jti = $1::uuid AND user_id = $2 AND consumed_at IS NULL AND revoked_at IS NULL \
         RETURNING family_id::text",
    )
    .bind(jti.to_string())
    .bind(user_id)
    .fetch_optional(&mut *connection)
    .await
    .with_context(context)?;
    if let Some((family_id,)) = consumed {
        return Ok(Consumption::Consumed { family_id: family_id.parse().with_context(context)? });
    }
    let spent: Option<(String,)> = sqlx::query_as(
        "SELECT family_id::text FROM refresh_tokens WHERE jti = $1::uuid AND user_id = $2 AND consumed_at IS NOT NULL AND revoked_at IS NULL",
    )
    .bind(jti.to_string())
    .bind(user_id)
    .fetch_optional(&mut *connection)
    .await
    .with_context(context)?;
    Ok(match spent {
        Some((family_id,)) => Consumption::Reused { family_id: family_id.parse().with_context(context)? },
        None => Consumption::Refused,
    })
}

/// Revokes every refresh token of the family; how many were still live.
pub async fn revoke_family(pool: &PgPool, family_id: Uuid) -> anyhow::Result<u64> {
    let revoked = sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1::uuid AND revoked_at IS NULL")
        .bind(family_id.to_string())
        .execute(pool)
        .await
        .with_context(|| format!("failed to revoke the refresh-token family {family_id}"))?;
    Ok(revoked.rows_affected())
}

/// Revokes every refresh token of the user (a logout); how many were still live.
pub async fn revoke_all_of_user(pool: &PgPool, user_id: i64) -> anyhow::Result<u64> {
    let revoked = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL AND consumed_at IS NULL",
    )
    .bind(user_id)
    .execute(pool)
    .await
    .with_context(|| format!("failed to revoke the refresh tokens of user {user_id}"))?;
    Ok(revoked.rows_affected())
}

/// Begins a transaction (consume the old token and record the new one together, so a failure in
/// between never leaves the user with no valid refresh token).
pub async fn begin(pool: &PgPool) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    pool.begin().await.context("failed to begin a transaction")
}
