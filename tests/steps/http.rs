//! Generic HTTP steps: send a request through the gateway, then assert on the response. These
//! are for the guide's own sections and for checks where the request itself is the contract (a
//! status code, an error message, a query string); everything else has a step in the shop's words
//! in `auth`, `catalog` or `orders`. Every path, body and expected value may use `${NAME}` for a
//! remembered variable.
//!
//! Also here, being about HTTP rather than the shop: that a service's Swagger UI works offline.

use std::time::Duration;

use cucumber::gherkin::Step;
use cucumber::{then, when};
use reqwest::Method;
use serde_json::Value;

use shop_testkit::eventually::eventually;
use shop_testkit::snapshot;
use shop_testkit::system::ServiceName;
use shop_testkit::world::{Body, Credentials, ShopWorld, field};

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

/// A JSON body of `size` bytes (a string of that length): for the gateway's body limit.
#[when(expr = "I send a {word} request to {string} with a body of {int} bytes")]
async fn send_large_body(world: &mut ShopWorld, verb: String, path: String, size: usize) {
    let body = format!("\"{}\"", "a".repeat(size.saturating_sub(2)));
    world.request(method(&verb), &path, Body::Json(body)).await;
}

/// `path` followed by a query string that makes the URL `length` characters long.
#[when(expr = "I send a {word} request to {string} with a URL of {int} characters")]
async fn send_long_url(world: &mut ShopWorld, verb: String, path: String, length: usize) {
    let query = format!("?name={}", "a".repeat(length.saturating_sub(path.len() + 6)));
    world.request(method(&verb), &format!("{path}{query}"), Body::None).await;
}

