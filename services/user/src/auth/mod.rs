//! `/api/v1/auth`: registration, the OAuth2 password login, refresh-token exchange and the
//! public key set (JWKS) that every service verifies tokens against.
//!
//! A wrong email and a wrong password get the same answer, after the same amount of work, so
//! the login reveals nothing about which emails are registered. (Registration does reveal it,
//! with a 409 "Email already registered": someone signing up needs that answer, and it is the
//! contract. Rate limiting belongs in the gateway and is not done here.)

pub mod store;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::auth::TokenKind;
use common::extract::{Form, Json};
use common::{ApiError, ApiResult};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;
use crate::tokens::TokenPair;
use crate::users::UserResponse;
use crate::users::store::NewUser;
use crate::validation::{MAXIMUM_NAME_LENGTH, MAXIMUM_PASSWORD_LENGTH, Validator};

pub const TAG: &str = "auth";

const INCORRECT_CREDENTIALS: &str = "Incorrect email or password";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(key_set))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    #[schema(example = "customer@example.com")]
    pub email: String,
    /// At least 8 characters with a letter and a digit.
    #[schema(example = "Password123")]
    pub password: String,
    #[schema(example = "Example")]
    pub first_name: String,
    #[schema(example = "Customer")]
    pub last_name: String,
    #[schema(example = "555-123-4567")]
    pub phone: Option<String>,
}

/// The OAuth2 password grant's form: `username` is the email. Other OAuth2 fields
/// (`grant_type`, `scope`, `client_id`) are accepted and ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginForm {
    #[schema(example = "customer@example.com")]
    pub username: String,
    #[schema(example = "Password123")]
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// What a login or a refresh answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// Sent as `Authorization: Bearer ...`; valid for 30 minutes.
    pub access_token: String,
    /// Exchanged once at `/api/v1/auth/refresh` for a new pair; valid for 7 days.
    pub refresh_token: String,
    #[schema(example = "bearer")]
    pub token_type: &'static str,
}

impl From<TokenPair> for TokenResponse {
    fn from(pair: TokenPair) -> Self {
        Self { access_token: pair.access.token, refresh_token: pair.refresh.token, token_type: "bearer" }
    }
}

impl RegisterRequest {
    fn validate(&self) -> ApiResult<(String, Option<String>, String, String)> {
        let mut validator = Validator::new();
        let email = validator.email("email", &self.email);
        validator.new_password("password", &self.password);
        let first_name = validator.required_text("first_name", &self.first_name, MAXIMUM_NAME_LENGTH);
        let last_name = validator.required_text("last_name", &self.last_name, MAXIMUM_NAME_LENGTH);
        let phone = validator.optional_phone("phone", self.phone.as_deref());
        validator.finish()?;
        Ok((email, phone, first_name, last_name))
    }
}

/// Creates an account. The email must not be registered yet, in any letter case.
#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    tag = TAG,
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "The new user", body = UserResponse),
        (status = 409, description = "Email already registered", body = common::error::ErrorBody),
        (status = 422, description = "A field is missing or invalid; `detail` lists every problem", body = common::error::ErrorBody),
    )
)]
async fn register(
    State(state): State<AppState>,
    Json(request): Json<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<UserResponse>)> {
    let (email, phone, first_name, last_name) = request.validate()?;
    let password_hash = state.passwords.hash(&request.password).await?;
    let user = crate::users::store::insert(&state.pool, &NewUser { email, password_hash, first_name, last_name, phone }).await?;
    tracing::info!(user_id = user.id, "user registered");
    Ok((StatusCode::CREATED, Json(UserResponse::new(user, Vec::new()))))
}

/// The OAuth2 password login (`application/x-www-form-urlencoded`, `username` = email).
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = TAG,
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "An access and a refresh token", body = TokenResponse),
        (status = 401, description = "Incorrect email or password", body = common::error::ErrorBody),
        (status = 422, description = "`username` or `password` is missing", body = common::error::ErrorBody),
        (status = 429, description = "Too many wrong passwords for this account (or logins from this address, at the gateway); `Retry-After` says when to try again", body = common::error::ErrorBody),
    )
)]
async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> ApiResult<Json<TokenResponse>> {
    let email = form.username.trim();
    // Claimed before the password is checked: the attempt counts unless the login succeeds.
    if let Err(wait) = state.login_throttle.claim(email).await.map_err(anyhow::Error::from)? {
        tracing::warn!("login refused: too many wrong passwords for this account");
        return Err(ApiError::TooManyRequests {
            detail: "Too many failed login attempts for this account; try again later".into(),
            retry_after: wait,
        });
    }
    // Longer than any password we accept: refuse before spending argon2 time on it.
    if form.password.chars().count() > MAXIMUM_PASSWORD_LENGTH {
        return Err(ApiError::Unauthorized(INCORRECT_CREDENTIALS.into()));
    }
    let Some(user) = crate::users::store::find_by_email(&state.pool, email).await? else {
        state.passwords.verify_decoy(&form.password).await?;
        // Unknown emails count too: throttling must not tell which emails are registered.
        tracing::info!("login refused: unknown email");
        return Err(ApiError::Unauthorized(INCORRECT_CREDENTIALS.into()));
    };
    if !state.passwords.verify(&form.password, &user.password_hash).await? {
        tracing::info!(user_id = user.id, "login refused: wrong password");
        return Err(ApiError::Unauthorized(INCORRECT_CREDENTIALS.into()));
    }
    state.login_throttle.record_success(email).await.map_err(anyhow::Error::from)?;
    if !user.is_active {
        return Err(ApiError::Unauthorized("Inactive user".into()));
    }
    let pair = issue_recorded_pair(&state, user.id, &state.roles_of(&user), None).await?;
    tracing::info!(user_id = user.id, "user logged in");
    Ok(Json(pair.into()))
}

