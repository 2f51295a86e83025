//! Token security: every way of presenting a token that is not a valid, unexpired access token
//! signed by the user service is refused with 401 and `WWW-Authenticate: Bearer`.
//!
//! Each test starts the user service in-process (`user_service::build` on port 0, the same call
//! the binary makes) against a fresh PostgreSQL database named after a uuid, which it drops at
//! the end even when the test fails. The service signs with a private key generated here and
//! handed over as `SigningKeySource::Pem`, so the tests can forge tokens that differ from a real
//! one in exactly one respect.
//!
//! Every forged token is tried twice: against `GET /api/v1/users/me` (the service verifying its
//! own tokens) and against a `common::auth::TokenVerifier::from_jwks_url` that fetches the
//! running service's key set over real HTTP, which is what every other service does.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::auth::{AuthError, Claims, ISSUER, TokenKind, TokenVerifier};
use common::config::HttpSettings;
use futures::FutureExt as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use user_service::{Config, PasswordHashing, SigningKeySource};

const EMAIL: &str = "customer@example.com";
const PASSWORD: &str = "Password123";

/// The keys of this test process: the service's own, and an attacker's.
struct TestKeys {
    /// The service's private key (PKCS#8 PEM), handed to it through `SigningKeySource::Pem`.
    service_private_pem: String,
    /// The service's public key as PEM: public knowledge, and the classic HS256 confusion
    /// attack uses it as an HMAC secret.
    service_public_pem: String,
    service_signing_key: EncodingKey,
    /// A key the service has never seen.
    attacker_signing_key: EncodingKey,
}

/// Generated once per test process: RSA key generation is the slowest step of a test.
static KEYS: LazyLock<TestKeys> = LazyLock::new(|| {
    let generate = || rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key generation works");
    let service = generate();
    let attacker = generate();
    let service_private_pem = service.to_pkcs8_pem(LineEnding::LF).expect("a fresh key encodes").to_string();
    let attacker_private_pem = attacker.to_pkcs8_pem(LineEnding::LF).expect("a fresh key encodes").to_string();
    TestKeys {
        service_public_pem: service.to_public_key().to_public_key_pem(LineEnding::LF).expect("a public key encodes"),
        service_signing_key: EncodingKey::from_rsa_pem(service_private_pem.as_bytes()).expect("the key parses"),
        attacker_signing_key: EncodingKey::from_rsa_pem(attacker_private_pem.as_bytes()).expect("the key parses"),
        service_private_pem,
    }
});

/// A running user service with one registered, logged-in user.
#[derive(Clone)]
struct TestService {
    base_url: String,
    http: reqwest::Client,
    user_id: i64,
    access_token: String,
    refresh_token: String,
    /// The `kid` the service puts in its tokens' headers.
    key_id: String,
}

/// What it takes to stop the service and remove its database.
struct Teardown {
    stop: oneshot::Sender<()>,
    server: JoinHandle<anyhow::Result<()>>,
    server_url: String,
    database_name: String,
}

/// The PostgreSQL server every test target shares (`E2E_POSTGRES_URL`): this test read a
/// variable of its own (`TEST_POSTGRES_URL`) and missed the containers of `cargo xtask e2e
/// --containers`.
fn postgres_server_url() -> String {
    shop_testkit_base::ServerUrls::from_environment().postgres
}

