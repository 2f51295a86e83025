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
use tokio::sync::Mutex;

use crate::error::ApiError;

/// The `iss` claim of every token the user service signs.
pub const ISSUER: &str = "user-service";

/// The role of the shop's own people: catalog and stock writes, and the order transitions of
/// fulfilment and support (shipped, delivered, refunded) on any customer's order.
pub const STAFF_ROLE: &str = "staff";

/// Seconds of clock skew tolerated on `exp`.
const EXPIRY_LEEWAY_SECONDS: u64 = 5;

/// How a verifier that fetches its keys (see [`TokenVerifier::from_jwks_url`]) paces its fetches,
/// so that the user service being away costs each request at most [`Self::fetch_timeout`] and
/// one fetch at a time, and a key it stops publishing stops being trusted in a bounded time.
#[derive(Debug, Clone, Copy)]
pub struct KeyFetching {
    /// How long one fetch of the key set may take, and how long a request waits for a fetch
    /// another request started before it is answered 503. Default 2 s.
    pub fetch_timeout: Duration,
    /// How long a failed fetch is remembered: meanwhile a token with a key id the verifier does
    /// not know is answered 503 at once, without another fetch. Default 5 s.
    pub failure_memory: Duration,
    /// How old the keys may get before a request fetches them again (without waiting for it:
    /// the request uses the keys it has). A key the user service stopped publishing is refused
    /// at most this long (plus one fetch) after. Keys are kept, and used, while fetches fail, so
    /// valid tokens keep working while the user service is down. Default 60 s
    /// (`JWKS_REFRESH_SECONDS`, see [`crate::config::key_fetching`]).
    pub refresh_interval: Duration,
    /// The shortest time between two fetches caused by unknown key ids, so that a flood of
    /// tokens with made-up `kid`s cannot turn into a flood of requests to the user service; an
    /// unknown key id within it is refused (401) at once. Default 5 s.
    pub minimum_refetch_interval: Duration,
}

impl Default for KeyFetching {
    fn default() -> Self {
        Self {
            fetch_timeout: Duration::from_secs(2),
            failure_memory: Duration::from_secs(5),
            refresh_interval: Duration::from_secs(60),
            minimum_refetch_interval: Duration::from_secs(5),
        }
    }
}

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
    /// What the holder may do beyond a customer's own business: [`STAFF_ROLE`] or nothing.
    /// Absent from customers' tokens, and read as empty from tokens signed before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

impl Claims {
    /// Whether the token carries the staff role.
    pub fn is_staff(&self) -> bool {
        self.roles.iter().any(|role| role == STAFF_ROLE)
    }

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
            AuthError::KeysUnavailable(_) => {
                ApiError::unavailable("Token signing keys are unavailable; try again shortly", &error)
            }
            other => ApiError::Unauthorized(other.to_string()),
        }
    }
}

/// Where the verifier's keys come from.
enum KeySource {
    /// Keys handed over at construction: the user service verifying its own tokens.
    Fixed,
    /// A JWKS document fetched over HTTP and cached.
    Jwks { url: String, http: reqwest::Client, pacing: KeyFetching },
}

/// The keys a verifier holds, and what its fetches did.
#[derive(Default)]
struct KeyCache {
    /// Decoding keys by `kid`.
    keys: HashMap<String, DecodingKey>,
    /// When the keys were last fetched successfully.
    fetched_at: Option<Instant>,
    /// When a fetch last failed, and why (logged and kept for the 503's log line, never sent).
    failed: Option<(Instant, String)>,
}

/// What a verifier knows about one key id, read from its cache at one instant.
struct KeyLookup {
    key: Option<DecodingKey>,
    /// The keys are younger than the refresh interval.
    fresh: bool,
    /// Why the last fetch failed, if it failed within the failure memory.
    recent_failure: Option<String>,
    /// The keys were fetched within the minimum refetch interval.
    fetched_recently: bool,
}

impl KeyLookup {
    /// The answer when no fetch is due: the key, a fetch that failed recently (503), or keys
    /// fetched so recently that an unknown key id is refused (401) without another.
    fn answer_without_fetching(self) -> Option<Result<DecodingKey, AuthError>> {
        if let Some(key) = self.key {
            return Some(Ok(key));
        }
        if let Some(reason) = self.recent_failure {
            return Some(Err(AuthError::KeysUnavailable(reason)));
        }
        self.fetched_recently.then(|| Err(AuthError::Invalid("unknown signing key".into())))
    }
}

