//! The cucumber world: one per scenario. It owns the scenario's system, the HTTP client, the
//! current token, the variables steps remember, and the last response.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Mutex;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;

use shop_testkit_base::{Call, Client};

use crate::system::System;
use crate::teardown::{Expectations, ExpectedDeadLetter};

/// What a request carries.
#[derive(Debug, Clone)]
pub enum Body {
    None,
    Json(String),
    Form(String),
}

/// Which credentials a request carries.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// The token of whoever the scenario is logged in as (none if nobody is).
    Current,
    /// No Authorization header at all.
    Anonymous,
    /// This exact bearer token.
    Token(String),
    /// This exact Authorization header value.
    Header(String),
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// The HTTP version it came over (`HTTP/1.1`, `HTTP/2.0`).
    pub version: String,
    pub headers: HeaderMap,
    pub text: String,
    /// The body as JSON, when it is JSON.
    pub json: Option<Value>,
}

impl Response {
    pub fn json(&self) -> &Value {
        self.json.as_ref().unwrap_or_else(|| panic!("the response ({}) is not JSON: {:?}", self.status, self.text))
    }

    /// The value at a dotted path (`items.0.product_id`).
    pub fn field(&self, path: &str) -> &Value {
        field(self.json(), path).unwrap_or_else(|| panic!("the response has no field {path:?}: {}", self.text))
    }
}

pub fn field<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |current, segment| match current {
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|index| items.get(index)),
        other => other.get(segment),
    })
}

#[derive(cucumber::World)]
#[world(init = Self::new)]
pub struct ShopWorld {
    /// The scenario's system, once `Given the shop is running` has started it.
    pub system: Option<System>,
    pub http: reqwest::Client,
    /// The access token sent by default, once the scenario has logged in.
    pub token: Option<String>,
    /// Values remembered by steps (`PRODUCT_ID_1`, `TOKEN`, `USER_ID`), used in `${NAME}`.
    pub variables: BTreeMap<String, String>,
    pub last: Option<Response>,
    /// What the scenario does on purpose that the teardown must not hold against it: the faults
    /// it injected (the fault steps record them) and the messages it expects dead-lettered (each
    /// excuses the error lines logged while handling that message, and no other).
    pub expectations: Expectations,
    /// Orders a request through the world moved to shipped or delivered (seen in its answer): a
    /// refund after that keeps the stock, which the teardown's stock check must know. Behind a
    /// lock because requests are sent through `&self`, several at once.
    shipped_orders: Mutex<BTreeSet<String>>,
    /// Orders placed by the concurrent-orders step, with the instant each POST was sent, until a
    /// later step waits for them to settle.
    pub placed_orders: Vec<(String, std::time::Instant)>,
    /// The dead letters a step last looked at.
    pub dead_letters: Vec<common::messaging::dead_letters::DeadLetter>,
    /// Per instance and dependency put under "stops answering new connections": how many
    /// connections its proxy had accepted, and how many bytes it had swallowed, by then, so that
    /// a step can prove a later connection was opened into the hang rather than infer it.
    pub connections_before_hang: BTreeMap<(crate::system::Instance, crate::system::Dependency), (u64, u64)>,
    /// A Prometheus scraping the scenario's services, once a step started one; stopped with the
    /// world.
    pub prometheus: Option<crate::prometheus::Prometheus>,
}

impl fmt::Debug for ShopWorld {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ShopWorld")
            .field("system", &self.system.as_ref().map(|system| &system.id))
            .field("variables", &self.variables)
            .field("last_status", &self.last.as_ref().map(|response| response.status))
            .finish_non_exhaustive()
    }
}

impl ShopWorld {
    fn new() -> Self {
        Self {
            system: None,
            http: reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build().expect("HTTP client builds"),
            token: None,
            variables: BTreeMap::new(),
            connections_before_hang: BTreeMap::new(),
            last: None,
            expectations: Expectations::default(),
            shipped_orders: Mutex::default(),
            placed_orders: Vec::new(),
            dead_letters: Vec::new(),
            prometheus: None,
        }
    }

    pub fn system(&self) -> &System {
        self.system.as_ref().expect("the shop is not running: start it with `Given the shop is running`")
    }

    pub fn system_mut(&mut self) -> &mut System {
        self.system.as_mut().expect("the shop is not running: start it with `Given the shop is running`")
    }

    /// Records that the scenario injected a fault: from now on warnings about its dependencies'
    /// trouble are reported, not failed on.
    pub fn fault_injected(&mut self, description: impl Into<String>) {
        self.expectations.faults.push(description.into());
    }

    /// Records that the message of `queue` with `correlation_id` is expected in its dead-letter
    /// queue; `taken_out` when a step has already taken it from there.
    pub fn expect_dead_letter(&mut self, queue: &str, correlation_id: &str, taken_out: bool) {
        self.expectations.dead_letters.push(ExpectedDeadLetter {
            queue: queue.to_owned(),
            correlation_id: correlation_id.to_owned(),
            taken_out,
        });
    }

