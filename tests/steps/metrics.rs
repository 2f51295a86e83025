//! What the services report at `GET /metrics`, read the way Prometheus reads it: one sample per
//! line, `name{label="value",...} number`.

use std::collections::BTreeMap;
use std::time::Duration;

use cucumber::then;
use reqwest::Method;

use shop_testkit::eventually::eventually;
use shop_testkit::system::ServiceName;
use shop_testkit::world::{Body, Credentials, ShopWorld};

/// One sample: the metric's name, its labels, and its value.
fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let labels = rest.strip_suffix('}')?;
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| pair.split_once('='))
                .map(|(key, value)| (key.to_owned(), value.trim_matches('"').to_owned()))
                .collect();
            (name, labels)
        }
    };
    Some((name.to_owned(), labels, value))
}

/// `labels` written as `key=value,key=value` (no quotes); empty for none.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or_else(|| panic!("a label is key=value, not {pair:?}"));
            (key.trim().to_owned(), value.trim().to_owned())
        })
        .collect()
}

/// The sample of `name` whose labels are exactly `labels` in the service's `/metrics` (replica 1)
/// reaches `expected` within a few seconds (a consumer records a delivery once it has finished
/// with it, a moment after its effects are visible).
#[then(expr = "the {word} service's metric {string} with {string} is {float}")]
async fn metric_is(world: &mut ShopWorld, service: String, name: String, labels: String, expected: f64) {
    let service: ServiceName = service.parse().unwrap_or_else(|error: String| panic!("{error}"));
    let wanted = parse_labels(&labels);
    let base = world.system().service_url(service);
    let world = &*world;
    let labels = &labels;
    eventually(Duration::from_secs(10), &format!("{name}{{{labels}}} = {expected}"), || {
        let (base, name, wanted) = (base.clone(), name.clone(), wanted.clone());
        async move {
            let response = world.try_send_to(&base, Method::GET, "/metrics", Body::None, Credentials::Anonymous).await?;
            if response.status != 200 {
                return Err(format!("GET /metrics answered {}", response.status));
            }
            let found = response
                .text
                .lines()
                .filter_map(parse_sample)
                .find(|(sample, labels, _)| *sample == name && *labels == wanted)
                .map(|(_, _, value)| value);
            match found {
                Some(value) if (value - expected).abs() < 1e-9 => Ok(()),
                other => Err(format!("{name}{{{labels}}} is {other:?}")),
            }
        }
    })
    .await;
}
