//! What the goose load tests (src/main.rs) and the benchmark (src/bench.rs) share: sending one of
//! the typed client's calls (`shop_testkit_base::Call`) as a goose request, so that a measured
//! request is built exactly as the client builds it (paths, token, body, headers written once).

use goose::goose::GooseResponse;
use goose::prelude::*;
use shop_testkit_base::Call;

/// goose's name for a call's method.
pub fn goose_method(method: &reqwest::Method) -> GooseMethod {
    match *method {
        reqwest::Method::POST => GooseMethod::Post,
        reqwest::Method::PUT => GooseMethod::Put,
        reqwest::Method::DELETE => GooseMethod::Delete,
        reqwest::Method::PATCH => GooseMethod::Patch,
        reqwest::Method::HEAD => GooseMethod::Head,
        _ => GooseMethod::Get,
    }
}

/// Sends `call` as a goose request named `name` (how goose's report groups it); with `expect`,
/// any other status counts as an error in the report.
pub async fn send(
    user: &mut GooseUser,
    call: &Call,
    name: &str,
    expect: Option<u16>,
) -> Result<GooseResponse, Box<TransactionError>> {
    let method = goose_method(&call.method);
    let builder = call.apply(user.get_request_builder(&method, &call.path)?);
    let mut request = GooseRequest::builder().method(method).set_request_builder(builder).name(name);
    if let Some(status) = expect {
        request = request.expect_status_code(status);
    }
    user.request(request.build()).await
}

/// A response's body decoded as `T`, as goose's error type.
pub async fn decode<T: serde::de::DeserializeOwned>(response: GooseResponse) -> Result<T, Box<TransactionError>> {
    response.response?.json().await.map_err(|error| Box::new(TransactionError::Reqwest(error)))
}
