//! Token signing: the only place in the shop that holds a private key.
//!
//! Tokens are RS256 JWTs whose claims are exactly `common::auth::Claims`, with the header's `kid`
//! set to the RFC 7638 thumbprint of the public key. The public half is published as a JWKS
//! document at `GET /api/v1/auth/jwks`; every service (this one included, through
//! `common::auth::TokenVerifier`) verifies tokens against it.
//!
//! This module deliberately does not verify tokens: verification lives in `common::auth`, so the
//! user service checks its own tokens with exactly the code every other service uses.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use common::auth::{Claims, ISSUER, TokenKind};
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};

use crate::config::SigningKeySource;
use crate::keys::{GENERATED_KEY_BITS, KeyRing, SigningKey};

/// Signs access and refresh tokens with the key that signs now, and knows the public key set
/// that verifies them (see [`crate::keys`] for rotation).
pub struct TokenIssuer {
    /// Swapped whole when the key directory is read again; never held across an await.
    ring: RwLock<Arc<KeyRing>>,
    access_token_ttl: Duration,
    refresh_token_ttl: Duration,
}

/// A signed token and the claims inside it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub claims: Claims,
}

/// The JOSE header of our tokens, fields in this order.
#[derive(serde::Serialize)]
struct TokenHeader<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// What a login or a refresh hands out.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access: IssuedToken,
    pub refresh: IssuedToken,
}

impl TokenIssuer {
    /// An issuer signing with the keys of `ring`.
    pub fn new(ring: KeyRing, access_token_ttl: Duration, refresh_token_ttl: Duration) -> Self {
        Self { ring: RwLock::new(Arc::new(ring)), access_token_ttl, refresh_token_ttl }
    }

    /// An issuer for one RSA private key in PKCS#8 or PKCS#1 PEM, signing for ever.
    pub fn from_private_key_pem(pem: &str, access_token_ttl: Duration, refresh_token_ttl: Duration) -> anyhow::Result<Self> {
        let key = SigningKey::from_pem(pem, DateTime::<Utc>::UNIX_EPOCH)?;
        Ok(Self::new(KeyRing::new(vec![key]), access_token_ttl, refresh_token_ttl))
    }

    /// Signs and publishes with `ring` from now on (the key directory read again).
    pub fn replace_keys(&self, ring: KeyRing) {
        *self.ring.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(ring);
    }

    fn ring(&self) -> Arc<KeyRing> {
        Arc::clone(&self.ring.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The longest a token lives: how long a retired key stays published.
    pub fn token_lifetime(&self) -> Duration {
        self.access_token_ttl.max(self.refresh_token_ttl)
    }

    /// The public keys that verify this issuer's tokens now, as published at `/auth/jwks`.
    pub fn key_set(&self) -> JwkSet {
        self.ring().key_set(Utc::now(), self.token_lifetime())
    }

    /// The ids of every key known, published or not.
    pub fn key_ids(&self) -> Vec<String> {
        self.ring().key_ids()
    }

    /// The key that signs now.
    pub fn signing_key(&self) -> anyhow::Result<Arc<SigningKey>> {
        Ok(self.signing_key_and_instant()?.0)
    }

    /// The key that signs now, and that instant: what one issuance signs with and dates by.
    fn signing_key_and_instant(&self) -> anyhow::Result<(Arc<SigningKey>, DateTime<Utc>)> {
        let now = Utc::now();
        Ok((self.ring().signing_key(now).context("no signing key signs yet")?, now))
    }

    pub fn access_token_ttl(&self) -> Duration {
        self.access_token_ttl
    }

    /// Signs a token of `kind` for `user_id`, valid from now for that kind's lifetime.
    pub fn issue(&self, user_id: i64, roles: &[String], kind: TokenKind) -> anyhow::Result<IssuedToken> {
        let (key, now) = self.signing_key_and_instant()?;
        self.issue_with(&key, now, user_id, roles, kind)
    }

    /// Signs a token of `kind` for `user_id` with `key`, valid from `now` for that kind's lifetime.
    fn issue_with(
        &self,
        key: &SigningKey,
        now: DateTime<Utc>,
        user_id: i64,
        roles: &[String],
        kind: TokenKind,
    ) -> anyhow::Result<IssuedToken> {
        let lifetime = match kind {
            TokenKind::Access => self.access_token_ttl,
            TokenKind::Refresh => self.refresh_token_ttl,
        };
        let issued_at = now.timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            kind,
            iss: ISSUER.to_owned(),
            iat: issued_at,
            exp: issued_at + i64::try_from(lifetime.as_secs()).context("token lifetime is too long")?,
            jti: uuid::Uuid::new_v4().to_string(),
            roles: roles.to_vec(),
        };
        let token = sign(key, &claims)?;
        Ok(IssuedToken { token, claims })
    }

    /// An access token and a refresh token for `user_id`, both carrying `roles`, issued at one
    /// instant and signed by one key, even when a rotation activates the next key or the key
    /// directory is read again while the pair is being signed.
    pub fn issue_pair(&self, user_id: i64, roles: &[String]) -> anyhow::Result<TokenPair> {
        let (key, now) = self.signing_key_and_instant()?;
        Ok(TokenPair {
            access: self.issue_with(&key, now, user_id, roles, TokenKind::Access)?,
            refresh: self.issue_with(&key, now, user_id, roles, TokenKind::Refresh)?,
        })
    }
}

/// Encodes and signs like `jsonwebtoken::encode`, but with `alg` first in the header, so tokens
/// start `eyJhbGciOiJSUzI1NiIs` as the guide shows (`jsonwebtoken::Header` puts `typ` first). The
/// signature is jsonwebtoken's own.
fn sign(key: &SigningKey, claims: &Claims) -> anyhow::Result<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let header = TokenHeader { alg: "RS256", typ: "JWT", kid: &key.key_id };
    let encoded_header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).context("failed to encode a token header")?);
    let encoded_claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).context("failed to encode token claims")?);
    let message = format!("{encoded_header}.{encoded_claims}");
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), key.encoding_key(), Algorithm::RS256).context("failed to sign a token")?;
    Ok(format!("{message}.{signature}"))
}

