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
pub(crate) fn parse_labels(text: &str) -> BTreeMap<String, String> {
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

/// Every series the shop's alert rules read is one that something really reports: the services'
/// own at their `/metrics` (a counter's `_total`, a histogram's `_bucket` included, present as a
/// sample or declared with no sample yet); RabbitMQ's plugin's (`rabbitmq_*`) and Prometheus's
/// own `up` are named as such, not checked here. A rule reading a series nobody reports would
/// never fire.
#[then("every series the alert rules read is reported by the services, RabbitMQ or Prometheus itself")]
async fn alert_rules_read_real_series(world: &mut ShopWorld) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    let rules = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let read = shop_testkit_base::alert_rules::series_read(&rules);
    let mut reported = std::collections::BTreeSet::new();
    for service in ServiceName::START_ORDER {
        let base = world.system().service_url(service);
        let response = world
            .try_send_to(&base, Method::GET, "/metrics", Body::None, Credentials::Anonymous)
            .await
            .unwrap_or_else(|error| panic!("GET /metrics of {service:?}: {error}"));
        assert_eq!(response.status, 200, "GET /metrics of {service:?}");
        for line in response.text.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ").and_then(|rest| rest.split_whitespace().next()) {
                reported.insert(declared.to_owned());
            } else if let Some((name, _, _)) = parse_sample(line) {
                reported.insert(name);
            }
        }
    }
    let from_elsewhere = |name: &str| name == "up" || name.starts_with("rabbitmq_");
    let is_reported = |name: &str| {
        reported.contains(name)
            || ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix).is_some_and(|family| reported.contains(family)))
    };
    let ours: Vec<&String> = read.iter().filter(|name| !from_elsewhere(name)).collect();
    assert!(ours.len() >= 5, "the rules read too few of the services' series to be checked: {read:?}");
    let missing: Vec<&&String> = ours.iter().filter(|name| !is_reported(name)).collect();
    assert!(missing.is_empty(), "{} read series no service reports: {missing:?} (the rules read {read:?})", path.display());
}
