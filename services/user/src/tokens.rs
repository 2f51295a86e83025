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
use std::time::Duration;

use anyhow::Context;
use common::auth::{Claims, ISSUER, TokenKind};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};
use rsa::RsaPrivateKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;

use crate::config::SigningKeySource;

/// Keys shorter than this are refused: RS256 with less than 2048 bits is breakable.
const MINIMUM_KEY_BITS: usize = 2048;

/// The size of a key generated for development when the configured key file does not exist.
const GENERATED_KEY_BITS: usize = 2048;

/// Signs access and refresh tokens and knows the public key set that verifies them.
pub struct TokenIssuer {
    encoding_key: EncodingKey,
    /// The JWK thumbprint of the public key, sent as the header's `kid` so verifiers can pick
    /// the right key after a rotation.
    key_id: String,
    key_set: JwkSet,
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
    /// An issuer for an RSA private key in PKCS#8 or PKCS#1 PEM.
    pub fn from_private_key_pem(pem: &str, access_token_ttl: Duration, refresh_token_ttl: Duration) -> anyhow::Result<Self> {
        let private_key = parse_private_key_pem(pem)?;
        anyhow::ensure!(
            private_key.size() * 8 >= MINIMUM_KEY_BITS,
            "the token signing key has {} bits; at least {MINIMUM_KEY_BITS} are required",
            private_key.size() * 8
        );
        // Hand jsonwebtoken the DER we derived ourselves: its own PEM reader would also accept a
        // public key here and only fail at the first signature.
        let der = private_key.to_pkcs1_der().context("failed to encode the signing key as PKCS#1 DER")?;
        let encoding_key = EncodingKey::from_rsa_der(der.as_bytes());

        let mut jwk = Jwk::from_encoding_key(&encoding_key, Algorithm::RS256).context("failed to derive the public JWK")?;
        let key_id = jwk.thumbprint(ThumbprintHash::SHA256).context("failed to compute the JWK thumbprint")?;
        jwk.common.key_id = Some(key_id.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self { encoding_key, key_id, key_set: JwkSet { keys: vec![jwk] }, access_token_ttl, refresh_token_ttl })
    }

    /// The public keys that verify this issuer's tokens, as published at `/auth/jwks`.
    pub fn key_set(&self) -> &JwkSet {
        &self.key_set
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn access_token_ttl(&self) -> Duration {
        self.access_token_ttl
    }

    /// Signs a token of `kind` for `user_id`, valid from now for that kind's lifetime.
    pub fn issue(&self, user_id: i64, roles: &[String], kind: TokenKind) -> anyhow::Result<IssuedToken> {
        let lifetime = match kind {
            TokenKind::Access => self.access_token_ttl,
            TokenKind::Refresh => self.refresh_token_ttl,
        };
        let issued_at = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            kind,
            iss: ISSUER.to_owned(),
            iat: issued_at,
            exp: issued_at + i64::try_from(lifetime.as_secs()).context("token lifetime is too long")?,
            jti: uuid::Uuid::new_v4().to_string(),
            roles: roles.to_vec(),
        };
        let token = self.sign(&claims)?;
        Ok(IssuedToken { token, claims })
    }

    /// Encodes and signs like `jsonwebtoken::encode`, but with `alg` first in the header, so
    /// tokens start `eyJhbGciOiJSUzI1NiIs` as the guide shows (`jsonwebtoken::Header` puts `typ`
    /// first). The signature is jsonwebtoken's own.
    fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;

        let header = TokenHeader { alg: "RS256", typ: "JWT", kid: &self.key_id };
        let encoded_header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).context("failed to encode a token header")?);
        let encoded_claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).context("failed to encode token claims")?);
        let message = format!("{encoded_header}.{encoded_claims}");
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding_key, Algorithm::RS256)
            .context("failed to sign a token")?;
        Ok(format!("{message}.{signature}"))
    }

    /// An access token and a refresh token for `user_id`, both carrying `roles`.
    pub fn issue_pair(&self, user_id: i64, roles: &[String]) -> anyhow::Result<TokenPair> {
        Ok(TokenPair {
            access: self.issue(user_id, roles, TokenKind::Access)?,
            refresh: self.issue(user_id, roles, TokenKind::Refresh)?,
        })
    }
}

