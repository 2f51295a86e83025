//! The fault lanes: each injects its planned faults one after the other, beside the customers,
//! and proves each in effect before it counts and healed before the next: a fault that cannot be
//! verified is recorded as such and fails the run.
//!
//! How each kind is proved:
//! - a server stopped or killed: its port refuses connections (the servers' own proof), and every
//!   running instance that uses it says so in `GET /ready` (its `database` or `broker` check
//!   failing); healed: the server answers a real query again, and every instance is ready again;
//! - a replica killed: a connection to its port is refused; healed: it is ready again;
//! - a cut: the proxy holds no connection and closes new ones (the proxy's own proof), and the
//!   replica's `/ready` names the dependency;
//! - a database hang: the replica's `/ready` names its database (the check times out);
//! - a broker hang: the proxy swallowed bytes that the replica or the broker sent (every broker
//!   connection carries heartbeats every few seconds), or the replica's `/ready` names the broker;
//! - latency: the proxy delayed bytes of the replica's own traffic (its `/ready`, asked by the
//!   proof, pings the database).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shop_testkit::base::own_servers::{OwnServers, ServerKind};
use shop_testkit::proxy::Mode;
use shop_testkit::system::{Dependency, Instance, System};
use tokio::sync::Mutex;

use crate::plan::{FaultKind, Lane, PlannedFault, Target};

/// How long a fault may take to show (an instance's `/ready` runs its checks with a 2 s timeout;
/// a server's clients notice a closed connection at once, a hung one at their next use).
pub const SHOW_PATIENCE: Duration = Duration::from_secs(20);
/// How long a healed target may take to be ready again: a consumer paused by an outage probes
/// again after a back-off of up to 30 s.
pub const HEAL_PATIENCE: Duration = Duration::from_secs(75);
/// Every byte between a replica and its database, under `DatabaseSlow`, waits this long: longer
/// than `/ready`'s 2 s check timeout, so a query of a few round trips outlasts what a client
/// waits for it.
pub const LATENCY: Duration = Duration::from_millis(1_500);

/// One fault as it happened.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    pub kind: FaultKind,
    pub target: Target,
    pub planned_length: Duration,
    pub injected_at: Instant,
    /// When the fault was proved in effect; `None`: it never was.
    pub verified_at: Option<Instant>,
    pub heal_started: Option<Instant>,
    /// When the heal was proved (everything ready again); `None`: it never was.
    pub healed_at: Option<Instant>,
    /// What the proofs found wrong.
    pub problems: Vec<String>,
}

impl FaultRecord {
    /// From injection to the proved heal (to the end of the run if never proved).
    pub fn window(&self, run_end: Instant) -> (Instant, Instant) {
        (self.injected_at, self.healed_at.unwrap_or(run_end))
    }

    /// How long the fault was in effect, proved at both ends.
    pub fn verified_length(&self) -> Option<Duration> {
        Some(self.heal_started?.saturating_duration_since(self.verified_at?))
    }
}

/// What the lanes share: the system, the run's own servers, the faults in effect and the records.
pub struct Faults {
    pub system: Arc<Mutex<System>>,
    pub servers: Arc<Mutex<OwnServers>>,
    /// Faults in effect now, by target: a proof of one fault must not expect an instance another
    /// lane has taken down to answer.
    active: std::sync::Mutex<BTreeMap<Target, FaultKind>>,
    pub records: std::sync::Mutex<Vec<FaultRecord>>,
    began: Instant,
    http: reqwest::Client,
}

impl Faults {
    pub fn new(system: Arc<Mutex<System>>, servers: Arc<Mutex<OwnServers>>, began: Instant) -> Arc<Self> {
        Arc::new(Self {
            system,
            servers,
            active: std::sync::Mutex::new(BTreeMap::new()),
            records: std::sync::Mutex::new(Vec::new()),
            began,
            http: reqwest::Client::new(),
        })
    }

    /// Runs one lane to its end.
    pub async fn run_lane(self: Arc<Self>, lane: Lane) {
        for fault in lane.faults {
            tokio::time::sleep(fault.quiet_before).await;
            let record = self.inject_and_heal(&fault).await;
            self.records.lock().expect("records").push(record);
        }
    }

