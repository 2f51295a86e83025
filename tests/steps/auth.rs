//! Who the scenario acts as: registering customers, logging in as them, and the guide's default
//! address.
//!
//! "The customer" of a scenario is whoever is logged in at that moment; `a logged-in customer`
//! is the guide's `customer@example.com`. Every customer these steps register has the password
//! `Password123`, so that a scenario names customers by their email alone.

use cucumber::{given, then, when};
use reqwest::Method;
use serde_json::json;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use shop_testkit::system::STAFF_EMAIL;
use shop_testkit::world::{Body, Credentials, ShopWorld};

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
pub(crate) fn act_as(world: &mut ShopWorld, session: Session) {
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

/// The last response, a list of the customer's addresses, has exactly one default address, and
/// it is the one whose first line is `line1`.
#[then(expr = "the only default address listed is {string}")]
async fn the_only_default_address_listed_is(world: &mut ShopWorld, line1: String) {
    let response = world.last_response();
    let addresses = response.json().as_array().unwrap_or_else(|| panic!("not a list of addresses: {}", response.text));
    let defaults: Vec<&str> = addresses
        .iter()
        .filter(|address| address["is_default"] == true)
        .map(|address| address["line1"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(defaults, [line1.as_str()], "the default addresses listed: {}", response.text);
}

/// The shop's member of staff, registered, made staff by the operator's command
/// (`user-service staff grant`), and logged in; their token, which carries the staff role, is also
/// remembered as `STAFF_TOKEN`.
#[given("a member of staff")]
async fn a_member_of_staff(world: &mut ShopWorld) {
    register(world, STAFF_EMAIL, PASSWORD).await;
    world.system().make_staff(STAFF_EMAIL).await.unwrap_or_else(|error| panic!("{error:#}"));
    let session = session_of(world, STAFF_EMAIL).await;
    let claims = session.access_token.split('.').nth(1).expect("a JWT has claims");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).expect("base64url claims")).expect("JSON claims");
    assert_eq!(claims["roles"], json!(["staff"]), "the staff member's token carries no staff role: {claims}");
    world.remember("STAFF_TOKEN", session.access_token.clone());
    act_as(world, session);
}

/// An operator runs `user-service staff grant EMAIL` against the user database.
#[when(expr = "an operator grants the staff role to {string}")]
async fn an_operator_grants_staff(world: &mut ShopWorld, email: String) {
    world.system().make_staff(&email).await.unwrap_or_else(|error| panic!("{error:#}"));
}

/// An operator runs `user-service staff revoke EMAIL` against the user database.
#[when(expr = "an operator revokes the staff role of {string}")]
async fn an_operator_revokes_staff(world: &mut ShopWorld, email: String) {
    world.system().revoke_staff(&email).await.unwrap_or_else(|error| panic!("{error:#}"));
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

/// Wrong passwords for one account, each refused with a 401 (none throttled yet).
#[when(expr = "{int} wrong passwords are tried for {string}")]
async fn wrong_passwords_are_tried(world: &mut ShopWorld, attempts: usize, email: String) {
    for attempt in 1..=attempts {
        let form = login_form(&email, &format!("wrong-password-{attempt}"));
        let response = world.send(Method::POST, "/api/v1/auth/login", Body::Form(form), Credentials::Anonymous).await;
        assert_eq!(response.status, 401, "wrong password {attempt} for {email}: {}", response.text);
    }
}

/// A login with the right password; the answer is the last response.
#[when(expr = "{string} tries to log in with the right password")]
async fn tries_to_log_in(world: &mut ShopWorld, email: String) {
    world
        .request_with(Method::POST, "/api/v1/auth/login", Body::Form(login_form(&email, PASSWORD)), Credentials::Anonymous)
        .await;
}

/// The last response is a 429 whose `Retry-After` is a number of seconds within the bounds, with
/// a JSON detail.
#[then(expr = "the {word} is throttled for between {int} and {int} seconds")]
async fn the_request_is_throttled(world: &mut ShopWorld, what: String, at_least: u64, at_most: u64) {
    let response = world.last_response();
    assert_eq!(response.status, 429, "expected a throttled {what}: {}", response.text);
    let retry_after: u64 = response
        .headers
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("a 429 without a Retry-After in seconds: {:?}", response.headers));
    assert!((at_least..=at_most).contains(&retry_after), "Retry-After {retry_after} is not within {at_least}..={at_most}");
    assert!(response.field("detail").is_string(), "a 429 without a JSON detail: {}", response.text);
}

/// Logins sent all at once from this one client address, with a wrong password for an unknown
/// email: the gateway's per-address limit answers part of them itself.
#[when(expr = "{int} logins are sent at once from one address")]
async fn logins_sent_at_once(world: &mut ShopWorld, count: usize) {
    let sends = (0..count).map(|number| {
        let form = login_form(&format!("flood-{number}@example.com"), "wrong-password");
        world.send(Method::POST, "/api/v1/auth/login", Body::Form(form), Credentials::Anonymous)
    });
    let started = std::time::Instant::now();
    let responses = futures::future::join_all(sends).await;
    let took = started.elapsed();
    let throttled: Vec<_> = responses.iter().filter(|response| response.status == 429).collect();
    let refused = responses.iter().filter(|response| response.status == 401).count();
    assert_eq!(throttled.len() + refused, count, "every login is either refused (401) or throttled (429)");
    world.remember(THROTTLED_REQUESTS, throttled.len().to_string());
    remember_flood(world, "logins", count, took);
    if let Some(first) = throttled.first() {
        world.last = Some((*first).clone());
    }
}

/// Sign-ups of new customers sent all at once from this one client address: the gateway's
/// per-address limit answers part of them itself; the others register.
#[when(expr = "{int} sign-ups are sent at once from one address")]
async fn sign_ups_sent_at_once(world: &mut ShopWorld, count: usize) {
    let sends = (0..count).map(|number| {
        let body = json!({
            "email": format!("signup-flood-{number}@example.com"), "password": PASSWORD,
            "first_name": "Flood", "last_name": "Customer"
        });
        world.send(Method::POST, "/api/v1/auth/register", Body::Json(body.to_string()), Credentials::Anonymous)
    });
    let started = std::time::Instant::now();
    let responses = futures::future::join_all(sends).await;
    let took = started.elapsed();
    let throttled: Vec<_> = responses.iter().filter(|response| response.status == 429).collect();
    let registered = responses.iter().filter(|response| response.status == 201).count();
    assert_eq!(throttled.len() + registered, count, "every sign-up is either registered (201) or throttled (429)");
    world.remember(THROTTLED_REQUESTS, throttled.len().to_string());
    remember_flood(world, "signups", count, took);
    if let Some(first) = throttled.first() {
        world.last = Some((*first).clone());
    }
}

/// Writes that change nothing (an order without lines: 422 when it reaches the order service)
/// sent by the customer as fast as 200 connections at a time carry them: the gateway's
/// per-customer write limit answers part of them itself.
#[when(expr = "{int} writes are sent at once by the customer")]
async fn writes_sent_at_once(world: &mut ShopWorld, count: usize) {
    use futures::StreamExt as _;
    let world_ref = &*world;
    let sends = (0..count).map(|_| world_ref.send(Method::POST, "/api/v1/orders", Body::Json("{}".into()), Credentials::Current));
    let started = std::time::Instant::now();
    let responses: Vec<_> = futures::stream::iter(sends).buffer_unordered(200).collect().await;
    let took = started.elapsed();
    let throttled: Vec<_> = responses.iter().filter(|response| response.status == 429).cloned().collect();
    let refused = responses.iter().filter(|response| response.status == 422).count();
    let others: Vec<_> =
        responses.iter().filter(|response| ![422, 429].contains(&response.status)).map(|response| response.status).collect();
    assert!(others.is_empty(), "every write is either refused by the order service (422) or throttled (429): {others:?}");
    assert_eq!(throttled.len() + refused, count);
    world.remember(THROTTLED_REQUESTS, throttled.len().to_string());
    remember_flood(world, "writes", count, took);
    if let Some(first) = throttled.into_iter().next() {
        world.last = Some(first);
    }
}

/// The flood step before this one was not throttled at all.
#[then("none of them was throttled")]
async fn none_was_throttled(world: &mut ShopWorld) {
    let throttled = world.variable(THROTTLED_REQUESTS);
    assert_eq!(throttled, "0", "{throttled} of {} requests were throttled", world.variable(FLOOD_REQUESTS));
}

/// Where the flood steps above keep how many of their requests the gateway throttled, and which
/// `limit_req` zone they hit, how many they sent and how long they took (in microseconds).
const THROTTLED_REQUESTS: &str = "THROTTLED_REQUESTS";
const FLOOD_ZONE: &str = "FLOOD_ZONE";
const FLOOD_REQUESTS: &str = "FLOOD_REQUESTS";
const FLOOD_MICROSECONDS: &str = "FLOOD_MICROSECONDS";

fn remember_flood(world: &mut ShopWorld, zone: &str, count: usize, took: std::time::Duration) {
    world.remember(FLOOD_ZONE, zone);
    world.remember(FLOOD_REQUESTS, count.to_string());
    world.remember(FLOOD_MICROSECONDS, took.as_micros().to_string());
}

/// The nginx configuration the harness's gateway runs (rendered from this template).
const GATEWAY_TEMPLATE: &str = include_str!("../../services/gateway/gateway.conf.template");

/// Requests of the same zone a scenario may have sent shortly before its flood (the Background
/// registers and logs in two customers): their excess may not have leaked away yet, so up to
/// this many fewer requests of the flood get through at once.
const EARLIER_REQUESTS_IN_THE_ZONE: usize = 4;

/// `zone`'s `limit_req` settings in the gateway's template: (requests per second, burst).
fn gateway_limit(zone: &str) -> (f64, usize) {
    let zone_line = GATEWAY_TEMPLATE
        .lines()
        .find(|line| line.trim_start().starts_with("limit_req_zone") && line.contains(&format!("zone={zone}:")))
        .unwrap_or_else(|| panic!("the gateway defines no limit_req_zone {zone}"));
    let rate = zone_line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("rate=")?.trim_end_matches(';').strip_suffix("r/s")?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no rate in r/s: {zone_line}"));
    let limit_line = GATEWAY_TEMPLATE
        .lines()
        .find(|line| line.trim_start().starts_with("limit_req ") && line.contains(&format!("zone={zone} ")))
        .unwrap_or_else(|| panic!("no location applies limit_req zone={zone}"));
    let burst = limit_line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("burst=")?.trim_end_matches(';').parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no burst: {limit_line}"));
    assert!(
        limit_line.contains("nodelay"),
        "the counts below assume nodelay (excess requests refused, not queued): {limit_line}"
    );
    (rate, burst)
}

/// How many of the flood the gateway's `limit_req` must have throttled, derived from its rate and
/// burst: with nodelay, nginx lets through the first request and `burst` more at once, then
/// `rate` a second as the excess leaks away; the rest get 429. Over a flood that took `took`
/// (from the first send to the last answer, so at least the time nginx saw it arrive), between
/// `burst + 1` and `burst + 1 + rate x took` got through, plus one for nginx's millisecond
/// rounding; or up to [`EARLIER_REQUESTS_IN_THE_ZONE`] fewer, if the scenario's earlier requests
/// had not leaked away yet. With 120 requests, a burst of 50 and 10 a second, a flood that took
/// half a second throttles 63 to 73 of them.
#[then("as many of them were throttled as the gateway's rate and burst allow")]
async fn throttled_as_the_gateway_allows(world: &mut ShopWorld) {
    let throttled: usize = world.variable(THROTTLED_REQUESTS).parse().expect("a count");
    let requests: usize = world.variable(FLOOD_REQUESTS).parse().expect("a count");
    let took = std::time::Duration::from_micros(world.variable(FLOOD_MICROSECONDS).parse().expect("microseconds"));
    let zone = world.variable(FLOOD_ZONE).to_owned();
    let (rate, burst) = gateway_limit(&zone);
    let leaked = (rate * took.as_secs_f64()).ceil() as usize + 1;
    let most_let_through = burst + 1 + leaked;
    let fewest_let_through = (burst + 1).saturating_sub(EARLIER_REQUESTS_IN_THE_ZONE);
    let expected = requests.saturating_sub(most_let_through)..=requests.saturating_sub(fewest_let_through);
    println!(
        "      {throttled} of {requests} throttled in {took:?} (zone {zone}: {rate} a second, burst {burst}; expected {expected:?})"
    );
    assert!(
        expected.contains(&throttled),
        "{throttled} of {requests} requests were throttled in {took:?}; the gateway's zone {zone} ({rate} a second beyond a burst of {burst}) implies {expected:?}"
    );
}