fn parse_private_key_pem(pem: &str) -> anyhow::Result<RsaPrivateKey> {
    let pem = pem.trim();
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        RsaPrivateKey::from_pkcs1_pem(pem).context("the token signing key is not a valid PKCS#1 RSA private key PEM")
    } else {
        RsaPrivateKey::from_pkcs8_pem(pem).context("the token signing key is not a valid PKCS#8 RSA private key PEM")
    }
}

/// The private key PEM the configuration names. For a file that does not exist, a new key is
/// generated and written there (mode 0600, parent directories created), so a developer's tokens
/// survive restarts without any set-up.
pub async fn load_signing_key(source: &SigningKeySource) -> anyhow::Result<String> {
    match source {
        SigningKeySource::Pem(pem) => Ok(pem.clone()),
        SigningKeySource::File(path) => match tokio::fs::read_to_string(path).await {
            Ok(pem) => Ok(pem),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => generate_key_file(path).await,
            Err(error) => Err(error).with_context(|| format!("failed to read the token signing key {}", path.display())),
        },
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
    if let Some(directory) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(directory)
            .await
            .with_context(|| format!("failed to create the key directory {}", directory.display()))?;
    }
    let mut options = tokio::fs::OpenOptions::new();
    // create_new: when two processes start at once, exactly one writes the key and the other
    // reads what it wrote, so they sign with the same key.
    options.write(true).create_new(true).mode(0o600);
    match options.open(path).await {
        Ok(mut file) => {
            use tokio::io::AsyncWriteExt;
            file.write_all(pem.as_bytes()).await.with_context(|| format!("failed to write {}", path.display()))?;
            file.sync_all().await.with_context(|| format!("failed to sync {}", path.display()))?;
            tracing::warn!(path = %path.display(), "generated a new token signing key (development only: configure JWT_PRIVATE_KEY in production)");
            Ok(pem)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => tokio::fs::read_to_string(path)
            .await
            .with_context(|| format!("failed to read the token signing key {}", path.display())),
        Err(error) => Err(error).with_context(|| format!("failed to create the token signing key file {}", path.display())),
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
        let verifier = TokenVerifier::from_jwk_set(issuer.key_set()).unwrap();

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
    async fn a_refresh_token_is_not_an_access_token_and_vice_versa() {
        let issuer = issuer().await;
        let verifier = TokenVerifier::from_jwk_set(issuer.key_set()).unwrap();
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
        assert_eq!(header.kid.as_deref(), Some(issuer.key_id()));

        let published = serde_json::to_value(issuer.key_set()).unwrap();
        let key = &published["keys"][0];
        assert_eq!(key["kid"], issuer.key_id());
        assert_eq!(key["alg"], "RS256");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kty"], "RSA");
        assert_eq!(published["keys"].as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_token_from_another_issuer_with_the_same_key_id_is_rejected() {
        let genuine = issuer().await;
        let impostor = issuer().await;
        let verifier = Arc::new(TokenVerifier::from_jwk_set(genuine.key_set()).unwrap());

        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(genuine.key_id().to_owned());
        let claims = genuine.issue(1, &[], TokenKind::Access).unwrap().claims;
        let forged = jsonwebtoken::encode(&header, &claims, &impostor.encoding_key).unwrap();

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
        let source = SigningKeySource::File(path.clone());

        let first = load_signing_key(&source).await.unwrap();
        let second = load_signing_key(&source).await.unwrap();

        assert_eq!(first, second, "the second start must reuse the generated key");
        assert!(first.starts_with("-----BEGIN PRIVATE KEY-----"), "expected PKCS#8 PEM");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        TokenIssuer::from_private_key_pem(&first, Duration::from_secs(1), Duration::from_secs(1)).unwrap();
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