    fn say(&self, what: &str) {
        println!("chaos: {:>7.2} s  {what}", self.began.elapsed().as_secs_f64());
    }

    async fn inject_and_heal(&self, fault: &PlannedFault) -> FaultRecord {
        let mut record = FaultRecord {
            kind: fault.kind,
            target: fault.target,
            planned_length: fault.length,
            injected_at: Instant::now(),
            verified_at: None,
            heal_started: None,
            healed_at: None,
            problems: Vec::new(),
        };
        self.say(&format!("{:?} on {} for {:.1} s", fault.kind, fault.target, fault.length.as_secs_f64()));
        self.active.lock().expect("active faults").insert(fault.target, fault.kind);
        let baseline = self.counters(fault.target).await;
        match self.inject(fault.kind, fault.target).await {
            Ok(()) => match self.prove_in_effect(fault.kind, fault.target, baseline, fault.length).await {
                Ok(()) => record.verified_at = Some(Instant::now()),
                Err(problem) => record.problems.push(format!("not proved in effect: {problem:#}")),
            },
            Err(problem) => record.problems.push(format!("could not be injected: {problem:#}")),
        }
        // A latency or a hang proved by the traffic it delayed is proved once the fault has run.
        let proved_by_traffic = matches!(fault.kind, FaultKind::DatabaseSlow | FaultKind::BrokerHang);
        if record.verified_at.is_some() && !proved_by_traffic {
            tokio::time::sleep(fault.length).await;
        }
        record.heal_started = Some(Instant::now());
        if proved_by_traffic && record.verified_at.is_some() {
            // Counted from when the fault was injected: its proof took the fault's length.
            record.verified_at = Some(record.injected_at);
        }
        self.say(&format!("healing {:?} on {}", fault.kind, fault.target));
        match self.heal(fault.kind, fault.target).await {
            Ok(()) => {
                self.active.lock().expect("active faults").remove(&fault.target);
                match self.prove_healed(fault.target).await {
                    Ok(()) => record.healed_at = Some(Instant::now()),
                    Err(problem) => record.problems.push(format!("not proved healed: {problem:#}")),
                }
            }
            Err(problem) => {
                self.active.lock().expect("active faults").remove(&fault.target);
                record.problems.push(format!("could not be healed: {problem:#}"));
            }
        }
        if !record.problems.is_empty() {
            self.say(&format!("{:?} on {}: {}", fault.kind, fault.target, record.problems.join("; ")));
        }
        record
    }

    async fn inject(&self, kind: FaultKind, target: Target) -> anyhow::Result<()> {
        match (kind, target) {
            (FaultKind::ServerStopped, Target::Server(server)) => self.servers.lock().await.stop(server).await,
            (FaultKind::ServerKilled, Target::Server(server)) => self.servers.lock().await.kill(server).await,
            (FaultKind::ReplicaKilled, Target::Replica(instance)) => {
                let mut system = self.system.lock().await;
                system.kill_instance(instance).await?;
                system.verify_instance_is_down(instance).await
            }
            (_, Target::Replica(instance)) => {
                let (dependency, mode) = proxy_fault(kind).expect("a proxy fault");
                let system = self.system.lock().await;
                system.proxy(instance, dependency).set(mode).await
            }
            (kind, target) => anyhow::bail!("the plan put {kind:?} on {target}, which it cannot hit"),
        }
    }

    async fn heal(&self, kind: FaultKind, target: Target) -> anyhow::Result<()> {
        match (kind, target) {
            (_, Target::Server(server)) => self.servers.lock().await.start_again(server).await,
            (FaultKind::ReplicaKilled, Target::Replica(instance)) => {
                // A replica may start while a server it needs is down (another lane): it is
                // started again as a supervisor would, until it comes up.
                let deadline = Instant::now() + HEAL_PATIENCE;
                loop {
                    let started = self.system.lock().await.start_instance(instance).await;
                    match started {
                        Ok(()) => return Ok(()),
                        Err(error) if Instant::now() >= deadline => return Err(error),
                        Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                    }
                }
            }
            (_, Target::Replica(instance)) => {
                let (dependency, _) = proxy_fault(kind).expect("a proxy fault");
                self.system.lock().await.proxy(instance, dependency).set(Mode::Pass).await
            }
        }
    }