impl TestService {
    async fn start() -> (TestService, Teardown) {
        let server_url = postgres_server_url();
        let database_name = format!("security_{}", uuid::Uuid::new_v4().simple());
        let config = Config {
            http: HttpSettings {
                host: "127.0.0.1".into(),
                port: 0,
                inherited_listener: None,
                drain_limit: common::config::DEFAULT_DRAIN_LIMIT,
            },
            database_url: format!("{server_url}/{database_name}"),
            database_max_connections: 2,
            profile: common::config::Profile::Development,
            signing_key: SigningKeySource::Pem(KEYS.service_private_pem.clone()),
            key_reload: Duration::from_secs(10),
            access_token_ttl: Duration::from_secs(30 * 60),
            refresh_token_ttl: Duration::from_secs(7 * 24 * 60 * 60),
            // argon2's minimum memory: fast tests, and production defaults stay untouched.
            password_hashing: PasswordHashing { memory_kib: 64, iterations: 1, parallelism: 1 },
            staff_emails: Vec::new(),
        };
        let application = user_service::build(config).await.expect("the user service starts");
        let base_url = format!("http://127.0.0.1:{}", application.port());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let teardown = Teardown { stop, server, server_url, database_name };

        let http = reqwest::Client::new();
        let registered: Value = http
            .post(format!("{base_url}/api/v1/auth/register"))
            .json(&json!({"email": EMAIL, "password": PASSWORD, "first_name": "Example", "last_name": "Customer", "phone": "555-123-4567"}))
            .send()
            .await
            .expect("register answers")
            .json()
            .await
            .expect("register answers JSON");
        let user_id = registered["id"].as_i64().unwrap_or_else(|| panic!("registration failed: {registered}"));
        let login = http
            .post(format!("{base_url}/api/v1/auth/login"))
            .form(&[("username", EMAIL), ("password", PASSWORD)])
            .send()
            .await
            .expect("login answers");
        assert_eq!(login.status(), StatusCode::OK);
        let tokens: Value = login.json().await.expect("login answers JSON");
        let access_token = tokens["access_token"].as_str().expect("an access token").to_owned();
        let refresh_token = tokens["refresh_token"].as_str().expect("a refresh token").to_owned();
        let key_id = jsonwebtoken::decode_header(&access_token).expect("a JWT header").kid.expect("a kid");

        (TestService { base_url, http, user_id, access_token, refresh_token, key_id }, teardown)
    }

    fn jwks_url(&self) -> String {
        format!("{}/api/v1/auth/jwks", self.base_url)
    }

    /// `GET /api/v1/users/me` with this `Authorization` header value (none for `None`).
    async fn read_me(&self, authorization: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}/api/v1/users/me", self.base_url));
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        request.send().await.expect("GET /users/me answers")
    }

    /// Claims exactly like the service's own for this user, valid for ten minutes.
    fn valid_claims(&self) -> Claims {
        access_claims(&self.user_id.to_string())
    }

    fn header(&self, algorithm: Algorithm) -> Header {
        let mut header = Header::new(algorithm);
        header.kid = Some(self.key_id.clone());
        header
    }

    /// Asserts that the service refuses the token with 401 and `WWW-Authenticate: Bearer`, and
    /// that a verifier fetching the service's JWKS over HTTP refuses it too; returns the
    /// verifier's reason.
    async fn assert_rejected_everywhere(&self, token: &str) -> AuthError {
        self.assert_rejected_by_the_service(&format!("Bearer {token}")).await;
        let verifier = TokenVerifier::from_jwks_url(self.jwks_url());
        match verifier.verify(token, TokenKind::Access).await {
            Ok(claims) => panic!("the JWKS verifier accepted a bad token: {claims:?}"),
            Err(AuthError::KeysUnavailable(reason)) => panic!("the JWKS fetch failed, so nothing was proven: {reason}"),
            Err(reason) => reason,
        }
    }

    async fn assert_rejected_by_the_service(&self, authorization: &str) {
        self.assert_401(self.read_me(Some(authorization)).await, authorization).await;
    }

    async fn assert_401(&self, response: reqwest::Response, what: &str) {
        let status = response.status();
        let challenge =
            response.headers().get(reqwest::header::WWW_AUTHENTICATE).map(|value| value.to_str().unwrap_or("").to_owned());
        let body: Value = response.json().await.expect("a JSON error body");
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what:?} was not refused: {body}");
        assert_eq!(challenge.as_deref(), Some("Bearer"), "401 without WWW-Authenticate: Bearer for {what:?}");
        assert!(body["detail"].is_string(), "a 401 explains itself in detail: {body}");
    }
}