/// A header `X-Padding` of `length` characters.
#[when(expr = "I send a {word} request to {string} with a header of {int} characters")]
async fn send_long_header(world: &mut ShopWorld, verb: String, path: String, length: usize) {
    let padding = "a".repeat(length);
    let gateway = world.system().gateway_url();
    let response = world
        .try_send_with_headers(&gateway, method(&verb), &path, Body::None, Credentials::Current, &[("x-padding", &padding)])
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    world.last = Some(response);
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

/// A request through the gateway carrying this `X-Request-Id`.
#[when(expr = "I send a {word} request to {string} with the request id {string}")]
async fn send_with_request_id(world: &mut ShopWorld, method: String, path: String, request_id: String) {
    let response = world
        .send_with_headers(self::method(&method), &path, Body::None, Credentials::Current, &[("x-request-id", &request_id)])
        .await;
    world.last = Some(response);
}

/// The answer carries an id the gateway made: nginx's 32 hexadecimal digits.
#[then("the response carries a request id the gateway made")]
async fn response_carries_a_gateway_request_id(world: &mut ShopWorld) {
    let response = world.last_response();
    let ids: Vec<&str> = response.headers.get_all("x-request-id").iter().filter_map(|value| value.to_str().ok()).collect();
    let [id] = ids.as_slice() else { panic!("expected one X-Request-Id, got {ids:?}") };
    assert!(id.len() == 32 && id.bytes().all(|byte| byte.is_ascii_hexdigit()), "not an id nginx made: {id:?}");
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

/// A string field contains the text; a list field has an element equal to the value (JSON when
/// it parses as JSON, as in `the response field ... is ...`). Any other field is a mistake in the
/// scenario, not a match.
#[then(expr = "the response field {string} contains {string}")]
async fn field_contains(world: &mut ShopWorld, path: String, expected: String) {
    let response = world.last_response();
    match response.field(&path) {
        Value::String(text) => {
            let expected = world.interpolate(&expected);
            assert!(text.contains(&expected), "field {path:?} = {text:?} does not contain {expected:?}");
        }
        Value::Array(items) => {
            let expected = expected_value(world, &expected);
            assert!(items.contains(&expected), "no element of field {path:?} equals {expected}: {}", Value::Array(items.clone()));
        }
        other => panic!("field {path:?} is neither a string nor a list, so it contains nothing: {other}"),
    }
}

/// A list field has an element, wherever it stands in the list, with every field of the table
/// (`| field | value |`, no header row; a field may be a dotted path, a value is read as in `the
/// response field ... is ...`).
#[then(expr = "the response field {string} holds an item with:")]
async fn field_holds_an_item_with(world: &mut ShopWorld, step: &Step, path: String) {
    let table = step.table.as_ref().unwrap_or_else(|| panic!("step {:?} needs a table of field and value", step.value));
    let expected: Vec<(String, Value)> = table.rows.iter().map(|row| (row[0].clone(), expected_value(world, &row[1]))).collect();
    let response = world.last_response();
    let items = response.field(&path).as_array().unwrap_or_else(|| panic!("field {path:?} is not a list: {}", response.text));
    let has_every_field = |item: &Value| expected.iter().all(|(name, value)| field(item, name) == Some(value));
    assert!(items.iter().any(has_every_field), "no element of field {path:?} has {expected:?}: {}", response.text);
}

/// The field errors of a refusal (a 422's `detail`: `[{"loc": [...], "msg": ..., "type": ...}]`),
/// or its sentence (every other refusal's `detail`).
enum Refusal<'a> {
    FieldErrors(&'a [Value]),
    Sentence(&'a str),
}

fn refusal(world: &ShopWorld) -> Refusal<'_> {
    let response = world.last_response();
    assert!(response.status >= 400, "not a refusal: {} {}", response.status, response.text);
    match response.field("detail") {
        Value::Array(errors) => Refusal::FieldErrors(errors),
        Value::String(sentence) => Refusal::Sentence(sentence),
        other => panic!("a refusal's detail is a sentence or a list of field errors, not {other}"),
    }
}

/// What a refusal names as wrong: one of its field errors is at `name` (its `loc` holds it), or
/// its sentence contains `name`.
#[then(expr = "the refusal names {string}")]
async fn refusal_names(world: &mut ShopWorld, name: String) {
    match refusal(world) {
        Refusal::FieldErrors(errors) => assert!(
            errors.iter().any(|error| error["loc"].as_array().is_some_and(|loc| loc.iter().any(|part| part == name.as_str()))),
            "no field error is at {name:?}: {}",
            world.last_response().text
        ),
        Refusal::Sentence(sentence) => assert!(sentence.contains(&name), "the refusal {sentence:?} does not name {name:?}"),
    }
}

/// What a 422 says of its fields: one of its field errors has exactly this message. (A refusal in
/// a sentence is checked with `the response field "detail" is ...`.)
#[then(expr = "the refusal says {string}")]
async fn refusal_says(world: &mut ShopWorld, message: String) {
    match refusal(world) {
        Refusal::FieldErrors(errors) => assert!(
            errors.iter().any(|error| error["msg"] == message.as_str()),
            "no field error says {message:?}: {}",
            world.last_response().text
        ),
        Refusal::Sentence(sentence) => {
            panic!("expected field errors, one saying {message:?}; the refusal is a sentence: {sentence:?}")
        }
    }
}

/// The response has a value (null included) at this dotted path (an object's key, a list's
/// index).
#[then(expr = "the response has the field {string}")]
async fn has_field(world: &mut ShopWorld, path: String) {
    world.last_response().field(&world.interpolate(&path));
}

#[then(expr = "the response is a list of {int} item(s)")]
async fn list_of(world: &mut ShopWorld, count: usize) {
    let items = world.last_response().json().as_array().unwrap_or_else(|| panic!("not a list: {}", world.last_response().text));
    assert_eq!(items.len(), count, "unexpected number of items: {}", world.last_response().text);
}

/// Every item of the last response, a list, has the field: the list is of the right things.
#[then(expr = "every item of the response has the field {string}")]
async fn every_item_has(world: &mut ShopWorld, name: String) {
    let response = world.last_response();
    let items = response.json().as_array().unwrap_or_else(|| panic!("not a list: {}", response.text));
    for item in items {
        assert!(field(item, &name).is_some(), "an item without {name:?}: {item}");
    }
}

/// The last response's JSON body is the one a GET of `path` answers now (the same collection
/// under another spelling of its path, say).
#[then(expr = "the response body is the one GET {string} answers")]
async fn body_is_what_get_answers(world: &mut ShopWorld, path: String) {
    let other = world.send(Method::GET, &path, Body::None, Credentials::Current).await;
    assert_eq!(other.status, 200, "GET {path} answered {}: {}", other.status, other.text);
    let last = world.last_response();
    assert_eq!(last.json(), other.json(), "GET {path} answered another body");
}

#[then(expr = "the response header {string} is {string}")]
async fn header_is(world: &mut ShopWorld, name: String, expected: String) {
    let expected = world.interpolate(&expected);
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
            let response = world_ref.try_send(Method::GET, &url, Body::None, Credentials::Current).await?;
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

/// Polls `GET url` (with the current token) until it answers `status`.
#[then(expr = "within {int} seconds GET {string} answers {int}")]
async fn within_seconds_get_answers(world: &mut ShopWorld, seconds: u64, url: String, status: u16) {
    let world_ref = &*world;
    let response = eventually(Duration::from_secs(seconds), &format!("GET {url} answering {status}"), || {
        let url = url.clone();
        async move {
            let response = world_ref.try_send(Method::GET, &url, Body::None, Credentials::Current).await?;
            if response.status == status { Ok(response) } else { Err(format!("{} {}", response.status, response.text)) }
        }
    })
    .await;
    world.last = Some(response);
}

/// Every place a page or script refers to another resource: `src` and `href` attributes, and
/// string literals that look like a URL or a path (`"/api/v1/openapi.json"`, `"./x.js"`), found
/// by scanning the text rather than parsing it, which is enough for Swagger UI's few static files.
fn references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=", "href="] {
        let mut rest = text;
        while let Some(start) = rest.find(attribute) {
            rest = &rest[start + attribute.len()..];
            let Some(quote) = rest.chars().next().filter(|character| *character == '"' || *character == '\'') else { continue };
            if let Some(end) = rest[1..].find(quote) {
                found.push(rest[1..1 + end].to_owned());
            }
        }
    }
    for literal in string_literals(text) {
        let looks_like_a_reference = ["/", "./", "../", "http://", "https://"].iter().any(|prefix| literal.starts_with(prefix))
            || [".js", ".css", ".json", ".png", ".html", ".svg"].iter().any(|suffix| literal.ends_with(suffix));
        if looks_like_a_reference && !found.contains(&literal) {
            found.push(literal);
        }
    }
    found
}

/// The contents of every "..." and '...' literal of a script (escapes kept as written).
fn string_literals(text: &str) -> Vec<String> {
    let mut literals = Vec::new();
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        if character != '"' && character != '\'' {
            continue;
        }
        let mut literal = String::new();
        while let Some(inner) = characters.next() {
            match inner {
                '\\' => {
                    literal.push(inner);
                    literal.extend(characters.next());
                }
                _ if inner == character => break,
                '\n' => break,
                _ => literal.push(inner),
            }
        }
        literals.push(literal);
    }
    literals
}

