//! One typed client of the shop's API, for everything outside the services that talks to it: the
//! end-to-end steps, the chaos run, the load tests and the benchmark, and xtask's checks.
//!
//! Three layers, each usable alone:
//! - [`paths`]: every route, written once.
//! - [`Call`]: one request described (method, path, token, body, headers), built by a named
//!   constructor per operation (`Call::place_order`, ...). [`Call::apply`] puts it on any
//!   `reqwest::RequestBuilder`, so goose, which measures requests made with its own builder,
//!   sends exactly the request the client would.
//! - [`Client`]: sends a call and answers a typed value (`place_order` → [`Placed`]), or, with
//!   [`Client::send`], the raw [`Answer`] (status, headers, body) for a caller that asserts on
//!   the wire itself. A typed call that gets another status than its success is an
//!   [`ApiError::Refused`] carrying the status and the body.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::{NewAddress, NewOrder, NewProduct, Order, Placed, Product, Registration, Stock, StoredAddress, Tokens, User};

/// The shop's routes, as the gateway and each service serve them.
pub mod paths {
    pub const REGISTER: &str = "/api/v1/auth/register";
    pub const LOGIN: &str = "/api/v1/auth/login";
    pub const REFRESH: &str = "/api/v1/auth/refresh";
    pub const LOGOUT: &str = "/api/v1/auth/logout";
    pub const ME: &str = "/api/v1/users/me";
    pub const ADDRESSES: &str = "/api/v1/users/me/addresses";
    pub const PRODUCTS: &str = "/api/v1/products/";
    pub const ORDERS: &str = "/api/v1/orders/";
    pub const HEALTH: &str = "/health";
    pub const READY: &str = "/ready";
    pub const METRICS: &str = "/metrics";

    pub fn product(id: &str) -> String {
        format!("/api/v1/products/{id}")
    }

    pub fn stock(product_id: &str) -> String {
        format!("/api/v1/inventory/{product_id}")
    }

    pub fn order(id: &str) -> String {
        format!("/api/v1/orders/{id}")
    }

    pub fn order_status(id: &str) -> String {
        format!("/api/v1/orders/{id}/status")
    }

    /// One page of the caller's orders.
    pub fn orders_page(skip: u64, limit: u64) -> String {
        format!("/api/v1/orders/?skip={skip}&limit={limit}")
    }

    /// One page of a category of the catalog (the category URL-encoded here).
    pub fn products_in_category(category: &str, limit: u64) -> String {
        let category: String = url::form_urlencoded::byte_serialize(category.as_bytes()).collect();
        format!("/api/v1/products/?category={}&limit={limit}", category.replace('+', "%20"))
    }
}

/// The header that makes an order's POST safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The header that says a POST was answered with the order an earlier try placed.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// A request's body.
#[derive(Debug, Clone)]
pub enum CallBody {
    None,
    Json(Value),
    Form(Vec<(String, String)>),
    /// A body sent exactly as written, with its content type: for the callers whose text is the
    /// contract (the guide's literal requests, malformed bodies).
    Text {
        content_type: String,
        text: String,
    },
}

/// One request to the shop, described; sent by [`Client::send`] or put on a builder by
/// [`Call::apply`].
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub token: Option<String>,
    pub body: CallBody,
    pub headers: Vec<(String, String)>,
}

