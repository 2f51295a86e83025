//! Token verification: every service verifies every token it accepts, itself.
//!
//! The user service signs RS256 tokens and publishes its public keys as a JWKS document. Every
//! other service fetches that document over HTTP, caches the keys by `kid`, and checks signature,
//! algorithm (RS256 only, so neither `alg: none` nor an HS256 token keyed with the public key can
//! pass), issuer, expiry and token type. This module does not sign anything: only the user service
//! holds a private key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};

use crate::error::ApiError;

/// The `iss` claim of every token the user service signs.
pub const ISSUER: &str = "user-service";

/// Seconds of clock skew tolerated on `exp`.
const EXPIRY_LEEWAY_SECONDS: u64 = 5;

/// A key set is fetched again at most this often, so a flood of tokens with made-up `kid`s
/// cannot turn into a flood of requests to the user service.
const MINIMUM_REFETCH_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Short-lived (30 minutes): sent as `Authorization: Bearer` on every call.
    Access,
    /// Long-lived (7 days): only ever exchanged at `POST /api/v1/auth/refresh`.
    Refresh,
}

impl std::fmt::Display for TokenKind {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            TokenKind::Access => "an access",
            TokenKind::Refresh => "a refresh",
        })
    }
}

/// The claims of every token the user service signs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id, as a decimal string.
    pub sub: String,
    #[serde(rename = "type")]
    pub kind: TokenKind,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    /// A unique id per token, so two tokens issued in the same second still differ.
    pub jti: String,
}

impl Claims {
    pub fn user_id(&self) -> Result<i64, AuthError> {
        self.sub.parse().map_err(|_| AuthError::Invalid("subject is not a user id".into()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Not authenticated")]
    Missing,
    #[error("Token has expired")]
    Expired,
    #[error("Could not validate credentials: {0}")]
    Invalid(String),
    #[error("Could not validate credentials: expected {expected} token")]
    WrongKind { expected: TokenKind },
    /// The key set could not be fetched: the user service is down, not the caller wrong.
    #[error("Token signing keys are unavailable: {0}")]
    KeysUnavailable(String),
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::KeysUnavailable(_) => ApiError::Unavailable(error.to_string()),
            other => ApiError::Unauthorized(other.to_string()),
        }
    }
}

/// Where the verifier's keys come from.
enum KeySource {
    /// Keys handed over at construction: the user service verifying its own tokens.
    Fixed,
    /// A JWKS document fetched over HTTP and cached.
    Jwks { url: String, http: reqwest::Client },
}

/// Verifies tokens. Cheap to share: keep one in an `Arc` in the service state.
pub struct TokenVerifier {
    source: KeySource,
    /// Decoding keys by `kid`, filled from the key source.
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// When the key set was last fetched; the lock also makes concurrent misses fetch once.
    last_fetch: Mutex<Option<Instant>>,
}

impl TokenVerifier {
    /// A verifier that fetches keys from `jwks_url` on first use and again when it meets an
    /// unknown `kid` (key rotation), never more often than every few seconds.
    pub fn from_jwks_url(jwks_url: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client with a timeout always builds");
        Self {
            source: KeySource::Jwks { url: jwks_url.into(), http },
            keys: RwLock::new(HashMap::new()),
            last_fetch: Mutex::new(None),
        }
    }

    /// A verifier for a key set already in hand.
    pub fn from_jwk_set(key_set: &JwkSet) -> anyhow::Result<Self> {
        Ok(Self { source: KeySource::Fixed, keys: RwLock::new(decoding_keys(key_set)?), last_fetch: Mutex::new(None) })
    }

    /// Checks signature, algorithm, issuer, expiry and kind, and returns the claims.
    pub async fn verify(&self, token: &str, expected: TokenKind) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|error| AuthError::Invalid(error.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Invalid(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let key_id = header.kid.ok_or_else(|| AuthError::Invalid("token has no key id".into()))?;
        let key = self.key(&key_id).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = EXPIRY_LEEWAY_SECONDS;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|error| match error.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid(error.to_string()),
        })?;
        if data.claims.kind != expected {
            return Err(AuthError::WrongKind { expected });
        }
        data.claims.user_id()?;
        Ok(data.claims)
    }

    async fn key(&self, key_id: &str) -> Result<DecodingKey, AuthError> {
        if let Some(key) = self.keys.read().await.get(key_id) {
            return Ok(key.clone());
        }
        let KeySource::Jwks { url, http } = &self.source else {
            return Err(AuthError::Invalid("unknown signing key".into()));
        };
        let mut last_fetch = self.last_fetch.lock().await;
        // Another request may have fetched while we waited for the lock.
        if let Some(key) = self.keys.read().await.get(key_id) {
            return Ok(key.clone());
        }
        let recently = last_fetch.is_some_and(|at| at.elapsed() < MINIMUM_REFETCH_INTERVAL);
        if !recently {
            let key_set = fetch_key_set(http, url).await?;
            let keys = decoding_keys(&key_set).map_err(|error| AuthError::KeysUnavailable(error.to_string()))?;
            *self.keys.write().await = keys;
            *last_fetch = Some(Instant::now());
        }
        self.keys.read().await.get(key_id).cloned().ok_or_else(|| AuthError::Invalid("unknown signing key".into()))
    }
}

async fn fetch_key_set(http: &reqwest::Client, url: &str) -> Result<JwkSet, AuthError> {
    let response = http.get(url).send().await.map_err(|error| AuthError::KeysUnavailable(format!("{url}: {error}")))?;
    if !response.status().is_success() {
        return Err(AuthError::KeysUnavailable(format!("{url} answered {}", response.status())));
    }
    response.json::<JwkSet>().await.map_err(|error| AuthError::KeysUnavailable(format!("{url}: {error}")))
}

fn decoding_keys(key_set: &JwkSet) -> anyhow::Result<HashMap<String, DecodingKey>> {
    let mut keys = HashMap::new();
    for jwk in &key_set.keys {
        let Some(key_id) = jwk.common.key_id.clone() else { continue };
        keys.insert(key_id, DecodingKey::from_jwk(jwk)?);
    }
    Ok(keys)
}

/// The verified caller of a request. Extracting it answers 401 for a missing, malformed, forged,
/// expired or refresh token.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: i64,
    pub claims: Claims,
}

impl<S> FromRequestParts<S> for CurrentUser
where
    Arc<TokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or(AuthError::Missing)?;
        let verifier = Arc::<TokenVerifier>::from_ref(state);
        let claims = verifier.verify(token, TokenKind::Access).await?;
        Ok(CurrentUser { id: claims.user_id()?, claims })
    }
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}