    /// The proxy's counters for a replica target, before a fault: what the fault must move.
    async fn counters(&self, target: Target) -> Option<(u64, u64)> {
        let Target::Replica(instance) = target else { return None };
        let system = self.system.lock().await;
        let database = system.proxy(instance, Dependency::Database);
        let broker = system.proxy(instance, Dependency::Broker);
        Some((database.delayed_chunks(), database.swallowed_bytes() + broker.swallowed_bytes()))
    }

    async fn prove_in_effect(
        &self,
        kind: FaultKind,
        target: Target,
        baseline: Option<(u64, u64)>,
        length: Duration,
    ) -> anyhow::Result<()> {
        match (kind, target) {
            (_, Target::Server(server)) => {
                // Every running instance that uses the server says so.
                let dependents = self.system.lock().await.instances_depending_on(server);
                for (instance, check) in dependents {
                    // An instance another lane takes down meanwhile proves nothing either way.
                    self.wait_until_not_ready_naming(instance, check, true).await?;
                }
                Ok(())
            }
            (FaultKind::ReplicaKilled, _) => Ok(()),
            (FaultKind::DatabaseCut | FaultKind::DatabaseHang, Target::Replica(instance)) => {
                self.wait_until_not_ready_naming(instance, "database", false).await
            }
            (FaultKind::BrokerCut, Target::Replica(instance)) => {
                self.wait_until_not_ready_naming(instance, "broker", false).await
            }
            (FaultKind::DatabaseSlow | FaultKind::BrokerHang, Target::Replica(instance)) => {
                let (delayed_before, swallowed_before) = baseline.unwrap_or_default();
                if kind == FaultKind::DatabaseSlow {
                    // The replica's `/ready` pings its database: traffic of the replica's own,
                    // whether or not a customer's request reaches it meanwhile. (A broker link
                    // carries heartbeats every few seconds of its own accord.)
                    let _ = self.readiness(instance).await;
                }
                tokio::time::sleep(length).await;
                let (delayed, swallowed) = self.counters(target).await.unwrap_or_default();
                match kind {
                    FaultKind::DatabaseSlow if delayed > delayed_before => Ok(()),
                    FaultKind::DatabaseSlow => self.probe_latency(instance).await,
                    _ if swallowed > swallowed_before => Ok(()),
                    _ => {
                        // No traffic went to the broker: the hang must show in `/ready` at least.
                        let (status, body) = self.readiness(instance).await?;
                        if status == 503 && body.to_string().contains("broker") {
                            Ok(())
                        } else {
                            anyhow::bail!(
                                "nothing between {instance} and the broker was held up in {length:?}, and /ready answered {status} {body}"
                            )
                        }
                    }
                }
            }
            (kind, target) => anyhow::bail!("no proof for {kind:?} on {target}"),
        }
    }