/// The issuer for the keys the configuration names: one key (a PEM value, or a file, generated
/// when it does not exist so that a developer's tokens survive restarts), or a key directory
/// (see [`crate::keys::open_directory`]).
pub async fn load_issuer(
    source: &SigningKeySource,
    access_token_ttl: Duration,
    refresh_token_ttl: Duration,
) -> anyhow::Result<TokenIssuer> {
    let pem = match source {
        SigningKeySource::Directory(directory) => {
            let ring = crate::keys::open_directory(directory).await?;
            return Ok(TokenIssuer::new(ring, access_token_ttl, refresh_token_ttl));
        }
        SigningKeySource::Pem(pem) => pem.clone(),
        SigningKeySource::File(path) => load_key_file(path).await?,
    };
    TokenIssuer::from_private_key_pem(&pem, access_token_ttl, refresh_token_ttl)
}

/// The private key PEM in the file at `path`. For a file that does not exist, a new key is
/// generated and written there (mode 0600, parent directories created).
async fn load_key_file(path: &Path) -> anyhow::Result<String> {
    match tokio::fs::read_to_string(path).await {
        Ok(pem) => Ok(pem),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => generate_key_file(path).await,
        Err(error) => Err(error).with_context(|| format!("failed to read the token signing key {}", path.display())),
    }
}

/// A fresh RSA private key as PKCS#8 PEM. Key generation takes up to a second of CPU, so it runs
/// on the blocking pool.
pub async fn generate_private_key_pem(bits: usize) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).context("failed to generate an RSA key")?;
        let pem = key.to_pkcs8_pem(LineEnding::LF).context("failed to encode the RSA key as PKCS#8 PEM")?;
        Ok(pem.to_string())
    })
    .await
    .context("key generation task panicked")?
}

