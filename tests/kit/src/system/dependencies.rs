//! Which instances depend on which server, and the proof that a server's fault is in effect
//! where it should be: the instances that depend on it say so on `GET /ready`, naming the check
//! that fails ("database" or "broker", see `common::health`).

use std::time::Duration;

use anyhow::bail;

use super::addresses::*;
use super::*;

/// How often readiness is asked while waiting for a check to fail.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

impl System {
    /// The servers this system uses: its [`Setup::servers`], or the process's.
    pub fn servers(&self) -> &'static Infrastructure {
        self.infrastructure
    }

    /// Every instance that depends on a server of `kind`, with the name of its readiness check
    /// that fails while that server is down: PostgreSQL, the user and inventory services'
    /// "database"; MongoDB, the product and order services' "database"; RabbitMQ, every service
    /// but the user service's "broker".
    pub fn instances_depending_on(&self, kind: ServerKind) -> Vec<(Instance, &'static str)> {
        self.all_instances()
            .into_iter()
            .filter_map(|instance| {
                let service = instance.service;
                let depends = match kind {
                    ServerKind::Postgres => matches!(service, ServiceName::User | ServiceName::Inventory),
                    ServerKind::MongoDb => matches!(service, ServiceName::Product | ServiceName::Order),
                    ServerKind::RabbitMq => service.dependencies().contains(&Dependency::Broker),
                };
                let check = if kind == ServerKind::RabbitMq { "broker" } else { "database" };
                depends.then_some((instance, check))
            })
            .collect()
    }

    /// Polls `GET /ready` on `instance` until it answers 503 with `check` failing in its
    /// `checks` map, and returns that body (`{"status": "not ready", "checks": {...}, "detail":
    /// ...}`). Fails at once if the instance has no check of that name, and after `deadline` with
    /// the last answer it saw.
    pub async fn wait_until_not_ready_naming(
        &self,
        instance: Instance,
        check: &str,
        deadline: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        let started = tokio::time::Instant::now();
        loop {
            let answer = self.readiness(instance).await;
            if let Ok((status, body)) = &answer {
                let checks = body.get("checks").and_then(serde_json::Value::as_object);
                if let Some(checks) = checks {
                    match checks.get(check) {
                        None => bail!(
                            "{instance} has no readiness check {check:?}; its checks: {:?}",
                            checks.keys().collect::<Vec<_>>()
                        ),
                        Some(outcome) if *status == 503 && outcome != "ok" => return Ok(body.clone()),
                        Some(_) => {}
                    }
                }
            }
            if started.elapsed() >= deadline {
                bail!("{instance} did not report {check:?} failing within {deadline:?}; last GET /ready: {answer:?}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}
