//! Queries on the `addresses` table.
//!
//! Every write runs in a transaction that first locks the owner's `users` row. That serialises
//! the writes of one user, so "unset the old default, set the new one" cannot interleave with a
//! concurrent write of the same user; different users never wait for each other. The partial
//! unique index `addresses_one_default_per_user` backs the rule up.

use anyhow::Context;
use chrono::{DateTime, Utc};
use common::{ApiError, ApiResult};
use sqlx::{PgConnection, PgPool};

/// The partial unique index allowing one default address per user.
pub const ONE_DEFAULT_PER_USER_INDEX: &str = "addresses_one_default_per_user";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AddressRecord {
    pub id: i64,
    pub user_id: i64,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub state: String,
    pub postal_code: String,
    pub country: String,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
}

/// A validated new address.
#[derive(Debug)]
pub struct NewAddress {
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub state: String,
    pub postal_code: String,
    pub country: String,
    /// `None`: the address becomes the default only if the user has no default yet.
    pub is_default: Option<bool>,
}

/// Validated address changes; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct AddressChanges {
    pub line1: Option<String>,
    /// `Some(None)` clears the second line.
    pub line2: Option<Option<String>>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    pub is_default: Option<bool>,
}

const RETURNING_COLUMNS: &str = "id, user_id, line1, line2, city, state, postal_code, country, is_default, created_at";

/// The user's addresses, oldest first.
pub async fn list_for_user(pool: &PgPool, user_id: i64) -> anyhow::Result<Vec<AddressRecord>> {
    sqlx::query_as::<_, AddressRecord>(
        "SELECT id, user_id, line1, line2, city, state, postal_code, country, is_default, created_at
         FROM addresses WHERE user_id = $1 ORDER BY id",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await
    .with_context(|| format!("failed to list the addresses of user {user_id}"))
}

/// Adds an address; when it is the new default, the old default is unset in the same
/// transaction.
pub async fn insert(pool: &PgPool, user_id: i64, address: &NewAddress) -> ApiResult<AddressRecord> {
    let mut transaction = pool.begin().await.context("failed to begin a transaction")?;
    lock_owner(&mut transaction, user_id).await?;
    let is_default = match address.is_default {
        Some(is_default) => is_default,
        None => !has_default(&mut transaction, user_id).await?,
    };
    if is_default {
        unset_default(&mut transaction, user_id, None).await?;
    }
    let now = common::timestamp::now();
    let inserted = sqlx::query_as::<_, AddressRecord>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO addresses (user_id, line1, line2, city, state, postal_code, country, is_default, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
         RETURNING {RETURNING_COLUMNS}"
    )))
    .bind(user_id)
    .bind(&address.line1)
    .bind(&address.line2)
    .bind(&address.city)
    .bind(&address.state)
    .bind(&address.postal_code)
    .bind(&address.country)
    .bind(is_default)
    .bind(now)
    .fetch_one(&mut *transaction)
    .await;
    let inserted = inserted.map_err(|error| database_error(error, "failed to insert an address"))?;
    transaction.commit().await.context("failed to commit a new address")?;
    Ok(inserted)
}

/// Applies the changes to the user's address; `None` when the user has no such address (which
/// includes every other user's address).
pub async fn update(pool: &PgPool, user_id: i64, address_id: i64, changes: &AddressChanges) -> ApiResult<Option<AddressRecord>> {
    let mut transaction = pool.begin().await.context("failed to begin a transaction")?;
    lock_owner(&mut transaction, user_id).await?;
    if changes.is_default == Some(true) {
        unset_default(&mut transaction, user_id, Some(address_id)).await?;
    }
    let (line2_given, line2) = match &changes.line2 {
        Some(line2) => (true, line2.clone()),
        None => (false, None),
    };
    let updated = sqlx::query_as::<_, AddressRecord>(sqlx::AssertSqlSafe(format!(
        "UPDATE addresses SET
             line1 = COALESCE($3, line1),
             line2 = CASE WHEN $4 THEN $5 ELSE line2 END,
             city = COALESCE($6, city),
             state = COALESCE($7, state),
             postal_code = COALESCE($8, postal_code),
             country = COALESCE($9, country),
             is_default = COALESCE($10, is_default),
             updated_at = $11
         WHERE id = $1 AND user_id = $2
         RETURNING {RETURNING_COLUMNS}"
    )))
    .bind(address_id)
    .bind(user_id)
    .bind(&changes.line1)
    .bind(line2_given)
    .bind(line2)
    .bind(&changes.city)
    .bind(&changes.state)
    .bind(&changes.postal_code)
    .bind(&changes.country)
    .bind(changes.is_default)
    .bind(common::timestamp::now())
    .fetch_optional(&mut *transaction)
    .await
    .map_err(|error| database_error(error, "failed to update an address"))?;
    // No such address: dropping the transaction rolls back the default we may have unset.
    if updated.is_some() {
        transaction.commit().await.context("failed to commit an address update")?;
    }
    Ok(updated)
}

/// Deletes the user's address; false when the user has no such address.
pub async fn delete(pool: &PgPool, user_id: i64, address_id: i64) -> anyhow::Result<bool> {
    let result = sqlx::query("DELETE FROM addresses WHERE id = $1 AND user_id = $2")
        .bind(address_id)
        .bind(user_id)
        .execute(pool)
        .await
        .with_context(|| format!("failed to delete address {address_id} of user {user_id}"))?;
    Ok(result.rows_affected() > 0)
}

/// Locks the owner's row for the rest of the transaction. A user that no longer exists cannot
/// own addresses: that is a 401, as for any token whose user is gone.
async fn lock_owner(connection: &mut PgConnection, user_id: i64) -> ApiResult<()> {
    let active: Option<bool> = sqlx::query_scalar("SELECT is_active FROM users WHERE id = $1 FOR UPDATE")
        .bind(user_id)
        .fetch_optional(&mut *connection)
        .await
        .with_context(|| format!("failed to lock user {user_id}"))?;
    match active {
        Some(true) => Ok(()),
        _ => Err(ApiError::Unauthorized("Could not validate credentials: user not found or inactive".into())),
    }
}

async fn has_default(connection: &mut PgConnection, user_id: i64) -> anyhow::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM addresses WHERE user_id = $1 AND is_default)")
        .bind(user_id)
        .fetch_one(&mut *connection)
        .await
        .with_context(|| format!("failed to check for a default address of user {user_id}"))
}

/// Unsets the user's default address, except `keep` (the address about to become the default).
async fn unset_default(connection: &mut PgConnection, user_id: i64, keep: Option<i64>) -> anyhow::Result<()> {
    sqlx::query("UPDATE addresses SET is_default = FALSE WHERE user_id = $1 AND is_default AND id IS DISTINCT FROM $2")
        .bind(user_id)
        .bind(keep)
        .execute(&mut *connection)
        .await
        .with_context(|| format!("failed to unset the default address of user {user_id}"))?;
    Ok(())
}

/// The one-default index can only fire if a write path forgot `unset_default`; it is still a
/// 409 rather than a 500, because it describes a conflict with existing state.
fn database_error(error: sqlx::Error, context: &'static str) -> ApiError {
    match &error {
        sqlx::Error::Database(database) if database.constraint() == Some(ONE_DEFAULT_PER_USER_INDEX) => {
            ApiError::Conflict("The user already has a default address".into())
        }
        _ => ApiError::Internal(anyhow::Error::new(error).context(context)),
    }
}