    /// What the teardown is told: the expectations, with the orders seen shipped.
    pub fn teardown_expectations(&self) -> Expectations {
        let mut expectations = self.expectations.clone();
        expectations.shipped_orders = self.shipped_orders.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        expectations
    }

    pub fn remember(&mut self, name: &str, value: impl Into<String>) {
        self.variables.insert(name.to_owned(), value.into());
    }

    pub fn variable(&self, name: &str) -> &str {
        self.variables.get(name).unwrap_or_else(|| panic!("no variable {name} was remembered"))
    }

    /// Replaces every `${NAME}` with its remembered value; an unknown name is an error, never
    /// silently left in place.
    pub fn interpolate(&self, text: &str) -> String {
        let mut output = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            output.push_str(&rest[..start]);
            let end = rest[start..].find('}').map(|offset| start + offset).unwrap_or_else(|| panic!("unclosed ${{ in {text:?}"));
            output.push_str(self.variable(&rest[start + 2..end]));
            rest = &rest[end + 1..];
        }
        output.push_str(rest);
        output
    }

    pub fn last_response(&self) -> &Response {
        self.last.as_ref().expect("no request has been sent yet")
    }

    /// Sends a request through the gateway and keeps the response as the last one.
    pub async fn request(&mut self, method: Method, path: &str, body: Body) -> &Response {
        self.request_with(method, path, body, Credentials::Current).await
    }

    pub async fn request_with(&mut self, method: Method, path: &str, body: Body, credentials: Credentials) -> &Response {
        let response = self.send(method, path, body, credentials).await;
        self.last = Some(response);
        self.last.as_ref().expect("just set")
    }

    /// Sends a request through the gateway without touching the last response.
    pub async fn send(&self, method: Method, path: &str, body: Body, credentials: Credentials) -> Response {
        self.send_to(&self.system().gateway_url(), method, path, body, credentials).await
    }

    /// Sends a request to `base` (the gateway, or one service directly, as the guide's health
    /// checks do) without touching the last response. A request that gets no response at all
    /// fails the step.
    pub async fn send_to(&self, base: &str, method: Method, path: &str, body: Body, credentials: Credentials) -> Response {
        self.try_send_to(base, method, path, body, credentials).await.unwrap_or_else(|error| panic!("{error}"))
    }

    /// Like [`ShopWorld::send`], but a request that gets no response (refused, reset, timed out)
    /// is an `Err` describing it, for probes that retry until a deadline.
    pub async fn try_send(&self, method: Method, path: &str, body: Body, credentials: Credentials) -> Result<Response, String> {
        self.try_send_to(&self.system().gateway_url(), method, path, body, credentials).await
    }

    pub async fn try_send_to(
        &self,
        base: &str,
        method: Method,
        path: &str,
        body: Body,
        credentials: Credentials,
    ) -> Result<Response, String> {
        self.try_send_with_headers(base, method, path, body, credentials, &[]).await
    }

    /// Like [`ShopWorld::send`], with these extra headers.
    pub async fn send_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Body,
        credentials: Credentials,
        headers: &[(&str, &str)],
    ) -> Response {
        let gateway = self.system().gateway_url();
        self.try_send_with_headers(&gateway, method, path, body, credentials, headers)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    pub async fn try_send_with_headers(
        &self,
        base: &str,
        method: Method,
        path: &str,
        body: Body,
        credentials: Credentials,
        headers: &[(&str, &str)],
    ) -> Result<Response, String> {
        let mut call = Call::new(method, self.interpolate(path));
        for (name, value) in headers {
            call = call.header(name, value);
        }
        match credentials {
            Credentials::Current => {
                if let Some(token) = &self.token {
                    call = call.bearer(token);
                }
            }
            Credentials::Anonymous => {}
            Credentials::Token(token) => call = call.bearer(&token),
            Credentials::Header(value) => call = call.header(reqwest::header::AUTHORIZATION.as_str(), &value),
        }
        call = match body {
            Body::None => call,
            Body::Json(text) => call.text("application/json", self.interpolate(&text)),
            Body::Form(text) => call.text("application/x-www-form-urlencoded", self.interpolate(&text)),
        };
        // The shop's typed client, sending the body as the step wrote it (the text is the
        // contract) and answering the raw response, which the steps assert on.
        let answer = Client::with_http(base, self.http.clone()).send(&call).await.map_err(|error| format!("{base}: {error}"))?;
        let json: Option<Value> = serde_json::from_str(&answer.body).ok();
        if answer.status == 200
            && let Some(order) = json.as_ref().filter(|json| matches!(json["status"].as_str(), Some("shipped" | "delivered")))
            && let Some(id) = order["_id"].as_str()
        {
            self.shipped_orders.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.to_owned());
        }
        Ok(Response { status: answer.status, version: answer.version, headers: answer.headers, text: answer.body, json })
    }
}