/// Every `http://` or `https://` URL written anywhere in the text, up to the next quote, space or
/// bracket.
fn absolute_urls(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for scheme in ["http://", "https://"] {
        let mut rest = text;
        while let Some(start) = rest.find(scheme) {
            let url: String = rest[start..].chars().take_while(|character| !"\"'`<>() \n\t".contains(*character)).collect();
            rest = &rest[start + scheme.len()..];
            found.push(url);
        }
    }
    found
}

async fn fetch(world: &ShopWorld, url: &url::Url) -> (url::Url, u16, String) {
    let response = world.http.get(url.clone()).send().await.unwrap_or_else(|error| panic!("GET {url} failed: {error}"));
    let final_url = response.url().clone();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_else(|error| panic!("GET {url}: unreadable body: {error}"));
    (final_url, status, text)
}

/// Works offline: the Swagger UI page (redirects followed) and the script that configures it
/// refer to nothing outside the service, and everything they refer to is served by the service
/// itself, with a 200 and a body.
#[then(expr = "the Swagger UI of the {word} service works offline")]
async fn swagger_ui_works_offline(world: &mut ShopWorld, service: String) {
    let service: ServiceName = service.parse().unwrap_or_else(|error: String| panic!("{error}"));
    let origin = url::Url::parse(&world.system().service_url(service)).expect("the service URL parses");
    check_swagger_ui(world, &origin, "/api/v1/docs", "/api/v1/openapi.json").await;
}

