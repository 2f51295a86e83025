//! HTTPS at the gateway: a scenario's gateway serves HTTPS beside HTTP with a certificate of the
//! run's own certificate authority, and the world's client trusts that authority and nothing else,
//! so every other step of a scenario goes over HTTPS, verified.

use std::time::Duration;

use cucumber::{given, then, when};
use reqwest::Method;

use shop_testkit::gateway::{Https, https_client};
use shop_testkit::system::Setup;
use shop_testkit::world::{Body, Credentials, ShopWorld};

/// The gateway serves HTTPS beside HTTP, as `cargo xtask up` does; the scenario's requests go over
/// HTTPS. `${HTTPS_PORT}` is its port.
#[given("the shop is running over HTTPS")]
async fn the_shop_is_running_over_https(world: &mut ShopWorld) {
    start_over_https(world, Https::BesideHttp).await;
}

/// The production profile's gateway: plain HTTP is redirected to HTTPS, HTTPS answers carry HSTS.
#[given("the shop is running over HTTPS with the production gateway")]
async fn the_shop_is_running_with_the_production_gateway(world: &mut ShopWorld) {
    start_over_https(world, Https::Production).await;
}

async fn start_over_https(world: &mut ShopWorld, https: Https) {
    super::system::start(world, Setup { https: Some(https), ..Setup::default() }).await;
    world.http = https_client(None).expect("a client trusting the local certificate authority");
    let url = url::Url::parse(&world.system().gateway_url()).expect("the gateway's URL");
    assert_eq!(url.scheme(), "https", "the scenario's requests go over HTTPS");
    world.remember("HTTPS_PORT", url.port().expect("the HTTPS port").to_string());
}

/// The last response came over this HTTP version (`HTTP/1.1`, `HTTP/2.0`).
#[then(expr = "the response came over {word}")]
async fn the_response_came_over(world: &mut ShopWorld, version: String) {
    let response = world.last_response();
    assert_eq!(response.version, version, "the answer's HTTP version ({} {})", response.status, response.text);
}

/// A GET from a client that trusts the local certificate authority and speaks only TLS
/// `version` (1.2 or 1.3).
#[when(expr = "a client limited to TLS {word} sends a GET request to {string}")]
async fn a_client_limited_to_tls(world: &mut ShopWorld, version: String, path: String) {
    let version = match version.as_str() {
        "1.2" => reqwest::tls::Version::TLS_1_2,
        "1.3" => reqwest::tls::Version::TLS_1_3,
        other => panic!("TLS {other} is not a version this client speaks (1.2, 1.3)"),
    };
    let limited = https_client(Some(version)).expect("a client limited to one TLS version");
    let client = std::mem::replace(&mut world.http, limited);
    world.request(Method::GET, &path, Body::None).await;
    world.http = client;
}

/// A request to the gateway's plain-HTTP port, from a client that does not follow redirects.
#[when(expr = "I send a {word} request to {string} over plain HTTP")]
async fn over_plain_http(world: &mut ShopWorld, verb: String, path: String) {
    let method = Method::from_bytes(verb.as_bytes()).unwrap_or_else(|_| panic!("{verb:?} is not an HTTP method"));
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a plain HTTP client");
    let client = std::mem::replace(&mut world.http, plain);
    let base = world.system().plain_gateway_url();
    let response = world.try_send_to(&base, method, &path, Body::None, Credentials::Anonymous).await;
    world.http = client;
    world.last = Some(response.unwrap_or_else(|error| panic!("{error}")));
}

#[then(expr = "the response has no header {string}")]
async fn the_response_has_no_header(world: &mut ShopWorld, name: String) {
    let response = world.last_response();
    assert!(response.headers.get(name.as_str()).is_none(), "header {name:?} is there: {:?}", response.headers);
}

/// A client with the usual trust (the machine's certificate authorities, not the local one) is
/// refused: the gateway's certificate is verified, not merely encrypted with.
#[then("a client that does not trust the local certificate authority cannot reach the gateway")]
async fn a_client_without_the_local_authority_is_refused(world: &mut ShopWorld) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("a client");
    let url = format!("{}/health", world.system().gateway_url());
    let error = client.get(&url).send().await.expect_err("a certificate of an unknown authority must not be accepted");
    let chain = format!("{error:?}");
    assert!(chain.contains("UnknownIssuer") || chain.contains("certificate"), "refused, but not for the certificate: {chain}");
}