impl Call {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self { method, path: path.into(), token: None, body: CallBody::None, headers: Vec::new() }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }

    pub fn bearer(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// A JSON body (a value that cannot be serialised is a bug of the caller: it panics).
    pub fn json(mut self, body: &impl Serialize) -> Self {
        self.body = CallBody::Json(serde_json::to_value(body).expect("a request body serialises to JSON"));
        self
    }

    pub fn form(mut self, fields: &[(&str, &str)]) -> Self {
        self.body = CallBody::Form(fields.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect());
        self
    }

    /// A body sent as written, with `content_type`.
    pub fn text(mut self, content_type: &str, text: impl Into<String>) -> Self {
        self.body = CallBody::Text { content_type: content_type.to_owned(), text: text.into() };
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// `METHOD path`, for messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Puts the token, the body and the headers on `builder` (made for this call's method and
    /// path by whoever sends it: the client, or goose).
    pub fn apply(&self, mut builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        match &self.body {
            CallBody::None => builder,
            CallBody::Json(body) => builder.json(body),
            CallBody::Form(fields) => builder.form(fields),
            CallBody::Text { content_type, text } => {
                builder.header(reqwest::header::CONTENT_TYPE, content_type.as_str()).body(text.clone())
            }
        }
    }

    pub fn register(registration: &Registration) -> Self {
        Self::post(paths::REGISTER).json(registration)
    }

    /// The OAuth2 password form.
    pub fn log_in(email: &str, password: &str) -> Self {
        Self::post(paths::LOGIN).form(&[("username", email), ("password", password)])
    }

    pub fn refresh(refresh_token: &str) -> Self {
        Self::post(paths::REFRESH).json(&serde_json::json!({ "refresh_token": refresh_token }))
    }

    pub fn me(token: &str) -> Self {
        Self::get(paths::ME).bearer(token)
    }

    pub fn add_address(token: &str, address: &NewAddress) -> Self {
        Self::post(paths::ADDRESSES).bearer(token).json(address)
    }

    pub fn create_product(token: &str, product: &NewProduct) -> Self {
        Self::post(paths::PRODUCTS).bearer(token).json(product)
    }

    pub fn product(id: &str) -> Self {
        Self::get(paths::product(id))
    }

    pub fn products_in_category(category: &str, limit: u64) -> Self {
        Self::get(paths::products_in_category(category, limit))
    }

    pub fn stock(token: &str, product_id: &str) -> Self {
        Self::get(paths::stock(product_id)).bearer(token)
    }

    /// An order; with `idempotency_key`, safe to send again after a 5xx or no answer.
    pub fn place_order(token: &str, idempotency_key: Option<&str>, order: &NewOrder) -> Self {
        let call = Self::post(paths::ORDERS).bearer(token).json(order);
        match idempotency_key {
            Some(key) => call.header(IDEMPOTENCY_KEY, key),
            None => call,
        }
    }

    pub fn order(token: &str, id: &str) -> Self {
        Self::get(paths::order(id)).bearer(token)
    }

    pub fn orders_page(token: &str, skip: u64, limit: u64) -> Self {
        Self::get(paths::orders_page(skip, limit)).bearer(token)
    }

    /// The customer's cancel: `DELETE /orders/{id}`.
    pub fn cancel_order(token: &str, id: &str) -> Self {
        Self::new(Method::DELETE, paths::order(id)).bearer(token)
    }

    /// `PUT /orders/{id}/status` (`refunded`, `shipped`, ...).
    pub fn set_order_status(token: &str, id: &str, status: &str) -> Self {
        Self::new(Method::PUT, paths::order_status(id)).bearer(token).json(&serde_json::json!({ "status": status }))
    }

    pub fn health() -> Self {
        Self::get(paths::HEALTH)
    }

    pub fn ready() -> Self {
        Self::get(paths::READY)
    }

    pub fn metrics() -> Self {
        Self::get(paths::METRICS)
    }
}

/// What the shop answered, as it came.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The HTTP version it came over (`HTTP/1.1`, `HTTP/2.0`).
    pub version: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let version = format!("{:?}", response.version());
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        Self { status, version, headers, body }
    }

    /// The body as JSON, `null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// A header's value, when it is there and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body decoded as `T` when the status is `success`; otherwise why not.
    pub fn expect<T: DeserializeOwned>(self, call: &str, success: u16) -> Result<T, ApiError> {
        if self.status != success {
            return Err(ApiError::Refused { call: call.to_owned(), status: self.status, body: self.body });
        }
        serde_json::from_str(if self.body.is_empty() { "null" } else { &self.body }).map_err(|error| ApiError::Undecodable {
            call: call.to_owned(),
            error: error.to_string(),
            body: self.body,
        })
    }
}

/// Why a typed call did not give its value.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// No answer: refused, reset, timed out.
    NoAnswer { call: String, error: String },
    /// An answer with another status than the call's success.
    Refused { call: String, status: u16, body: String },
    /// The success status with a body that is not the expected shape.
    Undecodable { call: String, error: String, body: String },
}

impl ApiError {
    /// The status answered, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::NoAnswer { call, error } => write!(formatter, "{call} got no answer: {error}"),
            ApiError::Refused { call, status, body } => write!(formatter, "{call} answered {status}: {body}"),
            ApiError::Undecodable { call, error, body } => {
                write!(formatter, "{call} answered a body that does not decode ({error}): {body}")
            }
        }
    }
}

impl std::error::Error for ApiError {}

/// A customer with a session: what signing up gives.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: User,
    pub tokens: Tokens,
}

/// The shop's API at one base URL: the gateway, or one service.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
}

