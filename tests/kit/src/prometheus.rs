//! A real Prometheus (Debian's `prometheus`, or the binary at `E2E_PROMETHEUS`) scraping one
//! scenario's services every second with the shop's own alert rules
//! (`deploy/prometheus/alerts.yml`, unchanged), so that a feature sees an alert fire and resolve
//! through Prometheus's API as an operator would. Its data directory is its own, removed when it
//! is dropped; the process is killed then too.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::system::{ServiceName, System};

/// One alert as Prometheus's `GET /api/v1/alerts` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// `pending` (its expression holds, not yet for its `for`) or `firing`.
    pub state: String,
}

/// A running Prometheus, killed when dropped.
pub struct Prometheus {
    child: Child,
    pub url: String,
    directory: PathBuf,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Prometheus").field("url", &self.url).finish_non_exhaustive()
    }
}

/// The shop's alert rules.
pub fn alert_rules() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus/alerts.yml")
}

/// Prometheus's configuration: every service's first replica as the job of its name, scraped
/// and evaluated every second, with `rules`.
pub fn configuration(targets: &[(&str, String)], rules: &std::path::Path) -> String {
    let mut text = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {:?}\nscrape_configs:\n",
        rules.display().to_string()
    );
    for (job, target) in targets {
        text.push_str(&format!("  - job_name: {job}\n    static_configs:\n      - targets: [{target:?}]\n"));
    }
    text
}

impl Prometheus {
    /// Starts Prometheus on a free port against `system`'s services and waits until it is ready.
    pub async fn start(system: &System) -> anyhow::Result<Self> {
        let binary = std::env::var_os("E2E_PROMETHEUS").map_or_else(|| PathBuf::from("prometheus"), PathBuf::from);
        let directory = std::env::temp_dir().join(format!("e2e-prometheus-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&directory)?;
        let targets: Vec<(&str, String)> = ServiceName::START_ORDER
            .iter()
            .map(|service| {
                let url = system.service_url(*service);
                (service.name(), url.trim_start_matches("http://").to_owned())
            })
            .collect();
        let rules = alert_rules().canonicalize().context("the alert rules are missing")?;
        std::fs::write(directory.join("prometheus.yml"), configuration(&targets, &rules))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(directory.join("prometheus.log"))?;
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", directory.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", directory.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!("failed to start {} (Debian's `prometheus`, which `cargo xtask e2e` installs)", binary.display())
            })?;
        let mut prometheus = Self { child, url: format!("http://127.0.0.1:{port}"), directory };
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                bail!("Prometheus exited with {status} at start: {}", prometheus.log());
            }
            let ready = http.get(format!("{}/-/ready", prometheus.url)).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return Ok(prometheus);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("Prometheus was not ready within 30 s: {}", prometheus.log());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Its log, for a failure's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory.join("prometheus.log")).unwrap_or_default()
    }

    /// Every alert pending or firing now.
    pub async fn alerts(&self, http: &reqwest::Client) -> anyhow::Result<Vec<Alert>> {
        let body: Value = http.get(format!("{}/api/v1/alerts", self.url)).send().await?.error_for_status()?.json().await?;
        let alerts = body["data"]["alerts"].as_array().context("no data.alerts in Prometheus's answer")?;
        Ok(alerts
            .iter()
            .map(|alert| {
                let labels: std::collections::BTreeMap<String, String> = alert["labels"]
                    .as_object()
                    .map(|labels| {
                        labels.iter().map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned())).collect()
                    })
                    .unwrap_or_default();
                Alert {
                    name: labels.get("alertname").cloned().unwrap_or_default(),
                    labels,
                    state: alert["state"].as_str().unwrap_or_default().to_owned(),
                }
            })
            .collect())
    }

    /// What Prometheus knows of its targets' health (`up`), by job, for a failure's message.
    pub async fn targets(&self, http: &reqwest::Client) -> String {
        match http.get(format!("{}/api/v1/targets", self.url)).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(error) => format!("(targets not read: {error})"),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_scrapes_each_service_every_second_with_the_shop_s_rules() {
        let text = configuration(
            &[("order", "127.0.0.1:41001".to_owned()), ("inventory", "127.0.0.1:41002".to_owned())],
            std::path::Path::new("/repo/deploy/prometheus/alerts.yml"),
        );
        assert_eq!(
            text,
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - \"/repo/deploy/prometheus/alerts.yml\"\n\
             scrape_configs:\n  - job_name: order\n    static_configs:\n      - targets: [\"127.0.0.1:41001\"]\n  \
             - job_name: inventory\n    static_configs:\n      - targets: [\"127.0.0.1:41002\"]\n"
        );
        assert!(alert_rules().is_file(), "{}", alert_rules().display());
    }
}
