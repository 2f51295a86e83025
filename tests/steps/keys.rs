//! Signing-key rotation, as an operator does it: `user-service keys rotate|remove` against the
//! user service's key directory (the same code, [`user_service::keys::run`], on the scenario's
//! directory), and what every service then accepts.

use std::time::Duration;

use cucumber::{then, when};
use reqwest::Method;

use shop_testkit::eventually::eventually;
use shop_testkit::world::{Body, Credentials, ShopWorld};
use user_service::keys::KeysCommand;

use super::auth::{act_as, session_of};

/// The `kid` in a token's header.
fn key_id_of(token: &str) -> String {
    let header = jsonwebtoken::decode_header(token).unwrap_or_else(|error| panic!("{token:?} is not a JWT: {error}"));
    header.kid.unwrap_or_else(|| panic!("{token:?} names no key"))
}

/// The key ids the user service publishes now, in its order.
async fn published_key_ids(world: &ShopWorld) -> Vec<String> {
    let response = world.send(Method::GET, "/api/v1/auth/jwks", Body::None, Credentials::Anonymous).await;
    assert_eq!(response.status, 200, "GET /api/v1/auth/jwks: {}", response.text);
    let keys = response.field("keys").as_array().unwrap_or_else(|| panic!("no keys array: {}", response.text));
    keys.iter().map(|key| key["kid"].as_str().expect("every key has a kid").to_owned()).collect()
}

/// One request to each service that needs a valid access token, and the status it answers when
/// the token is accepted; none of them changes anything (the product write's body is empty, so
/// an accepted token meets a 422).
const EVERY_SERVICE: [(&str, &str, &str, u16); 4] = [
    ("user", "GET", "/api/v1/users/me", 200),
    ("order", "GET", "/api/v1/orders", 200),
    ("inventory", "GET", "/api/v1/inventory/", 200),
    ("product", "POST", "/api/v1/products", 422),
];

/// What each service answers `token`: (service, status, body).
async fn answers_to(world: &ShopWorld, token: &str) -> Vec<(&'static str, u16, String)> {
    let mut answers = Vec::new();
    for (service, method, path, _) in EVERY_SERVICE {
        let body = if method == "POST" { Body::Json("{}".into()) } else { Body::None };
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let response = world.send(method, path, body, Credentials::Token(token.to_owned())).await;
        answers.push((service, response.status, response.text));
    }
    answers
}