impl Teardown {
    /// Stops the service (which closes its pool) and drops its database.
    async fn run(self) {
        let _ = self.stop.send(());
        self.server.await.expect("the server task does not panic").expect("the server stops cleanly");
        let mut connection =
            sqlx::PgConnection::connect(&format!("{}/postgres", self.server_url)).await.expect("PostgreSQL is reachable");
        // The name is our own `security_<uuid>`, not input.
        let statement = format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.database_name);
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut connection).await.expect("the test database drops");
        connection.close().await.ok();
    }
}

/// Runs `test` against a fresh service and always tears it down, then re-raises a failure.
async fn with_service<Test, Outcome>(test: Test)
where
    Test: FnOnce(TestService) -> Outcome,
    Outcome: Future<Output = ()>,
{
    let (service, teardown) = TestService::start().await;
    let outcome = AssertUnwindSafe(test(service)).catch_unwind().await;
    teardown.run().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn encode_part(value: &impl serde::Serialize) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("serialisable"))
}

#[tokio::test]
async fn a_valid_access_token_passes_the_service_and_a_verifier_that_fetches_the_jwks_over_http() {
    with_service(|service| async move {
        let response = service.read_me(Some(&format!("Bearer {}", service.access_token))).await;
        assert_eq!(response.status(), StatusCode::OK);
        let me: Value = response.json().await.unwrap();
        assert_eq!(me["id"], service.user_id);
        assert_eq!(me["email"], EMAIL);

        let verifier = TokenVerifier::from_jwks_url(service.jwks_url());
        let claims = verifier.verify(&service.access_token, TokenKind::Access).await.expect("the real token verifies");
        assert_eq!(claims.sub, service.user_id.to_string());
        assert_eq!(claims.iss, ISSUER);
        // A token we sign ourselves with the service's key, to prove the forgeries below differ
        // from an accepted token only in the respect each test names.
        let own =
            jsonwebtoken::encode(&service.header(Algorithm::RS256), &service.valid_claims(), &KEYS.service_signing_key).unwrap();
        verifier.verify(&own, TokenKind::Access).await.expect("a token signed with the service's key verifies");
        assert_eq!(service.read_me(Some(&format!("Bearer {own}"))).await.status(), StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn a_token_signed_by_another_rsa_key_under_the_services_key_id_is_rejected() {
    with_service(|service| async move {
        let forged =
            jsonwebtoken::encode(&service.header(Algorithm::RS256), &service.valid_claims(), &KEYS.attacker_signing_key).unwrap();
        let reason = service.assert_rejected_everywhere(&forged).await;
        assert!(matches!(reason, AuthError::Invalid(_)), "{reason:?}");
    })
    .await;
}

#[tokio::test]
async fn an_unsigned_token_with_alg_none_is_rejected() {
    with_service(|service| async move {
        let header = json!({"alg": "none", "typ": "JWT", "kid": service.key_id});
        let unsigned = format!("{}.{}.", encode_part(&header), encode_part(&service.valid_claims()));
        service.assert_rejected_everywhere(&unsigned).await;
        // Some libraries accept "None" or "NONE"; so must nobody here.
        let header = json!({"alg": "None", "typ": "JWT", "kid": service.key_id});
        service.assert_rejected_everywhere(&format!("{}.{}.", encode_part(&header), encode_part(&service.valid_claims()))).await;
    })
    .await;
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_services_public_key_pem_is_rejected() {
    with_service(|service| async move {
        let secret = EncodingKey::from_secret(KEYS.service_public_pem.as_bytes());
        let confused = jsonwebtoken::encode(&service.header(Algorithm::HS256), &service.valid_claims(), &secret).unwrap();
        let reason = service.assert_rejected_everywhere(&confused).await;
        assert!(matches!(reason, AuthError::Invalid(ref message) if message.contains("HS256")), "{reason:?}");
    })
    .await;
}

#[tokio::test]
async fn an_expired_token_with_a_valid_signature_is_rejected() {
    with_service(|service| async move {
        let mut claims = service.valid_claims();
        claims.iat -= 2 * 3600;
        claims.exp = chrono::Utc::now().timestamp() - 3600;
        let expired = jsonwebtoken::encode(&service.header(Algorithm::RS256), &claims, &KEYS.service_signing_key).unwrap();
        let reason = service.assert_rejected_everywhere(&expired).await;
        assert!(matches!(reason, AuthError::Expired), "{reason:?}");
    })
    .await;
}

#[tokio::test]
async fn a_refresh_token_used_as_an_access_token_is_rejected() {
    with_service(|service| async move {
        let refresh_token = service.refresh_token.clone();
        let reason = service.assert_rejected_everywhere(&refresh_token).await;
        assert!(matches!(reason, AuthError::WrongKind { expected: TokenKind::Access }), "{reason:?}");
        // ...while it still works where it belongs, so the refusal was about its kind.
        let refreshed = service
            .http
            .post(format!("{}/api/v1/auth/refresh", service.base_url))
            .json(&json!({"refresh_token": refresh_token}))
            .send()
            .await
            .unwrap();
        assert_eq!(refreshed.status(), StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn an_access_token_is_rejected_at_the_refresh_endpoint() {
    with_service(|service| async move {
        let response = service
            .http
            .post(format!("{}/api/v1/auth/refresh", service.base_url))
            .json(&json!({"refresh_token": service.access_token}))
            .send()
            .await
            .unwrap();
        service.assert_401(response, "an access token at /auth/refresh").await;
    })
    .await;
}

#[tokio::test]
async fn a_token_whose_signature_was_tampered_with_is_rejected() {
    with_service(|service| async move {
        let (message, signature) = service.access_token.rsplit_once('.').unwrap();
        // Change a character in the middle of the signature (the last one may only carry
        // padding bits).
        let mut characters: Vec<char> = signature.chars().collect();
        let middle = characters.len() / 2;
        characters[middle] = if characters[middle] == 'A' { 'B' } else { 'A' };
        let tampered = format!("{message}.{}", characters.into_iter().collect::<String>());
        assert_ne!(tampered, service.access_token);
        let reason = service.assert_rejected_everywhere(&tampered).await;
        assert!(matches!(reason, AuthError::Invalid(_)), "{reason:?}");
    })
    .await;
}

#[tokio::test]
async fn a_token_whose_claims_were_changed_after_signing_is_rejected() {
    with_service(|service| async move {
        let mut parts = service.access_token.split('.');
        let (header, _claims, signature) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let mut claims = service.valid_claims();
        claims.sub = (service.user_id + 1).to_string();
        let tampered = format!("{header}.{}.{signature}", encode_part(&claims));
        let reason = service.assert_rejected_everywhere(&tampered).await;
        assert!(matches!(reason, AuthError::Invalid(_)), "{reason:?}");
    })
    .await;
}

#[tokio::test]
async fn a_customers_token_given_the_staff_role_after_signing_is_rejected() {
    with_service(|service| async move {
        let mut parts = service.access_token.split('.');
        let (header, claims, signature) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let mut claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert!(!claims.is_staff(), "the service's own token for a customer carries no staff role");
        claims.roles = vec![common::auth::STAFF_ROLE.to_owned()];
        let promoted = format!("{header}.{}.{signature}", encode_part(&claims));
        let reason = service.assert_rejected_everywhere(&promoted).await;
        assert!(matches!(reason, AuthError::Invalid(_)), "{reason:?}");
    })
    .await;
}

#[tokio::test]
async fn a_request_without_a_token_is_rejected() {
    with_service(|service| async move {
        let response = service.read_me(None).await;
        service.assert_401(response, "no Authorization header").await;
    })
    .await;
}

#[tokio::test]
async fn a_malformed_authorization_header_is_rejected() {
    with_service(|service| async move {
        let token = service.access_token.clone();
        for authorization in [
            "Bearer".to_owned(),
            "Bearer ".to_owned(),
            "Bearer abc".to_owned(),
            "Bearer not.a.jwt".to_owned(),
            format!("Token {token}"),
            format!("Basic {}", URL_SAFE_NO_PAD.encode(format!("{EMAIL}:{PASSWORD}"))),
            token.clone(),
        ] {
            service.assert_rejected_by_the_service(&authorization).await;
        }
        // And the garbage tokens mean nothing to a JWKS verifier either.
        let verifier = TokenVerifier::from_jwks_url(service.jwks_url());
        for garbage in ["abc", "not.a.jwt", ""] {
            assert!(verifier.verify(garbage, TokenKind::Access).await.is_err(), "{garbage:?} verified");
        }
    })
    .await;
}

#[tokio::test]
async fn a_token_of_a_user_that_does_not_exist_is_rejected_by_the_user_service() {
    with_service(|service| async move {
        // Correctly signed: another service would accept it (it cannot know the user), but the
        // user service checks that the user still exists before answering /users/me.
        let mut claims = service.valid_claims();
        claims.sub = (service.user_id + 1000).to_string();
        let orphan = jsonwebtoken::encode(&service.header(Algorithm::RS256), &claims, &KEYS.service_signing_key).unwrap();
        service.assert_rejected_by_the_service(&format!("Bearer {orphan}")).await;
    })
    .await;
}

/// What the scriptable key-set server below answers.
#[derive(Clone)]
enum KeySetAnswer {
    /// This key set, as JSON.
    Serve(jsonwebtoken::jwk::JwkSet),
    /// 503, as a user service that is shutting down or unhealthy.
    Fail,
    /// Nothing: the connection is accepted and left hanging, as a user service that hangs.
    Hang,
}

/// A JWKS endpoint on 127.0.0.1 whose answer a test changes, counting the requests it gets:
/// how a verifier behaves while the user service is away, without stopping a user service.
struct KeySetServer {
    url: String,
    answer: std::sync::Arc<std::sync::Mutex<KeySetAnswer>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl KeySetServer {
    async fn start(answer: KeySetAnswer) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let url = format!("http://{}/api/v1/auth/jwks", listener.local_addr().expect("its address"));
        let answer = std::sync::Arc::new(std::sync::Mutex::new(answer));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (shared_answer, counter) = (answer.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let (answer, counter) = (shared_answer.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => request.extend_from_slice(&buffer[..read]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let answer = answer.lock().expect("the answer").clone();
                    let (status, body) = match answer {
                        KeySetAnswer::Serve(key_set) => {
                            ("200 OK", serde_json::to_string(&key_set).expect("a key set serialises"))
                        }
                        KeySetAnswer::Fail => ("503 Service Unavailable", r#"{"detail":"unavailable"}"#.to_owned()),
                        KeySetAnswer::Hang => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        Self { url, answer, requests, task }
    }

    fn answer(&self, answer: KeySetAnswer) {
        *self.answer.lock().expect("the answer") = answer;
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for KeySetServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The public half of `key` as a key set of one key named `key_id`.
fn key_set_of(key: &EncodingKey, key_id: &str) -> jsonwebtoken::jwk::JwkSet {
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(key, Algorithm::RS256).expect("an RSA key has a JWK");
    jwk.common.key_id = Some(key_id.to_owned());
    jsonwebtoken::jwk::JwkSet { keys: vec![jwk] }
}

/// Access-token claims for the user `user_id`, as the user service makes them, valid for ten
/// minutes.
fn access_claims(user_id: &str) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: user_id.to_owned(),
        kind: TokenKind::Access,
        iss: ISSUER.to_owned(),
        iat: now,
        exp: now + 600,
        jti: uuid::Uuid::new_v4().to_string(),
        roles: Vec::new(),
    }
}

/// An access token for user 7, signed by `key` under `key_id`, valid for ten minutes.
fn token_signed_by(key: &EncodingKey, key_id: &str) -> String {
    let claims = access_claims("7");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key_id.to_owned());
    jsonwebtoken::encode(&header, &claims, key).expect("a token encodes")
}

/// Short timings, so that each test takes a moment; the defaults are seconds and minutes.
fn quick_pacing() -> common::auth::KeyFetching {
    common::auth::KeyFetching {
        fetch_timeout: Duration::from_millis(300),
        failure_memory: Duration::from_secs(30),
        refresh_interval: Duration::from_millis(200),
        minimum_refetch_interval: Duration::from_millis(50),
    }
}

/// While the user service hangs, requests with a key id the verifier does not know do not queue
/// behind each other's fetches: one fetch is made, the others wait for it (bounded), and the
/// failure is remembered, so the next such request is refused (503) without a fetch.
#[tokio::test]
async fn requests_with_unknown_key_ids_while_the_key_set_hangs_cost_one_fetch() {
    let server = KeySetServer::start(KeySetAnswer::Hang).await;
    let verifier = TokenVerifier::from_jwks_url_with(&server.url, quick_pacing());
    let token = token_signed_by(&KEYS.service_signing_key, "rotated-key");

    let outcomes = futures::future::join_all((0..4).map(|_| verifier.verify(&token, TokenKind::Access))).await;
    for outcome in &outcomes {
        assert!(matches!(outcome, Err(AuthError::KeysUnavailable(_))), "refused as an outage: {outcome:?}");
    }
    assert_eq!(server.requests(), 1, "four requests, one fetch");
    let again = verifier.verify(&token, TokenKind::Access).await;
    assert!(matches!(again, Err(AuthError::KeysUnavailable(_))), "{again:?}");
    assert_eq!(server.requests(), 1, "a failed fetch is remembered: no second fetch");
}

/// Keys are fetched again every refresh interval: a key the user service stops publishing (a
/// key removed after a compromise) stops being accepted, and the new key is accepted.
#[tokio::test]
async fn a_key_removed_from_the_key_set_stops_being_accepted_after_the_refresh_interval() {
    let server = KeySetServer::start(KeySetAnswer::Serve(key_set_of(&KEYS.service_signing_key, "old-key"))).await;
    let verifier = TokenVerifier::from_jwks_url_with(&server.url, quick_pacing());
    let old_token = token_signed_by(&KEYS.service_signing_key, "old-key");
    verifier.verify(&old_token, TokenKind::Access).await.expect("the published key is accepted");

    server.answer(KeySetAnswer::Serve(key_set_of(&KEYS.attacker_signing_key, "new-key")));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match verifier.verify(&old_token, TokenKind::Access).await {
            Err(AuthError::Invalid(_)) => break,
            outcome => {
                assert!(std::time::Instant::now() < deadline, "the removed key is still trusted: {outcome:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let new_token = token_signed_by(&KEYS.attacker_signing_key, "new-key");
    verifier.verify(&new_token, TokenKind::Access).await.expect("the newly published key is accepted");
}

/// Keys are cached: while the key set is fresh (within the refresh interval), verifying tokens
/// signed with a known key costs no fetch, however many there are; without the cache every
/// request would be one more call to the user service.
#[tokio::test]
async fn tokens_signed_with_a_known_key_cost_no_fetch_while_the_key_set_is_fresh() {
    let server = KeySetServer::start(KeySetAnswer::Serve(key_set_of(&KEYS.service_signing_key, "the-key"))).await;
    // A refresh interval far longer than the test, so that only the cache decides.
    let pacing = common::auth::KeyFetching { refresh_interval: Duration::from_secs(600), ..quick_pacing() };
    let verifier = TokenVerifier::from_jwks_url_with(&server.url, pacing);
    let token = token_signed_by(&KEYS.service_signing_key, "the-key");
    for _ in 0..10 {
        verifier.verify(&token, TokenKind::Access).await.expect("accepted");
    }
    assert_eq!(server.requests(), 1, "ten tokens signed with a known key, one fetch");
}

/// Keys are kept while the user service cannot be reached: valid tokens keep working through
/// its outage, although the verifier tried to refresh them.
#[tokio::test]
async fn valid_tokens_keep_working_while_the_key_set_cannot_be_fetched() {
    let server = KeySetServer::start(KeySetAnswer::Serve(key_set_of(&KEYS.service_signing_key, "the-key"))).await;
    let verifier = TokenVerifier::from_jwks_url_with(&server.url, quick_pacing());
    let token = token_signed_by(&KEYS.service_signing_key, "the-key");
    verifier.verify(&token, TokenKind::Access).await.expect("accepted");
    assert_eq!(server.requests(), 1);

    server.answer(KeySetAnswer::Fail);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.requests() < 2 {
        assert!(std::time::Instant::now() < deadline, "the verifier never tried to refresh its keys");
        verifier.verify(&token, TokenKind::Access).await.expect("still accepted while the key set cannot be fetched");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    verifier.verify(&token, TokenKind::Access).await.expect("still accepted after a failed refresh");
}

/// The state a staff-only route extracts its caller from: a verifier and the staff policy.
#[derive(Clone, axum::extract::FromRef)]
struct StaffRouteState {
    verifier: std::sync::Arc<TokenVerifier>,
    policy: common::auth::StaffPolicy,
}

/// What a staff-only route's `StaffCaller` makes of a request carrying `token`.
async fn staff_caller(state: &StaffRouteState, token: &str) -> Result<common::auth::StaffCaller, common::ApiError> {
    use axum::extract::FromRequestParts as _;
    let request = axum::http::Request::builder()
        .header(axum::http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .expect("a request builds");
    let (mut parts, ()) = request.into_parts();
    common::auth::StaffCaller::from_request_parts(&mut parts, state).await
}

/// A staff write (catalog, stock, fulfilment) under `REQUIRE_STAFF_ROLE=true` admits a validly
/// signed token with the staff role and refuses a customer's with 403; with open writes (the
/// guide's walk) a customer's passes too. A forged token is a 401 either way.
#[tokio::test]
async fn staff_writes_admit_the_staff_role_and_refuse_customers_only_when_the_role_is_required() {
    let key_set = key_set_of(&KEYS.service_signing_key, "service");
    let verifier = std::sync::Arc::new(TokenVerifier::from_jwk_set(&key_set).expect("the key set decodes"));
    let signed = |roles: &[&str], key: &EncodingKey| {
        let mut claims = access_claims("7");
        claims.roles = roles.iter().map(|role| (*role).to_owned()).collect();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("service".to_owned());
        jsonwebtoken::encode(&header, &claims, key).expect("a token encodes")
    };
    let staff = signed(&[common::auth::STAFF_ROLE], &KEYS.service_signing_key);
    let customer = signed(&[], &KEYS.service_signing_key);
    let forged_staff = signed(&[common::auth::STAFF_ROLE], &KEYS.attacker_signing_key);

    let required = StaffRouteState { verifier: verifier.clone(), policy: common::auth::StaffPolicy { require_staff_role: true } };
    let admitted = staff_caller(&required, &staff).await.expect("a staff token is admitted");
    assert_eq!(admitted.0.id, 7);
    match staff_caller(&required, &customer).await {
        Err(common::ApiError::Forbidden(detail)) => assert!(detail.contains("reserved to staff"), "{detail}"),
        other => panic!("a customer's token on a staff write: {:?}", other.map(|caller| caller.0.id)),
    }
    assert!(matches!(staff_caller(&required, &forged_staff).await, Err(common::ApiError::Unauthorized(_))));

    let open = StaffRouteState { verifier, policy: common::auth::StaffPolicy { require_staff_role: false } };
    assert_eq!(staff_caller(&open, &customer).await.expect("open writes admit a customer").0.id, 7);
    assert!(matches!(staff_caller(&open, &forged_staff).await, Err(common::ApiError::Unauthorized(_))));
}