    /// Proves the latency on `instance`'s database link when the replica's own traffic did not
    /// show it (a MongoDB driver may answer `/ready` from a connection it already holds): the
    /// replica's connections run through this proxy (it has carried their bytes), and bytes sent
    /// through it now (a probe's) are held back for the latency before they go on.
    async fn probe_latency(&self, instance: Instance) -> anyhow::Result<()> {
        use tokio::io::AsyncWriteExt as _;
        let (port, carried, delayed_before) = {
            let system = self.system.lock().await;
            let proxy = system.proxy(instance, Dependency::Database);
            (proxy.port, proxy.forwarded_bytes(), proxy.delayed_chunks())
        };
        anyhow::ensure!(carried > 0, "{instance}'s database proxy never carried a byte: the replica does not use it");
        // The server itself may be down meanwhile (another lane): a probe then finds nobody to
        // talk to, and is tried again until the server is back.
        let deadline = Instant::now() + HEAL_PATIENCE;
        loop {
            let mut probe = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            let sent = Instant::now();
            // Half a MongoDB or PostgreSQL message header: the server waits for the rest.
            probe.write_all(&[0u8; 4]).await?;
            while sent.elapsed() <= LATENCY * 3 {
                let delayed = self.system.lock().await.proxy(instance, Dependency::Database).delayed_chunks();
                // A chunk counts as delayed once it was held for the latency: the probe's, or one
                // of the replica's own.
                if delayed > delayed_before {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if Instant::now() >= deadline {
                anyhow::bail!("no byte between {instance} and its database was delayed, not even a probe's");
            }
        }
    }

    /// What `GET /ready` on `instance` answers, asked without holding the system (another lane
    /// may need it meanwhile).
    async fn readiness(&self, instance: Instance) -> anyhow::Result<(u16, serde_json::Value)> {
        let url = format!("{}/ready", self.system.lock().await.instance_url(instance));
        let response = self.http.get(&url).timeout(Duration::from_secs(5)).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }

    fn is_down_for_another_fault(&self, instance: Instance) -> bool {
        self.active.lock().expect("active faults").contains_key(&Target::Replica(instance))
    }

    /// Waits until `instance`'s `/ready` names `check` failing. With `unless_taken_down`, an
    /// instance that another lane's fault takes down (before or meanwhile) is passed over.
    async fn wait_until_not_ready_naming(&self, instance: Instance, check: &str, unless_taken_down: bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + SHOW_PATIENCE;
        loop {
            if unless_taken_down && self.is_down_for_another_fault(instance) {
                return Ok(());
            }
            let answer = self.readiness(instance).await;
            match &answer {
                Ok((503, body)) if body["checks"][check].as_str().is_some_and(|value| value != "ok") => return Ok(()),
                _ if Instant::now() >= deadline => {
                    anyhow::bail!("{instance}'s /ready did not name its {check} within {SHOW_PATIENCE:?}: {answer:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Every instance not taken down by another lane is ready again.
    async fn prove_healed(&self, target: Target) -> anyhow::Result<()> {
        let instances: Vec<Instance> = match target {
            Target::Replica(instance) => vec![instance],
            Target::Server(_) => self.system.lock().await.all_instances(),
        };
        let deadline = Instant::now() + HEAL_PATIENCE;
        for instance in instances {
            loop {
                if self.is_down_for_another_fault(instance) {
                    break;
                }
                let answer = self.readiness(instance).await;
                match &answer {
                    Ok((200, _)) => break,
                    _ if Instant::now() >= deadline => {
                        anyhow::bail!("{instance} was not ready {HEAL_PATIENCE:?} after the heal: {answer:?}")
                    }
                    _ => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        }
        Ok(())
    }
}

/// The proxy and mode of a fault that a replica's proxy makes.
fn proxy_fault(kind: FaultKind) -> Option<(Dependency, Mode)> {
    Some(match kind {
        FaultKind::DatabaseCut => (Dependency::Database, Mode::Cut),
        FaultKind::DatabaseHang => (Dependency::Database, Mode::Blackhole),
        FaultKind::DatabaseSlow => (Dependency::Database, Mode::Slow(LATENCY)),
        FaultKind::BrokerCut => (Dependency::Broker, Mode::Cut),
        FaultKind::BrokerHang => (Dependency::Broker, Mode::Blackhole),
        _ => return None,
    })
}

/// Which services' HTTP routes a fault may take down: a server's, the services whose database it
/// is (the order service's too when it is the catalog's, which every order is checked against);
/// a replica's, its service's. RabbitMQ takes down no route: no request waits on the broker (an
/// order is stored with its event in an outbox).
pub fn services_hit(target: Target) -> Vec<shop_testkit::system::ServiceName> {
    use shop_testkit::system::ServiceName;
    match target {
        Target::Server(ServerKind::Postgres) => vec![ServiceName::User, ServiceName::Inventory],
        Target::Server(ServerKind::MongoDb) => vec![ServiceName::Product, ServiceName::Order],
        Target::Server(ServerKind::RabbitMq) => Vec::new(),
        Target::Replica(instance) => vec![instance.service],
    }
}