/// Verifies tokens. Cheap to share: keep one in an `Arc` in the service state.
pub struct TokenVerifier {
    source: KeySource,
    /// The keys and the outcome of the fetches. Never held across an await.
    cache: std::sync::RwLock<KeyCache>,
    /// Held by the one request fetching the key set: one fetch at a time per verifier.
    fetching: Mutex<()>,
}

impl TokenVerifier {
    /// A verifier that fetches keys from `jwks_url` on first use, again when it meets an
    /// unknown `kid` (key rotation), and every few minutes, paced as [`KeyFetching::default`].
    pub fn from_jwks_url(jwks_url: impl Into<String>) -> Self {
        Self::from_jwks_url_with(jwks_url, KeyFetching::default())
    }

    /// [`Self::from_jwks_url`] paced by `pacing`.
    pub fn from_jwks_url_with(jwks_url: impl Into<String>, pacing: KeyFetching) -> Self {
        let http = reqwest::Client::builder()
            .timeout(pacing.fetch_timeout)
            .build()
            .expect("an HTTP client with a timeout always builds");
        Self {
            source: KeySource::Jwks { url: jwks_url.into(), http, pacing },
            cache: std::sync::RwLock::new(KeyCache::default()),
            fetching: Mutex::new(()),
        }
    }

    /// A verifier for a key set already in hand.
    pub fn from_jwk_set(key_set: &JwkSet) -> anyhow::Result<Self> {
        let cache = KeyCache { keys: decoding_keys(key_set)?, ..KeyCache::default() };
        Ok(Self { source: KeySource::Fixed, cache: std::sync::RwLock::new(cache), fetching: Mutex::new(()) })
    }

    /// Replaces the keys of a verifier made [`Self::from_jwk_set`] (the user service, after it
    /// reloads its key directory): tokens signed by a key no longer in `key_set` are refused from
    /// now on. A verifier that fetches its keys ignores this: they are the publisher's to say.
    pub fn replace_keys(&self, key_set: &JwkSet) -> anyhow::Result<()> {
        if matches!(self.source, KeySource::Fixed) {
            let keys = decoding_keys(key_set)?;
            self.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner).keys = keys;
        }
        Ok(())
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

    fn look_up(&self, key_id: &str, pacing: &KeyFetching) -> KeyLookup {
        let cache = self.cache.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let within = |at: Option<Instant>, span: Duration| at.is_some_and(|at| at.elapsed() < span);
        KeyLookup {
            key: cache.keys.get(key_id).cloned(),
            fresh: within(cache.fetched_at, pacing.refresh_interval),
            recent_failure: cache
                .failed
                .as_ref()
                .filter(|(at, _)| at.elapsed() < pacing.failure_memory)
                .map(|(_, reason)| reason.clone()),
            fetched_recently: within(cache.fetched_at, pacing.minimum_refetch_interval),
        }
    }

    async fn key(&self, key_id: &str) -> Result<DecodingKey, AuthError> {
        let unknown = || AuthError::Invalid("unknown signing key".into());
        let KeySource::Jwks { url, http, pacing } = &self.source else {
            return self.look_up(key_id, &KeyFetching::default()).key.ok_or_else(unknown);
        };
        let found = self.look_up(key_id, pacing);
        if let Some(key) = found.key {
            if found.fresh || found.recent_failure.is_some() {
                return Ok(key);
            }
            // Old keys: fetch them again if no other request is, without waiting for one that
            // is. A failed fetch keeps the old keys; a successful one may have dropped this key.
            if let Ok(_turn) = self.fetching.try_lock() {
                let _ = self.fetch(http, url).await;
            }
            return match self.look_up(key_id, pacing).key {
                Some(key) => Ok(key),
                None => Err(unknown()),
            };
        }
        if let Some(answer) = found.answer_without_fetching() {
            return answer;
        }
        // One fetch at a time: wait for the one in progress, at most one fetch's time.
        let Ok(_turn) = tokio::time::timeout(pacing.fetch_timeout, self.fetching.lock()).await else {
            return Err(AuthError::KeysUnavailable("timed out waiting for another request's fetch of the key set".into()));
        };
        // The fetch we waited for may have brought the key, or failed.
        if let Some(answer) = self.look_up(key_id, pacing).answer_without_fetching() {
            return answer;
        }
        self.fetch(http, url).await?;
        self.look_up(key_id, pacing).key.ok_or_else(unknown)
    }