async fn generate_key_file(path: &Path) -> anyhow::Result<String> {
    let pem = generate_private_key_pem(GENERATED_KEY_BITS).await?;
    match crate::keys::write_new_key_file(path, &pem).await {
        Ok(()) => {
            tracing::warn!(path = %path.display(), "generated a new token signing key (development only: configure JWT_PRIVATE_KEY in production)");
            Ok(pem)
        }
        // When two processes start at once, exactly one writes the key and the other reads what
        // it wrote, so they sign with the same key.
        Err(error) if crate::keys::already_exists(&error) => tokio::fs::read_to_string(path)
            .await
            .with_context(|| format!("failed to read the token signing key {}", path.display())),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use common::auth::{AuthError, TokenVerifier};

    use jsonwebtoken::Header;

    use super::*;

    async fn issuer() -> TokenIssuer {
        let pem = generate_private_key_pem(2048).await.unwrap();
        TokenIssuer::from_private_key_pem(&pem, Duration::from_secs(30 * 60), Duration::from_secs(7 * 24 * 3600)).unwrap()
    }

    #[tokio::test]
    async fn an_issued_access_token_verifies_with_the_published_key_set() {
        let issuer = issuer().await;
        let verifier = TokenVerifier::from_jwk_set(&issuer.key_set()).unwrap();

        let pair = issuer.issue_pair(42, &[]).unwrap();
        let claims = verifier.verify(&pair.access.token, TokenKind::Access).await.unwrap();

        assert_eq!(claims.sub, "42");
        assert_eq!(claims.iss, ISSUER);
        assert_eq!(claims.kind, TokenKind::Access);
        assert_eq!(claims.exp - claims.iat, 30 * 60);
        assert_eq!(claims.jti, pair.access.claims.jti);
        let refresh = verifier.verify(&pair.refresh.token, TokenKind::Refresh).await.unwrap();
        assert_eq!(refresh.exp - refresh.iat, 7 * 24 * 3600);
        assert_ne!(refresh.jti, claims.jti);
    }

    #[tokio::test]
    async fn a_key_retired_by_a_newer_one_stays_published_for_the_longest_token_lifetime_and_a_new_ring_replaces_the_old() {
        let key = |hours_ago: i64| async move {
            let pem = generate_private_key_pem(2048).await.unwrap();
            SigningKey::from_pem(&pem, Utc::now() - chrono::Duration::hours(hours_ago)).unwrap()
        };
        let (old, new) = (key(3).await, key(2).await);
        let ids = vec![old.key_id.clone(), new.key_id.clone()];
        let issuer =
            TokenIssuer::new(KeyRing::new(vec![new, old]), Duration::from_secs(30 * 60), Duration::from_secs(7 * 24 * 3600));
        assert_eq!(issuer.token_lifetime(), Duration::from_secs(7 * 24 * 3600));
        assert_eq!(issuer.access_token_ttl(), Duration::from_secs(30 * 60));
        assert_eq!(issuer.key_ids(), ids);
        // Retired two hours ago, its refresh tokens live a week: still published.
        let published: Vec<_> = issuer.key_set().keys.iter().map(|jwk| jwk.common.key_id.clone().unwrap()).collect();
        assert_eq!(published, ids);
        assert_eq!(issuer.signing_key().unwrap().key_id, ids[1]);

        let newest = key(0).await;
        let newest_id = newest.key_id.clone();
        issuer.replace_keys(KeyRing::new(vec![newest]));
        assert_eq!(issuer.key_ids(), std::slice::from_ref(&newest_id));
        assert_eq!(issuer.signing_key().unwrap().key_id, newest_id);
    }

    /// A login while a rotation activates the next key: each pair is signed by one key at one
    /// instant. Several keys activate a few signatures apart while pairs are signed back to back,
    /// so a pair that looked the key up once per token would straddle an activation.
    #[tokio::test]
    async fn both_tokens_of_a_pair_are_signed_by_one_key_at_one_instant_while_keys_activate() {
        const KEYS: usize = 10;
        let mut pems = Vec::new();
        for _ in 0..KEYS {
            pems.push(generate_private_key_pem(2048).await.unwrap());
        }
        // How long one pair takes here, so that activations fall between and within pairs.
        let probe = issuer().await;
        let started = std::time::Instant::now();
        probe.issue_pair(1, &[]).unwrap();
        let pair_time = chrono::Duration::from_std(started.elapsed()).unwrap();

        let first = Utc::now() + pair_time * 2;
        let activation = |index: usize| first + pair_time * (3 * i32::try_from(index).unwrap());
        let keys = pems.iter().enumerate().map(|(index, pem)| SigningKey::from_pem(pem, activation(index)).unwrap()).collect();
        let issuer = TokenIssuer::new(KeyRing::new(keys), Duration::from_secs(60), Duration::from_secs(3600));

        let mut signers = std::collections::BTreeSet::new();
        while Utc::now() < activation(KEYS - 1) + pair_time * 3 {
            let Ok(pair) = issuer.issue_pair(1, &[]) else { continue };
            let kid = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
            assert_eq!(kid(&pair.access.token), kid(&pair.refresh.token), "one pair, two signing keys");
            assert_eq!(pair.access.claims.iat, pair.refresh.claims.iat, "one pair, two instants");
            signers.insert(kid(&pair.access.token));
        }
        assert_eq!(signers.len(), KEYS, "every key signed some pairs: {signers:?}");
    }

    #[tokio::test]
    async fn a_refresh_token_is_not_an_access_token_and_vice_versa() {
        let issuer = issuer().await;
        let verifier = TokenVerifier::from_jwk_set(&issuer.key_set()).unwrap();
        let pair = issuer.issue_pair(7, &[]).unwrap();

        let refresh_as_access = verifier.verify(&pair.refresh.token, TokenKind::Access).await;
        assert!(matches!(refresh_as_access, Err(AuthError::WrongKind { .. })));
        let access_as_refresh = verifier.verify(&pair.access.token, TokenKind::Refresh).await;
        assert!(matches!(access_as_refresh, Err(AuthError::WrongKind { .. })));
        // The 401's detail tells the client which token it should have sent.
        assert_eq!(refresh_as_access.unwrap_err().to_string(), "Could not validate credentials: expected an access token");
        assert_eq!(access_as_refresh.unwrap_err().to_string(), "Could not validate credentials: expected a refresh token");
    }

    #[tokio::test]
    async fn the_header_names_the_key_by_its_thumbprint_and_the_key_set_is_rs256_for_signatures() {
        let issuer = issuer().await;
        let token = issuer.issue(1, &[], TokenKind::Access).unwrap().token;
        assert!(token.starts_with("eyJhbGciOiJSUzI1NiIs"), "the guide's tokens start eyJhbGciOiJS: {token}");
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.kid, Some(issuer.signing_key().unwrap().key_id.clone()));

        let published = serde_json::to_value(issuer.key_set()).unwrap();
        let key = &published["keys"][0];
        assert_eq!(key["kid"], issuer.signing_key().unwrap().key_id);
        assert_eq!(key["alg"], "RS256");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kty"], "RSA");
        assert_eq!(published["keys"].as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_token_from_another_issuer_with_the_same_key_id_is_rejected() {
        let genuine = issuer().await;
        let impostor = issuer().await;
        let verifier = Arc::new(TokenVerifier::from_jwk_set(&genuine.key_set()).unwrap());

        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(genuine.signing_key().unwrap().key_id.clone());
        let claims = genuine.issue(1, &[], TokenKind::Access).unwrap().claims;
        let forged = jsonwebtoken::encode(&header, &claims, impostor.signing_key().unwrap().encoding_key()).unwrap();

        assert!(matches!(verifier.verify(&forged, TokenKind::Access).await, Err(AuthError::Invalid(_))));
    }

    #[test]
    fn a_public_key_or_a_short_key_is_refused_as_a_signing_key() {
        let short = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let short_pem = short.to_pkcs8_pem(LineEnding::LF).unwrap();
        let error = TokenIssuer::from_private_key_pem(&short_pem, Duration::from_secs(1), Duration::from_secs(1)).err().unwrap();
        assert!(error.to_string().contains("at least 2048"), "{error}");

        use rsa::pkcs8::EncodePublicKey;
        let public_pem = short.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        assert!(TokenIssuer::from_private_key_pem(&public_pem, Duration::from_secs(1), Duration::from_secs(1)).is_err());
    }

    #[tokio::test]
    async fn a_missing_key_file_is_generated_once_with_owner_only_permissions_and_then_reused() {
        let directory = std::env::temp_dir().join(format!("user-service-key-test-{}", uuid::Uuid::new_v4()));
        let path = directory.join("nested").join("signing.pem");
        let first = load_key_file(&path).await.unwrap();
        let second = load_key_file(&path).await.unwrap();

        assert_eq!(first, second, "the second start must reuse the generated key");
        assert!(first.starts_with("-----BEGIN PRIVATE KEY-----"), "expected PKCS#8 PEM");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        TokenIssuer::from_private_key_pem(&first, Duration::from_secs(1), Duration::from_secs(1)).unwrap();
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
