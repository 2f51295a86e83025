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

#[cfg(test)]
mod tests {
    use shop_testkit_base::OwnServers;

    use super::*;

    /// A system on servers of its own: a killed server shows, on the readiness of exactly the
    /// instances that depend on it, as the check named for it; started again, every instance is
    /// ready again. Also proves `Setup::servers`: the services reach those servers, not the
    /// machine's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "starts a RabbitMQ node of its own and kills it: about a minute; run with --ignored"]
    async fn a_killed_server_shows_on_the_readiness_of_the_instances_that_depend_on_it() {
        let root = std::env::temp_dir().join(format!("own-servers-kit-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
        let mut servers = OwnServers::start(&root).await.expect("the own servers start");
        let urls: &'static Infrastructure = Box::leak(Box::new(servers.urls()));
        let mut system = System::start(&Setup { servers: Some(urls), ..Setup::default() }).await.expect("the system starts");
        assert_eq!(system.servers(), urls);

        for kind in [ServerKind::Postgres, ServerKind::MongoDb, ServerKind::RabbitMq] {
            let depending = system.instances_depending_on(kind);
            servers.kill(kind).await.expect("the kill");
            for (instance, check) in &depending {
                let body = system
                    .wait_until_not_ready_naming(*instance, check, Duration::from_secs(30))
                    .await
                    .unwrap_or_else(|error| panic!("{kind} killed: {error:#}"));
                assert_eq!(body["status"], "not ready", "{body}");
            }
            for instance in system.all_instances() {
                if !depending.iter().any(|(depending, _)| *depending == instance) {
                    assert_eq!(system.readiness(instance).await.unwrap().0, 200, "{instance} does not depend on {kind}");
                }
            }
            servers.start_again(kind).await.expect("the server starts again");
            for instance in system.all_instances() {
                system
                    .wait_until_ready(instance, Duration::from_secs(90))
                    .await
                    .unwrap_or_else(|error| panic!("{kind} back: {error:#}"));
            }
        }
        let error =
            system.wait_until_not_ready_naming(Instance::first(ServiceName::User), "broker", Duration::from_secs(5)).await;
        assert!(format!("{:#}", error.unwrap_err()).contains("no readiness check"), "the user service has no broker");

        system.stop_everything().await.expect("the system stops");
        system.remove_data().await.expect("the data is removed");
        servers.shut_down().await;
    }
}
