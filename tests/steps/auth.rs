//! Who the scenario acts as: registering customers, logging in as them, and the guide's default
//! address.
//!
//! "The customer" of a scenario is whoever is logged in at that moment; `a logged-in customer`
//! is the guide's `customer@example.com`. Every customer these steps register has the password
//! `Password123`, so that a scenario names customers by their email alone.

use cucumber::{given, then, when};
use reqwest::Method;
use serde_json::json;

use crate::support::world::{Body, Credentials, ShopWorld};

/// The guide's customer, as section 1 registers them.
pub const GUIDE_CUSTOMER: &str = "customer@example.com";
/// The password of every customer the steps register.
pub const PASSWORD: &str = "Password123";

/// What logging in as someone yields, kept apart from the world so that a step can act as
/// another customer for a moment without changing who the scenario is logged in as.
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    /// The user id, as the decimal string orders carry in `user_id`.
    pub user_id: String,
}

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

fn login_form(email: &str, password: &str) -> String {
    format!(
        "username={}&password={}",
        url::form_urlencoded::byte_serialize(email.as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(password.as_bytes()).collect::<String>()
    )
}

/// Logs in with the OAuth2 password form and reads the user's id, without changing who the
/// scenario is logged in as.
pub async fn session_of(world: &ShopWorld, email: &str) -> Session {
    let response =
        world.send(Method::POST, "/api/v1/auth/login", Body::Form(login_form(email, PASSWORD)), Credentials::Anonymous).await;
    assert_eq!(response.status, 200, "logging in as {email} failed: {}", response.text);
    let access_token = response.field("access_token").as_str().expect("access_token is a string").to_owned();
    let refresh_token = response.field("refresh_token").as_str().expect("refresh_token is a string").to_owned();
    let me = world.send(Method::GET, "/api/v1/users/me", Body::None, Credentials::Token(access_token.clone())).await;
    assert_eq!(me.status, 200, "GET /users/me as {email} failed: {}", me.text);
    assert_eq!(me.field("email"), email, "logged in as someone else: {}", me.text);
    Session { access_token, refresh_token, user_id: me.field("id").to_string() }
}

/// Makes `session` the scenario's current one: its token is sent by default and remembered as
/// TOKEN, REFRESH_TOKEN and USER_ID.
fn act_as(world: &mut ShopWorld, session: Session) {
    world.token = Some(session.access_token.clone());
    world.remember("TOKEN", session.access_token);
    world.remember("REFRESH_TOKEN", session.refresh_token);
    world.remember("USER_ID", session.user_id);
}

async fn log_in(world: &mut ShopWorld, email: &str) {
    let session = session_of(world, email).await;
    act_as(world, session);
}

#[given(expr = "a customer {string} registered with password {string}")]
async fn a_registered_customer(world: &mut ShopWorld, email: String, password: String) {
    register(world, &email, &password).await;
}

/// The guide's customer, registered and logged in, with no address yet.
#[given("a logged-in customer")]
async fn a_logged_in_customer(world: &mut ShopWorld) {
    register(world, GUIDE_CUSTOMER, PASSWORD).await;
    log_in(world, GUIDE_CUSTOMER).await;
}

/// The guide's customer, registered and logged in, with the guide's section 2 address as their
/// default address.
#[given("a customer with a default address")]
async fn a_customer_with_a_default_address(world: &mut ShopWorld) {
    a_logged_in_customer(world).await;
    let address = json!({
        "line1": "123 Example Street",
        "line2": "Apt 4B",
        "city": "Example City",
        "state": "EX",
        "postal_code": "12345",
        "country": "Example Country",
        "is_default": true
    });
    let response =
        world.send(Method::POST, "/api/v1/users/me/addresses", Body::Json(address.to_string()), Credentials::Current).await;
    assert_eq!(response.status, 201, "adding the default address failed: {}", response.text);
    assert_eq!(response.field("is_default"), true, "the address is not the default one: {}", response.text);
}

/// Registers another customer; who the scenario is logged in as does not change.
#[given(expr = "another customer {string}")]
async fn another_customer(world: &mut ShopWorld, email: String) {
    register(world, &email, PASSWORD).await;
}

/// Logs in as a customer registered earlier in the scenario, who becomes "the customer".
#[when(expr = "{string} logs in")]
async fn customer_logs_in(world: &mut ShopWorld, email: String) {
    log_in(world, &email).await;
}

/// No account answers to these credentials: the login form refuses them.
#[then(expr = "nobody can log in as {string} with password {string}")]
async fn nobody_can_log_in_as(world: &mut ShopWorld, email: String, password: String) {
    let response =
        world.send(Method::POST, "/api/v1/auth/login", Body::Form(login_form(&email, &password)), Credentials::Anonymous).await;
    assert_eq!(response.status, 401, "logging in as {email} with {password:?} was not refused: {}", response.text);
}
