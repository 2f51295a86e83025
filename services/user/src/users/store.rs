//! Queries on the `users` table.

use anyhow::Context;
use chrono::{DateTime, Utc};
use common::{ApiError, ApiResult};
use sqlx::PgPool;

/// The unique index on `lower(email)`; its violation is a duplicate registration.
pub const EMAIL_UNIQUE_INDEX: &str = "users_email_lower_key";

/// A user as stored, password hash included: never serialise this type.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
    pub is_active: bool,
    /// Granted by an operator (see [`set_staff`]).
    pub is_staff: bool,
    pub created_at: DateTime<Utc>,
}

/// A validated registration, password already hashed.
#[derive(Debug)]
pub struct NewUser {
    pub email: String,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
}

/// Validated profile changes; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ProfileChanges {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `Some(None)` clears the phone number.
    pub phone: Option<Option<String>>,
}

/// The columns of `UserRecord`. Queries are built from this constant only, never from input,
/// which is what `AssertSqlSafe` below asserts.
const USER_COLUMNS: &str = "id, email, password_hash, first_name, last_name, phone, is_active, is_staff, created_at";

/// Inserts the user. A duplicate email (in any case) is a 409, decided by the unique index in
/// the same statement, so two simultaneous registrations cannot both succeed.
pub async fn insert(pool: &PgPool, user: &NewUser) -> ApiResult<UserRecord> {
    let now = common::timestamp::now();
    let result = sqlx::query_as::<_, UserRecord>(
        "INSERT INTO users (email, password_hash, first_name, last_name, phone, is_active, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, TRUE, $6, $6)
         RETURNING id, email, password_hash, first_name, last_name, phone, is_active, is_staff, created_at",
    )
    .bind(&user.email)
    .bind(&user.password_hash)
    .bind(&user.first_name)
    .bind(&user.last_name)
    .bind(&user.phone)
    .bind(now)
    .fetch_one(pool)
    .await;
    match result {
        Ok(record) => Ok(record),
        Err(sqlx::Error::Database(error)) if error.constraint() == Some(EMAIL_UNIQUE_INDEX) => {
            Err(ApiError::Conflict("Email already registered".into()))
        }
        Err(error) => Err(anyhow::Error::new(error).context("failed to insert a user").into()),
    }
}

/// The user whose email matches, ignoring case.
pub async fn find_by_email(pool: &PgPool, email: &str) -> anyhow::Result<Option<UserRecord>> {
    // No registered email holds a control character (registration refuses them), and PostgreSQL
    // refuses a NUL in any text: such a login names nobody, like any unknown email.
    if email.chars().any(char::is_control) {
        return Ok(None);
    }
    sqlx::query_as::<_, UserRecord>(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1)"
    )))
    .bind(email)
    .fetch_optional(pool)
    .await
    .context("failed to look a user up by email")
}

pub async fn find_by_id(pool: &PgPool, user_id: i64) -> anyhow::Result<Option<UserRecord>> {
    sqlx::query_as::<_, UserRecord>(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")))
        .bind(user_id)
        .fetch_optional(pool)
        .await
        .with_context(|| format!("failed to load user {user_id}"))
}

/// Applies the changes and returns the updated user, or `None` if the user is gone.
pub async fn update_profile(pool: &PgPool, user_id: i64, changes: &ProfileChanges) -> anyhow::Result<Option<UserRecord>> {
    let (phone_given, phone) = match &changes.phone {
        Some(phone) => (true, phone.clone()),
        None => (false, None),
    };
    sqlx::query_as::<_, UserRecord>(
        "UPDATE users SET
             first_name = COALESCE($2, first_name),
             last_name = COALESCE($3, last_name),
             phone = CASE WHEN $4 THEN $5 ELSE phone END,
             updated_at = $6
         WHERE id = $1
         RETURNING id, email, password_hash, first_name, last_name, phone, is_active, is_staff, created_at",
    )
    .bind(user_id)
    .bind(&changes.first_name)
    .bind(&changes.last_name)
    .bind(phone_given)
    .bind(phone)
    .bind(common::timestamp::now())
    .fetch_optional(pool)
    .await
    .with_context(|| format!("failed to update the profile of user {user_id}"))
}

/// Grants (`true`) or revokes the staff role of the account `email` (any case): what an operator
/// does with `user-service staff grant|revoke EMAIL`. Takes effect at the account's next login or
/// refresh; access tokens already issued keep their roles until they expire. `false` when no
/// account has that email.
pub async fn set_staff(pool: &PgPool, email: &str, staff: bool) -> anyhow::Result<bool> {
    let changed = sqlx::query("UPDATE users SET is_staff = $2, updated_at = $3 WHERE lower(email) = lower($1)")
        .bind(email.trim())
        .bind(staff)
        .bind(common::timestamp::now())
        .execute(pool)
        .await
        .with_context(|| format!("failed to change the staff role of {email}"))?;
    Ok(changed.rows_affected() > 0)
}

/// The emails of the accounts an operator made staff, in order.
pub async fn staff(pool: &PgPool) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar("SELECT email FROM users WHERE is_staff ORDER BY lower(email)")
        .fetch_all(pool)
        .await
        .context("failed to list the staff accounts")
}