/// The same, through the gateway: the service's Swagger UI at `/docs/<service>/`, configured
/// with the gateway's address of its document, `/docs/<service>/openapi.json`.
#[then(expr = "the Swagger UI of the {word} service works offline through the gateway")]
async fn swagger_ui_works_through_the_gateway(world: &mut ShopWorld, service: String) {
    let origin = url::Url::parse(&world.system().gateway_url()).expect("the gateway URL parses");
    check_swagger_ui(world, &origin, &format!("/docs/{service}"), &format!("/docs/{service}/openapi.json")).await;
    let (document_url, status, document) =
        fetch(world, &origin.join(&format!("/docs/{service}/openapi.json")).expect("URL")).await;
    assert_eq!(status, 200, "GET {document_url}");
    let document: serde_json::Value = serde_json::from_str(&document).unwrap_or_else(|error| panic!("{document_url}: {error}"));
    assert!(document["paths"].as_object().is_some_and(|paths| !paths.is_empty()), "{document_url} describes no paths");
}

/// Checks Swagger UI at `docs_path` on `origin` (see the steps above): it loads only from there,
/// and is configured with the API description at `spec_path`.
async fn check_swagger_ui(world: &ShopWorld, origin: &url::Url, docs_path: &str, spec_path: &str) {
    let same_origin = |url: &url::Url| {
        url.scheme() == origin.scheme()
            && url.host() == origin.host()
            && url.port_or_known_default() == origin.port_or_known_default()
    };
    let (page_url, status, page) = fetch(world, &origin.join(docs_path).expect("docs URL")).await;
    assert_eq!(status, 200, "GET {page_url}: {page:.300}");
    assert!(same_origin(&page_url), "the docs redirect away from the service, to {page_url}");
    assert!(page.contains("swagger-ui"), "{page_url} is not Swagger UI: {page:.300}");

    let mut documents = vec![(page_url.clone(), page)];
    let mut checked = Vec::new();
    let mut index = 0;
    while index < documents.len() {
        let (document_url, text) = documents[index].clone();
        index += 1;
        for url in absolute_urls(&text) {
            let parsed = url::Url::parse(&url).unwrap_or_else(|error| panic!("{document_url} refers to {url:?}: {error}"));
            assert!(same_origin(&parsed), "{document_url} refers to another host: {url}");
        }
        for reference in references(&text) {
            let url =
                document_url.join(&reference).unwrap_or_else(|error| panic!("{document_url} refers to {reference:?}: {error}"));
            assert!(same_origin(&url), "{document_url} refers to another host: {reference}");
            if checked.contains(&url) {
                continue;
            }
            let (final_url, status, body) = fetch(world, &url).await;
            assert_eq!(status, 200, "{document_url} refers to {reference}, which answers {status}");
            assert!(same_origin(&final_url), "{reference} redirects away from the service, to {final_url}");
            assert!(!body.is_empty(), "{document_url} refers to {reference}, which is empty");
            // The page's own scripts are read too, except the vendored Swagger UI bundles, whose
            // code mentions many URLs it never loads: the script that configures the page is
            // what says where the API description comes from.
            let is_configuration_script = url.path().ends_with(".js") && !url.path().contains("swagger-ui");
            if is_configuration_script {
                documents.push((final_url, body));
            }
            checked.push(url);
        }
    }
    let configuration_scripts = documents.len() - 1;
    assert!(configuration_scripts >= 1, "the Swagger UI page has no initialisation script of its own: {}", documents[0].1);
    assert!(
        checked.iter().any(|url| url.path() == spec_path),
        "Swagger UI is not configured with {spec_path}; it loads {checked:?}"
    );
}
