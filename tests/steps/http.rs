//! Generic HTTP steps: send a request through the gateway, then assert on the response.
//! Every path, body and expected value may use `${NAME}` for a remembered variable.

use std::time::Duration;

use cucumber::gherkin::Step;
use cucumber::{then, when};
use reqwest::Method;
use serde_json::Value;

use crate::support::eventually::eventually;
use crate::support::snapshot;
use crate::support::system::ServiceName;
use crate::support::world::{Body, Credentials, ShopWorld, field};

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).unwrap_or_else(|_| panic!("{name:?} is not an HTTP method"))
}

fn doc_string(step: &Step) -> String {
    step.docstring.clone().unwrap_or_else(|| panic!("step {:?} needs a doc string", step.value))
}

/// The expected value of a field step: JSON when it parses as JSON (49, true, null, "x"),
/// otherwise the text itself as a string.
fn expected_value(world: &ShopWorld, text: &str) -> Value {
    let text = world.interpolate(text);
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

#[when(expr = "I send a {word} request to {string}")]
async fn send(world: &mut ShopWorld, verb: String, path: String) {
    world.request(method(&verb), &path, Body::None).await;
}

#[when(expr = "I send a {word} request to {string} with body:")]
async fn send_json(world: &mut ShopWorld, step: &Step, verb: String, path: String) {
    world.request(method(&verb), &path, Body::Json(doc_string(step))).await;
}

#[when(expr = "I send a {word} request to {string} with form {string}")]
async fn send_form(world: &mut ShopWorld, verb: String, path: String, form: String) {
    world.request(method(&verb), &path, Body::Form(form)).await;
}

#[when(expr = "I send a {word} request to {string} without a token")]
async fn send_anonymously(world: &mut ShopWorld, verb: String, path: String) {
    world.request_with(method(&verb), &path, Body::None, Credentials::Anonymous).await;
}

#[when(expr = "I send a {word} request to {string} without a token with body:")]
async fn send_json_anonymously(world: &mut ShopWorld, step: &Step, verb: String, path: String) {
    world.request_with(method(&verb), &path, Body::Json(doc_string(step)), Credentials::Anonymous).await;
}

#[when(expr = "I send a {word} request to {string} with the token {string}")]
async fn send_with_token(world: &mut ShopWorld, verb: String, path: String, token: String) {
    let token = world.interpolate(&token);
    world.request_with(method(&verb), &path, Body::None, Credentials::Token(token)).await;
}

#[when(expr = "I send a {word} request to {string} with the Authorization header {string}")]
async fn send_with_header(world: &mut ShopWorld, verb: String, path: String, header: String) {
    let header = world.interpolate(&header);
    world.request_with(method(&verb), &path, Body::None, Credentials::Header(header)).await;
}

#[when(expr = "I send a GET request directly to the {word} service at {string}")]
async fn send_directly_to_service(world: &mut ShopWorld, service: String, path: String) {
    let service: ServiceName = service.parse().unwrap_or_else(|error: String| panic!("{error}"));
    let base = world.system().service_url(service);
    let response = world.send_to(&base, Method::GET, &path, Body::None, Credentials::Anonymous).await;
    world.last = Some(response);
}

#[then(expr = "the response status is {int}")]
async fn status_is(world: &mut ShopWorld, expected: u16) {
    let response = world.last_response();
    assert_eq!(response.status, expected, "unexpected status; body: {}", response.text);
}

#[then(expr = "the response body matches the snapshot {string}")]
async fn body_matches_snapshot(world: &mut ShopWorld, name: String) {
    snapshot::assert_matches(&name, world.last_response().json(), &world.variables);
}

#[then("the response body is:")]
async fn body_is(world: &mut ShopWorld, step: &Step) {
    let expected: Value = serde_json::from_str(&world.interpolate(&doc_string(step))).expect("the expected body is JSON");
    assert_eq!(world.last_response().json(), &expected, "unexpected body");
}

#[then(expr = "the response text contains {string}")]
async fn text_contains(world: &mut ShopWorld, expected: String) {
    let response = world.last_response();
    assert!(
        response.text.contains(&expected),
        "the response ({}) does not contain {expected:?}: {:.300}",
        response.status,
        response.text
    );
}

#[then("the response body is empty")]
async fn body_is_empty(world: &mut ShopWorld) {
    assert_eq!(world.last_response().text, "", "expected no body");
}

#[then(expr = "the response field {string} is {string}")]
async fn field_is(world: &mut ShopWorld, path: String, expected: String) {
    let expected = expected_value(world, &expected);
    let actual = world.last_response().field(&path);
    assert_eq!(actual, &expected, "field {path:?} of {}", world.last_response().text);
}

#[then(expr = "the response field {string} contains {string}")]
async fn field_contains(world: &mut ShopWorld, path: String, expected: String) {
    let expected = world.interpolate(&expected);
    let actual = world.last_response().field(&path).to_string();
    assert!(actual.contains(&expected), "field {path:?} = {actual} does not contain {expected:?}");
}

#[then(expr = "the response is a list of {int} item(s)")]
async fn list_of(world: &mut ShopWorld, count: usize) {
    let items = world.last_response().json().as_array().unwrap_or_else(|| panic!("not a list: {}", world.last_response().text));
    assert_eq!(items.len(), count, "unexpected number of items: {}", world.last_response().text);
}

#[then(expr = "the response header {string} is {string}")]
async fn header_is(world: &mut ShopWorld, name: String, expected: String) {
    let response = world.last_response();
    let actual = response.headers.get(name.as_str()).and_then(|value| value.to_str().ok());
    assert_eq!(actual, Some(expected.as_str()), "header {name:?}; headers: {:?}", response.headers);
}

#[then(expr = "I remember the response field {string} as {string}")]
async fn remember_field(world: &mut ShopWorld, path: String, name: String) {
    let value = match world.last_response().field(&path) {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    world.remember(&name, value);
}

#[then(expr = "within {int} seconds the field {string} of GET {string} is {string}")]
async fn eventually_field_is(world: &mut ShopWorld, seconds: u64, path: String, url: String, expected: String) {
    let expected = expected_value(world, &expected);
    let world_ref = &*world;
    let response = eventually(Duration::from_secs(seconds), &format!("{path} of GET {url} becoming {expected}"), || {
        let (url, path, expected) = (url.clone(), path.clone(), expected.clone());
        async move {
            let response = world_ref.send(Method::GET, &url, Body::None, Credentials::Current).await;
            let actual = response.json.as_ref().and_then(|json| field(json, &path)).cloned();
            if response.status == 200 && actual.as_ref() == Some(&expected) {
                Ok(response)
            } else {
                Err(format!("{} {}", response.status, response.text))
            }
        }
    })
    .await;
    world.last = Some(response);
}
