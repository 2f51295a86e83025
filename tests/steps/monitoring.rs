//! Prometheus watching the scenario's shop with the shop's own alert rules: what an operator
//! sees fire, and resolve, through Prometheus's API.

use std::time::Duration;

use cucumber::{given, then};

use shop_testkit::eventually::eventually;
use shop_testkit::prometheus::{Alert, Prometheus};
use shop_testkit::world::ShopWorld;

#[given("Prometheus scrapes the shop with its alert rules")]
async fn prometheus_scrapes_the_shop(world: &mut ShopWorld) {
    let prometheus = Prometheus::start(world.system()).await.unwrap_or_else(|error| panic!("{error:#}"));
    world.prometheus = Some(prometheus);
}

fn prometheus(world: &ShopWorld) -> &Prometheus {
    world.prometheus.as_ref().expect("no Prometheus: start one with `Given Prometheus scrapes the shop with its alert rules`")
}

fn describe(alerts: &[Alert]) -> String {
    let listed: Vec<String> = alerts.iter().map(|alert| format!("{} {:?} ({})", alert.name, alert.labels, alert.state)).collect();
    if listed.is_empty() { "no alert at all".to_owned() } else { listed.join("; ") }
}

#[then(expr = "within {int} seconds Prometheus has the alert {string} firing with {string}")]
async fn alert_fires(world: &mut ShopWorld, seconds: u64, name: String, wanted: String) {
    let wanted = super::metrics::parse_labels(&wanted);
    let prometheus = prometheus(world);
    let http = &world.http;
    eventually(Duration::from_secs(seconds), &format!("{name} firing with {wanted:?}"), || {
        let (name, wanted) = (name.clone(), wanted.clone());
        async move {
            let alerts = prometheus.alerts(http).await.map_err(|error| format!("{error:#}"))?;
            let firing = alerts.iter().any(|alert| {
                alert.name == name
                    && alert.state == "firing"
                    && wanted.iter().all(|(key, value)| alert.labels.get(key) == Some(value))
            });
            if firing { Ok(()) } else { Err(describe(&alerts)) }
        }
    })
    .await;
}

/// Nothing firing: the healthy shop raises no alert, and every alert resolves once its cause is
/// gone. Pending alerts (an expression holding, not yet for its `for`) do not count.
#[then(expr = "within {int} seconds Prometheus has no alert firing")]
async fn nothing_fires(world: &mut ShopWorld, seconds: u64) {
    let prometheus = prometheus(world);
    let http = &world.http;
    eventually(Duration::from_secs(seconds), "no alert firing", || async move {
        let alerts = prometheus.alerts(http).await.map_err(|error| format!("{error:#}"))?;
        let firing: Vec<Alert> = alerts.into_iter().filter(|alert| alert.state == "firing").collect();
        if firing.is_empty() { Ok(()) } else { Err(describe(&firing)) }
    })
    .await;
}

/// Prometheus scraped every service of the shop successfully (`up` is 1 for each job): the alerts
/// it evaluates are about the shop, not about a scrape that never worked.
#[then("Prometheus scrapes every service of the shop")]
async fn every_target_up(world: &mut ShopWorld) {
    let prometheus = prometheus(world);
    let http = &world.http;
    eventually(Duration::from_secs(30), "every target up", || async move {
        let targets = prometheus.targets(http).await;
        let healthy = ["user", "product", "inventory", "order"].iter().all(|job| {
            targets.contains(&format!("\"job\":\"{job}\""))
                && !targets.contains("\"health\":\"down\"")
                && !targets.contains("\"health\":\"unknown\"")
        });
        if healthy { Ok(()) } else { Err(targets) }
    })
    .await;
}