/// How long a request may take by default: longer than the gateway waits for a service.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    pub fn new(base_url: impl Into<String>) -> Self {
        let http = reqwest::Client::builder().timeout(DEFAULT_TIMEOUT).build().expect("an HTTP client without TLS builds");
        Self::with_http(base_url, http)
    }

    /// A client sharing `http`'s connection pool and settings.
    pub fn with_http(base_url: impl Into<String>, http: reqwest::Client) -> Self {
        Self { http, base_url: base_url.into().trim_end_matches('/').to_owned() }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The request builder for `call`, not yet sent.
    pub fn request(&self, call: &Call) -> reqwest::RequestBuilder {
        call.apply(self.http.request(call.method.clone(), format!("{}{}", self.base_url, call.path)))
    }

    /// Sends `call` and returns whatever was answered.
    pub async fn send(&self, call: &Call) -> Result<Answer, ApiError> {
        match self.request(call).send().await {
            Ok(response) => Ok(Answer::read(response).await),
            Err(error) => Err(ApiError::NoAnswer { call: call.describe(), error: error_chain(&error) }),
        }
    }

    /// Sends `call` and decodes its answer as `T` when it has the status `success`.
    pub async fn typed<T: DeserializeOwned>(&self, call: &Call, success: u16) -> Result<T, ApiError> {
        self.send(call).await?.expect(&call.describe(), success)
    }

    pub async fn register(&self, registration: &Registration) -> Result<User, ApiError> {
        self.typed(&Call::register(registration), 201).await
    }

    pub async fn log_in(&self, email: &str, password: &str) -> Result<Tokens, ApiError> {
        self.typed(&Call::log_in(email, password), 200).await
    }

    /// Logs in, waiting out the gateway's per-address login limit (429 with `Retry-After`) for
    /// at most `patience`.
    pub async fn log_in_patiently(&self, email: &str, password: &str, patience: Duration) -> Result<Tokens, ApiError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let answer = self.send(&Call::log_in(email, password)).await?;
            if answer.status == 429 && tokio::time::Instant::now() < deadline {
                let wait = answer.header("retry-after").and_then(|value| value.parse().ok()).unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            return answer.expect("POST /api/v1/auth/login", 200);
        }
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, ApiError> {
        self.typed(&Call::refresh(refresh_token), 200).await
    }

    pub async fn me(&self, token: &str) -> Result<User, ApiError> {
        self.typed(&Call::me(token), 200).await
    }

    /// Registers, logs in (patiently, see [`Client::log_in_patiently`]) and reads the account.
    pub async fn sign_up(&self, registration: &Registration) -> Result<SignedIn, ApiError> {
        self.register(registration).await?;
        let tokens = self.log_in_patiently(&registration.email, &registration.password, Duration::from_secs(60)).await?;
        let user = self.me(&tokens.access_token).await?;
        Ok(SignedIn { user, tokens })
    }

    pub async fn add_address(&self, token: &str, address: &NewAddress) -> Result<StoredAddress, ApiError> {
        self.typed(&Call::add_address(token, address), 201).await
    }

    pub async fn create_product(&self, token: &str, product: &NewProduct) -> Result<Product, ApiError> {
        self.typed(&Call::create_product(token, product), 201).await
    }

    pub async fn product(&self, id: &str) -> Result<Product, ApiError> {
        self.typed(&Call::product(id), 200).await
    }

    pub async fn stock(&self, token: &str, product_id: &str) -> Result<Stock, ApiError> {
        self.typed(&Call::stock(token, product_id), 200).await
    }

    /// Places an order (201), telling whether the answer replayed an earlier try's order.
    pub async fn place_order(&self, token: &str, idempotency_key: Option<&str>, order: &NewOrder) -> Result<Placed, ApiError> {
        let call = Call::place_order(token, idempotency_key, order);
        let answer = self.send(&call).await?;
        let replayed = answer.header(IDEMPOTENT_REPLAYED).is_some();
        Ok(Placed { order: answer.expect(&call.describe(), 201)?, replayed })
    }

    pub async fn order(&self, token: &str, id: &str) -> Result<Order, ApiError> {
        self.typed(&Call::order(token, id), 200).await
    }

    /// Every order of the customer, page by page.
    pub async fn all_orders(&self, token: &str) -> Result<Vec<Order>, ApiError> {
        const PAGE: u64 = 100;
        let mut orders = Vec::new();
        for skip in (0..).step_by(PAGE as usize) {
            let page: Vec<Order> = self.typed(&Call::orders_page(token, skip, PAGE), 200).await?;
            let last = (page.len() as u64) < PAGE;
            orders.extend(page);
            if last {
                break;
            }
        }
        Ok(orders)
    }

    /// The customer's cancel (204).
    pub async fn cancel_order(&self, token: &str, id: &str) -> Result<(), ApiError> {
        let call = Call::cancel_order(token, id);
        let answer = self.send(&call).await?;
        if answer.status == 204 {
            Ok(())
        } else {
            Err(ApiError::Refused { call: call.describe(), status: answer.status, body: answer.body })
        }
    }

    pub async fn set_order_status(&self, token: &str, id: &str, status: &str) -> Result<Order, ApiError> {
        self.typed(&Call::set_order_status(token, id, status), 200).await
    }

    /// `GET /health`: 200 with `{"status": "healthy", ...}` while the process serves.
    pub async fn health(&self) -> Result<Value, ApiError> {
        self.typed(&Call::health(), 200).await
    }

    /// `GET /ready`, as answered (200, or 503 with a `detail` naming what does not work).
    pub async fn readiness(&self) -> Result<Answer, ApiError> {
        self.send(&Call::ready()).await
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> Result<String, ApiError> {
        let call = Call::metrics();
        let answer = self.send(&call).await?;
        if answer.status == 200 {
            Ok(answer.body)
        } else {
            Err(ApiError::Refused { call: call.describe(), status: answer.status, body: answer.body })
        }
    }
}

/// An error and its causes, on one line (reqwest's own message names only the outermost).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Address, OrderLine};

    fn order() -> NewOrder {
        NewOrder {
            user_id: "7".into(),
            items: vec![OrderLine { product_id: "a".repeat(24), quantity: 2, price: 10.99 }],
            shipping_address: Address {
                line1: "1 Street".into(),
                line2: None,
                city: "Town".into(),
                state: "ST".into(),
                postal_code: "12345".into(),
                country: "Land".into(),
            },
        }
    }

    #[test]
    fn an_order_call_carries_its_key_its_token_and_its_body() {
        let call = Call::place_order("token-1", Some("key-1"), &order());
        let request = Client::new("http://127.0.0.1:9/").request(&call).build().expect("a request");
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.url().as_str(), "http://127.0.0.1:9/api/v1/orders/");
        assert_eq!(request.headers()[IDEMPOTENCY_KEY], "key-1");
        assert_eq!(request.headers()["authorization"], "Bearer token-1");
        let body: Value = serde_json::from_slice(request.body().and_then(|body| body.as_bytes()).expect("a body")).unwrap();
        assert_eq!(body["items"][0]["price"], serde_json::json!(10.99));
        assert!(body["shipping_address"].get("line2").is_none(), "an absent line2 is not sent: {body}");
    }

    #[test]
    fn a_login_is_the_oauth2_password_form() {
        let request = Client::new("http://gateway").request(&Call::log_in("a+b@example.com", "pw d")).build().unwrap();
        assert_eq!(request.headers()["content-type"], "application/x-www-form-urlencoded");
        let body = std::str::from_utf8(request.body().and_then(|body| body.as_bytes()).unwrap()).unwrap();
        assert_eq!(body, "username=a%2Bb%40example.com&password=pw+d");
    }

    #[test]
    fn an_answer_with_another_status_is_refused_with_its_status_and_body() {
        let answer =
            Answer { status: 409, version: "HTTP/1.1".into(), headers: HeaderMap::new(), body: r#"{"detail":"taken"}"#.into() };
        let error = answer.expect::<User>("POST /api/v1/auth/register", 201).unwrap_err();
        assert_eq!(error.status(), Some(409));
        assert_eq!(error.to_string(), r#"POST /api/v1/auth/register answered 409: {"detail":"taken"}"#);
    }

    #[test]
    fn an_answer_of_the_wrong_shape_names_the_call() {
        let answer = Answer {
            status: 200,
            version: "HTTP/1.1".into(),
            headers: HeaderMap::new(),
            body: r#"{"id": "not a number"}"#.into(),
        };
        let error = answer.expect::<User>("GET /api/v1/users/me", 200).unwrap_err();
        assert!(matches!(error, ApiError::Undecodable { .. }), "{error}");
    }

    #[test]
    fn a_text_body_is_sent_as_written_with_its_content_type() {
        let call = Call::post(paths::LOGIN).text("application/x-www-form-urlencoded", "username=a&password=");
        let request = Client::new("http://gateway").request(&call).build().unwrap();
        assert_eq!(request.headers()["content-type"], "application/x-www-form-urlencoded");
        assert_eq!(request.body().and_then(|body| body.as_bytes()), Some(&b"username=a&password="[..]));
    }

    #[test]
    fn a_category_is_encoded_in_its_path() {
        assert_eq!(paths::products_in_category("Bench 3", 20), "/api/v1/products/?category=Bench%203&limit=20");
    }
}