    /// Fetches the key set and records the outcome: the new keys, or the failure (the old keys
    /// stay). The caller holds `fetching`.
    async fn fetch(&self, http: &reqwest::Client, url: &str) -> Result<(), AuthError> {
        let fetched = fetch_key_set(http, url)
            .await
            .and_then(|key_set| decoding_keys(&key_set).map_err(|error| AuthError::KeysUnavailable(error.to_string())));
        let mut cache = self.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match fetched {
            Ok(keys) => {
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
                cache.failed = None;
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%error, "failed to fetch the token signing keys; known keys stay in use");
                cache.failed = Some((Instant::now(), error.to_string()));
                Err(error)
            }
        }
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

/// Who may do staff work: only holders of the staff role, or (the development default, in which
/// the guide's customer creates products and ships their own order) any signed-in user, on what
/// is theirs. Configured by `REQUIRE_STAFF_ROLE` in the product, inventory and order services.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StaffPolicy {
    pub require_staff_role: bool,
}

impl StaffPolicy {
    /// Whether `claims` may do staff work (on their own orders only, unless they are staff).
    pub fn admits(self, claims: &Claims) -> bool {
        !self.require_staff_role || claims.is_staff()
    }

    /// The 403 for a caller this policy does not admit.
    pub fn refusal(what: &str) -> ApiError {
        ApiError::Forbidden(format!("{what} is reserved to staff: this token has no staff role"))
    }
}

/// The verified caller of a staff operation (catalog and stock writes): 401 as for
/// [`CurrentUser`], then 403 when the service requires the staff role and the token lacks it.
#[derive(Debug, Clone)]
pub struct StaffCaller(pub CurrentUser);