/// `user-service keys rotate --activate-in SECONDS`. Remembers the key signing before it as
/// OLD_KEY_ID, the new one as NEW_KEY_ID, and the customer's tokens of now as
/// TOKEN_BEFORE_ROTATION and REFRESH_TOKEN_BEFORE_ROTATION.
#[when(expr = "an operator rotates the signing key, the new key signing in {int} seconds")]
async fn an_operator_rotates_the_signing_key(world: &mut ShopWorld, seconds: u64) {
    let before = published_key_ids(world).await;
    assert_eq!(before.len(), 1, "one key before the rotation: {before:?}");
    let said = world
        .system()
        .signing_keys(&KeysCommand::Rotate { activate_in: Duration::from_secs(seconds) })
        .await
        .unwrap_or_else(|error| panic!("keys rotate: {error:#}"));
    let new_key = said
        .strip_prefix("new key ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("keys rotate said {said:?}"))
        .to_owned();
    assert_ne!(new_key, before[0]);
    let (token, refresh) = (world.variable("TOKEN").to_owned(), world.variable("REFRESH_TOKEN").to_owned());
    assert_eq!(key_id_of(&token), before[0], "the customer's token is signed by the key signing before the rotation");
    world.remember("OLD_KEY_ID", before[0].clone());
    world.remember("NEW_KEY_ID", new_key);
    world.remember("TOKEN_BEFORE_ROTATION", token);
    world.remember("REFRESH_TOKEN_BEFORE_ROTATION", refresh);
}

/// `user-service keys remove KID`.
#[when(expr = "an operator removes the key {string}")]
async fn an_operator_removes_the_key(world: &mut ShopWorld, key_id: String) {
    let key_id = world.interpolate(&key_id);
    world.system().signing_keys(&KeysCommand::Remove(key_id)).await.unwrap_or_else(|error| panic!("keys remove: {error:#}"));
}

/// The key set lists exactly these keys (comma-separated), in any order: checked at once, so
/// the step before must have given the user service time to read its directory again.
#[then(expr = "the key set lists exactly the keys {string}")]
async fn the_key_set_lists_exactly(world: &mut ShopWorld, keys: String) {
    let mut expected: Vec<String> = world.interpolate(&keys).split(',').map(|key| key.trim().to_owned()).collect();
    let mut published = published_key_ids(world).await;
    expected.sort();
    published.sort();
    assert_eq!(published, expected, "the key set");
}

/// Within `seconds` the key set lists exactly these keys.
#[then(expr = "within {int} seconds the key set lists exactly the keys {string}")]
async fn within_seconds_the_key_set_lists(world: &mut ShopWorld, seconds: u64, keys: String) {
    let mut expected: Vec<String> = world.interpolate(&keys).split(',').map(|key| key.trim().to_owned()).collect();
    expected.sort();
    let world = &*world;
    eventually(Duration::from_secs(seconds), &format!("the key set listing {expected:?}"), || async {
        let mut published = published_key_ids(world).await;
        published.sort();
        (published == expected).then_some(()).ok_or(format!("{published:?}"))
    })
    .await;
}

/// Logs `email` in again until the login's tokens are signed by `key`; that session becomes the
/// customer's (TOKEN, REFRESH_TOKEN).
#[when(expr = "a login of {string} is signed by the key {string} within {int} seconds")]
async fn a_login_is_signed_by_within(world: &mut ShopWorld, email: String, key: String, seconds: u64) {
    let key = world.interpolate(&key);
    let session = {
        let world = &*world;
        eventually(Duration::from_secs(seconds), &format!("a login signed by {key}"), || async {
            let session = session_of(world, &email).await;
            let signed_by = key_id_of(&session.access_token);
            assert_eq!(key_id_of(&session.refresh_token), signed_by, "both tokens of a login are signed by one key");
            if signed_by == key { Ok(session) } else { Err(format!("signed by {signed_by}")) }
        })
        .await
    };
    act_as(world, session);
}

/// The token is accepted by the user, order, inventory and product services alike.
#[then(expr = "the token {string} is accepted by every service")]
async fn the_token_is_accepted_by_every_service(world: &mut ShopWorld, token: String) {
    let token = world.interpolate(&token);
    for ((service, status, body), (_, method, path, accepted)) in answers_to(world, &token).await.into_iter().zip(EVERY_SERVICE) {
        assert_eq!(status, accepted, "the {service} service answered {method} {path} with {status}: {body}");
    }
}

/// Within `seconds`, every service refuses the token with a 401; the bound a rotation promises
/// for a removed key.
#[then(expr = "within {int} seconds the token {string} is refused by every service")]
async fn within_seconds_the_token_is_refused(world: &mut ShopWorld, seconds: u64, token: String) {
    let token = world.interpolate(&token);
    let world = &*world;
    eventually(Duration::from_secs(seconds), "every service refusing the token", || async {
        let answers = answers_to(world, &token).await;
        let accepting: Vec<_> = answers.iter().filter(|(_, status, _)| *status != 401).collect();
        if accepting.is_empty() { Ok(()) } else { Err(format!("{accepting:?}")) }
    })
    .await;
}

/// The response field holds a JWT whose header names `key`.
#[then(expr = "the response field {string} is a token signed by the key {string}")]
async fn the_response_field_is_a_token_signed_by(world: &mut ShopWorld, path: String, key: String) {
    let key = world.interpolate(&key);
    let response = world.last_response();
    let token = response.field(&path).as_str().unwrap_or_else(|| panic!("{path} is not a string: {}", response.text));
    assert_eq!(key_id_of(token), key, "the key that signed {path}");
}