/// Exchanges a refresh token for a new access and refresh token. Each refresh token works once;
/// an access token here is a 401. Presenting a refresh token that was already exchanged is
/// taken as theft (two parties hold it): it is refused, and every refresh token descended from
/// the same login is revoked, the one its exchange issued included. Access tokens already issued
/// are not revocable (they are verified by every service on its own) and expire within 30
/// minutes.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = TAG,
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new access and refresh token", body = TokenResponse),
        (status = 401, description = "Not a valid, unused, unrevoked refresh token of an active user", body = common::error::ErrorBody),
    )
)]
async fn refresh(State(state): State<AppState>, Json(request): Json<RefreshRequest>) -> ApiResult<Json<TokenResponse>> {
    let claims = state.verifier.verify(request.refresh_token.trim(), TokenKind::Refresh).await?;
    let user = crate::users::active_user(&state, claims.user_id()?).await?;
    let jti = uuid::Uuid::parse_str(&claims.jti).map_err(|_| ApiError::Unauthorized("Could not validate credentials".into()))?;
    let pair = issue_recorded_pair(&state, user.id, &state.roles_of(&user), Some(jti)).await?;
    tracing::info!(user_id = user.id, "tokens refreshed");
    Ok(Json(pair.into()))
}

/// Ends the caller's sessions: every refresh token of theirs is revoked, so none can be
/// exchanged any more. Access tokens already issued expire within 30 minutes.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = TAG,
    security(("bearer" = []), ("oauth2" = [])),
    responses(
        (status = 204, description = "Every refresh token of the caller is revoked"),
        (status = 401, description = "Missing or invalid access token", body = common::error::ErrorBody),
    )
)]
async fn logout(State(state): State<AppState>, caller: common::auth::CurrentUser) -> ApiResult<StatusCode> {
    let revoked = store::revoke_all_of_user(&state.pool, caller.id).await?;
    tracing::info!(user_id = caller.id, revoked, "user logged out; refresh tokens revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Signs a pair and records its refresh token; when `consumed` is given, that refresh token is
/// spent in the same transaction, and the new one joins its family. A token spent already
/// revokes its family (see `refresh`); either way, a token that cannot be spent is a 401.
async fn issue_recorded_pair(
    state: &AppState,
    user_id: i64,
    roles: &[String],
    consumed: Option<uuid::Uuid>,
) -> ApiResult<TokenPair> {
    let pair = state.tokens.issue_pair(user_id, roles)?;
    let jti = uuid::Uuid::parse_str(&pair.refresh.claims.jti).map_err(anyhow::Error::from)?;
    let expires_at = chrono::DateTime::from_timestamp(pair.refresh.claims.exp, 0)
        .ok_or_else(|| anyhow::anyhow!("refresh token expiry out of range"))?;
    let mut transaction = store::begin(&state.pool).await?;
    // A login starts a family named after its first token.
    let family_id = match consumed {
        None => jti,
        Some(consumed) => match store::consume(&mut transaction, consumed, user_id).await? {
            store::Consumption::Consumed { family_id } => family_id,
            store::Consumption::Reused { family_id } => {
                drop(transaction);
                let revoked = store::revoke_family(&state.pool, family_id).await?;
                tracing::warn!(user_id, %family_id, revoked, "a refresh token was presented twice; its whole family is revoked");
                return Err(ApiError::Unauthorized("Could not validate credentials: refresh token already used".into()));
            }
            store::Consumption::Refused => {
                tracing::warn!(user_id, "refresh refused: token revoked or never issued");
                return Err(ApiError::Unauthorized("Could not validate credentials: refresh token revoked".into()));
            }
        },
    };
    store::record_issued(&mut transaction, jti, family_id, user_id, expires_at).await?;
    transaction.commit().await.map_err(|error| anyhow::Error::new(error).context("failed to commit issued tokens"))?;
    Ok(pair)
}

/// The public keys that verify every token (RS256, `use: sig`, `kid` = RFC 7638 thumbprint).
#[utoipa::path(
    get,
    path = "/api/v1/auth/jwks",
    tag = TAG,
    responses((status = 200, description = "A JSON Web Key Set", body = Object))
)]
async fn key_set(State(state): State<AppState>) -> Response {
    let mut response = axum::Json(state.tokens.key_set()).into_response();
    // Verifiers cache keys by kid and refetch on an unknown kid, so a short public cache is safe
    // and spares this service a request per token elsewhere. No longer than the verifiers' own
    // refresh (JWKS_REFRESH_SECONDS, 60): a removed key must not outlive it in a cache.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    response
}