impl<S> FromRequestParts<S> for StaffCaller
where
    Arc<TokenVerifier>: FromRef<S>,
    StaffPolicy: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = CurrentUser::from_request_parts(parts, state).await?;
        if !StaffPolicy::from_ref(state).admits(&caller.claims) {
            return Err(StaffPolicy::refusal("This operation"));
        }
        Ok(StaffCaller(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(roles: &[&str]) -> Claims {
        Claims {
            sub: "7".into(),
            kind: TokenKind::Access,
            iss: ISSUER.into(),
            iat: 0,
            exp: 0,
            jti: "j".into(),
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
        }
    }

    #[test]
    fn only_the_staff_role_is_staff() {
        assert!(claims(&["staff"]).is_staff());
        assert!(claims(&["auditor", "staff"]).is_staff());
        assert!(!claims(&[]).is_staff());
        assert!(!claims(&["Staff", "staffer"]).is_staff());
    }

    #[test]
    fn a_policy_requiring_the_role_admits_staff_only_and_the_open_one_admits_everyone() {
        let strict = StaffPolicy { require_staff_role: true };
        assert!(strict.admits(&claims(&["staff"])));
        assert!(!strict.admits(&claims(&[])));
        let open = StaffPolicy::default();
        assert!(open.admits(&claims(&[])));
        assert!(open.admits(&claims(&["staff"])));
    }

    #[test]
    fn roles_are_left_out_of_customers_tokens_and_default_to_none() {
        let customer = serde_json::to_value(claims(&[])).unwrap();
        assert!(customer.get("roles").is_none(), "{customer}");
        let staff = serde_json::to_value(claims(&["staff"])).unwrap();
        assert_eq!(staff["roles"], serde_json::json!(["staff"]));
        let old: Claims = serde_json::from_value(customer).unwrap();
        assert!(old.roles.is_empty());
    }
    /// An RSA key made for these tests only (`openssl genpkey -algorithm RSA`, 2048 bits), so that
    /// a token can be signed correctly, with the very key the verifier trusts, and differ from a
    /// genuine one in its claims alone.
    const TEST_SIGNING_KEY: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDC3hCD3LlP7ZQL
uxmK67SmvOk92q8mQA+pkYa1sK0k6+r95qzXGEAu/ygNxjIVwPyOu9jyr5bJnvcF
B5frh3xQdL+nNG+vmNoBLF7geX7kHW+Ac2xGqZ+vdB01yRZArn7Y+xvoa4QMCIcY
299C1iOIeQ3/kGNK3S8nZ4d76/G8uRsHq4iNxtXIRAHb8YwscKItzaFlPhMo/lqg
16kiaZo9mGrcRurCuxLErqIaN3c5qcYZbAnPV4aRi3FObdcVw6d3VP2gfhxgBuB2
3y9RAx2Tnod3gllsB13+W/MGlk9EPJNEFz2ORLZNMs/PZkiHE4+fJWkWiIYdlYIJ
9BaK+li/AgMBAAECggEANl66MehsZgIuK+W8tzeTtHACDemNs/jsxc2eTeRpMuOG
MehiMjOIePRlSw6RG+O4M+Tyn6fhRQkO9/7J4wPu6g3hCXiGbvKRZQFpyWzsvB4A
ZdEOlVqvfMdDfSXJiSuGpejOPRd+hNL+Sq/SR7YyvNm1z6gMJC+5f9+RfEB1Nsfb
+QH0wfi6Lc/D6ae7nqNprAk/PsAk6IpKojH537g1UR978UCfwRhFja4WOvIVBSV8
44t+OLkucWuVa0VsZt5GgLQXWsjrFnNg9oZm8Y3xm5KoRlD/HKBKWqOa1OMrV7fG
RRxqT5bkSMw7t0ClNsgxJlDY4OONmVG8jZGy+c75BQKBgQDu5pA3SFcpWpO6wG1f
1Gcqf2zbKO3sTvB/g3j1qBiA4B+Q4b/MFowAqb/3fDwe7S8M8hSlJ7JfSi+TLB98
LdNy4ESGhrrSd7l0sn05cG/KMwubZDUUGWSIf5TMck9Pe1caUK55tgUAywcSFvMi
o+e9YJF+SCWA0ebTYVl1rLTRywKBgQDQ0Kt1nd5UKCogA10tzT0opNoftCRdMNoz
Kz/iwOzrnzg5znKGhdKz21WnJtCm4q4W4JfcNpaR5w7wZjWF/Mg1ccQ9k2DiIg+B
ppXPfUm0HHPQ4WT7J7vjNZmCtRf9ig/fQ/+jjaOfegBjr4bRlh9iEWnPGoN+hlv9
+OX/ZbImXQKBgEqFOzkzZJTuvyRDABsja2bzRqZ6dvT+jsCH50Rhwfr5bn9IHAby
hYtzaAEwDKTtAX89SDlYT6ivwHVdDxkyRkIQOO/puP8L/5qqTquLKiPdlmJLeM8j
OJvniCfaBGlbpQj9X99xatAbhMIczIziqdgF9nx4ztIHJ8SKGli9nc3PAoGBALSl
US+XO1eix46aWmndPCOFOg5jUXItaRcLO2F3dX8BZyrbJsipzPY7sYXBVpCJWgIA
ml+v+eKO+aWPRo57eNiDazm53f7DaJbI/qFZygE+/BKgazO71Bdjr0IcWHzGi6Si
tu1PA1ZbvSqAFyoJrWyxk8/PKCK1KbA1OwQPfmchAoGBAOHiPh1ClbvzG6ILis0j
KFtSaslQetzIkbxeojqZlXZbPCeoN7EbuMwhpRW1JvESJTE8uRD4oVMbQ6+/SKKM
A7d92Yo6/eolBxFBn+0myWDYkCr0gz26JQuj2IdZ1Dt3J+0uR6Pt/WxyoBCMo7ZM
R5dYgCgg9ErN1mPbfO57iluO
-----END PRIVATE KEY-----";
    const TEST_KEY_ID: &str = "test-key";

    /// The test key, and a verifier that trusts it (as every service trusts the user service's).
    fn trusted_key() -> (jsonwebtoken::EncodingKey, TokenVerifier) {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(TEST_SIGNING_KEY.as_bytes()).expect("the test key parses");
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).expect("an RSA key has a public JWK");
        jwk.common.key_id = Some(TEST_KEY_ID.into());
        let verifier = TokenVerifier::from_jwk_set(&JwkSet { keys: vec![jwk] }).expect("the key set is usable");
        (key, verifier)
    }

    /// RS256 over `claims` with the trusted key, under its key id: a correct signature.
    fn signed(key: &jsonwebtoken::EncodingKey, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
        header.kid = Some(TEST_KEY_ID.into());
        jsonwebtoken::encode(&header, claims, key).expect("the claims sign")
    }

    /// The claims of a valid access token of user 7 from `issuer`, for ten minutes from now.
    fn access_claims_from(issuer: &str) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({ "sub": "7", "type": "access", "iss": issuer, "iat": now, "exp": now + 600, "jti": "j" })
    }

    #[tokio::test]
    async fn a_correctly_signed_token_from_another_issuer_is_refused() {
        let (key, verifier) = trusted_key();
        // The same claims from the user service pass: the issuer is all that differs below.
        let genuine = verifier.verify(&signed(&key, &access_claims_from(ISSUER)), TokenKind::Access).await;
        assert_eq!(genuine.expect("the genuine token passes").user_id().unwrap(), 7);

        let foreign = signed(&key, &access_claims_from("another-service"));
        let refusal = verifier.verify(&foreign, TokenKind::Access).await.expect_err("another issuer's token is refused");
        assert!(matches!(&refusal, AuthError::Invalid(reason) if reason.contains("Issuer")), "{refusal:?}");
    }

    /// A service's state as the staff extractor sees it: the verifier and the staff policy.
    #[derive(Clone)]
    struct StaffState {
        verifier: Arc<TokenVerifier>,
        policy: StaffPolicy,
    }

    impl FromRef<StaffState> for Arc<TokenVerifier> {
        fn from_ref(state: &StaffState) -> Self {
            state.verifier.clone()
        }
    }

    impl FromRef<StaffState> for StaffPolicy {
        fn from_ref(state: &StaffState) -> Self {
            state.policy
        }
    }

    /// What the staff extractor answers a request bearing `token` under `policy`.
    async fn staff_call(state: &StaffState, token: &str) -> Result<StaffCaller, ApiError> {
        let request = axum::http::Request::builder()
            .uri("/api/v1/products")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .expect("the request builds");
        let (mut parts, ()) = request.into_parts();
        StaffCaller::from_request_parts(&mut parts, state).await
    }

    #[tokio::test]
    async fn a_service_requiring_the_staff_role_refuses_a_customer_with_403_and_admits_staff() {
        let (key, verifier) = trusted_key();
        let verifier = Arc::new(verifier);
        let customer = signed(&key, &access_claims_from(ISSUER));
        let mut staff_claims = access_claims_from(ISSUER);
        staff_claims["roles"] = serde_json::json!(["staff"]);
        let staff = signed(&key, &staff_claims);

        let strict = StaffState { verifier: verifier.clone(), policy: StaffPolicy { require_staff_role: true } };
        let refusal = staff_call(&strict, &customer).await.expect_err("a customer is refused staff work");
        assert!(matches!(&refusal, ApiError::Forbidden(detail) if detail.contains("reserved to staff")), "{refusal:?}");
        let admitted = staff_call(&strict, &staff).await.expect("staff are admitted");
        assert_eq!(admitted.0.id, 7);
        assert!(admitted.0.claims.is_staff());

        // The development default admits any signed-in caller, but still only a signed-in one.
        let open = StaffState { verifier, policy: StaffPolicy::default() };
        assert_eq!(staff_call(&open, &customer).await.expect("the open policy admits a customer").0.id, 7);
        let forged = staff_call(&open, "not-a-token").await.expect_err("an invalid token is refused");
        assert!(matches!(forged, ApiError::Unauthorized(_)), "{forged:?}");
    }

    #[tokio::test]
    async fn a_correctly_signed_token_without_an_issuer_is_refused() {
        let (key, verifier) = trusted_key();
        let mut claims = access_claims_from(ISSUER);
        claims.as_object_mut().unwrap().remove("iss");
        let refusal =
            verifier.verify(&signed(&key, &claims), TokenKind::Access).await.expect_err("a token without iss is refused");
        assert!(matches!(&refusal, AuthError::Invalid(reason) if reason.contains("iss")), "{refusal:?}");
    }
}
