//! Who the scenario acts as: registering customers and logging in as them.

use cucumber::given;
use reqwest::Method;
use serde_json::json;

use crate::support::world::{Body, Credentials, ShopWorld};

/// Registers `email` with the guide's example profile, through the gateway.
async fn register(world: &ShopWorld, email: &str, password: &str) {
    let body = json!({
        "email": email,
        "password": password,
        "first_name": "Example",
        "last_name": "Customer",
        "phone": "555-123-4567"
    });
    let response = world.send(Method::POST, "/api/v1/auth/register", Body::Json(body.to_string()), Credentials::Anonymous).await;
    assert_eq!(response.status, 201, "registering {email} failed: {}", response.text);
}

/// Logs in with the OAuth2 password form and makes the token the scenario's current one.
async fn log_in(world: &mut ShopWorld, email: &str, password: &str) {
    let form = format!(
        "username={}&password={}",
        url::form_urlencoded::byte_serialize(email.as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(password.as_bytes()).collect::<String>()
    );
    let response = world.send(Method::POST, "/api/v1/auth/login", Body::Form(form), Credentials::Anonymous).await;
    assert_eq!(response.status, 200, "logging in as {email} failed: {}", response.text);
    let access_token = response.field("access_token").as_str().expect("access_token is a string").to_owned();
    let refresh_token = response.field("refresh_token").as_str().expect("refresh_token is a string").to_owned();
    world.token = Some(access_token.clone());
    world.remember("TOKEN", access_token);
    world.remember("REFRESH_TOKEN", refresh_token);

    let me = world.send(Method::GET, "/api/v1/users/me", Body::None, Credentials::Current).await;
    assert_eq!(me.status, 200, "GET /users/me as {email} failed: {}", me.text);
    world.remember("USER_ID", me.field("id").to_string());
}

#[given(expr = "a customer {string} registered with password {string}")]
async fn a_registered_customer(world: &mut ShopWorld, email: String, password: String) {
    register(world, &email, &password).await;
}

#[given(expr = "I am logged in as {string} with password {string}")]
async fn logged_in_as(world: &mut ShopWorld, email: String, password: String) {
    log_in(world, &email, &password).await;
}

#[given("I am a logged-in customer")]
async fn a_logged_in_customer(world: &mut ShopWorld) {
    register(world, "customer@example.com", "Password123").await;
    log_in(world, "customer@example.com", "Password123").await;
}

#[given(expr = "I am logged in as another customer {string}")]
async fn logged_in_as_another_customer(world: &mut ShopWorld, email: String) {
    register(world, &email, "Password123").await;
    log_in(world, &email, "Password123").await;
}
