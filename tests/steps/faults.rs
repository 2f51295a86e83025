//! Injected failures, each proven to have taken effect before the scenario goes on: a service
//! stopped and started again, or killed where it stands; the broker taken away from the whole
//! scenario; one service's database or broker connection cut, hung or given back through its
//! fault proxy.
//!
//! Every step here that injects a fault records it in the world ([`ShopWorld::fault_injected`]):
//! a scenario that injected none fails at its teardown on any warning about a dependency's
//! retries, pauses or reconnects, which only a fault may cause.

use std::str::FromStr;
use std::time::Duration;

use cucumber::{Parameter, then, when};

use shop_testkit::proxy::Mode;
use shop_testkit::system::{Dependency, Instance, Target};
use shop_testkit::world::ShopWorld;

/// What a fault hits: `the inventory service` (every replica it has) or `inventory replica 2`.
#[derive(Debug, Parameter)]
#[param(name = "instances", regex = r"the (?:user|product|inventory|order) service|(?:user|product|inventory|order) replica \d+")]
struct Instances(Target);

impl FromStr for Instances {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse().map(Instances)
    }
}

fn instances(world: &ShopWorld, target: &Instances) -> Vec<Instance> {
    world.system().instances(target.0).unwrap_or_else(|error| panic!("{error:#}"))
}

#[when(expr = "{instances} is stopped")]
async fn service_is_stopped(world: &mut ShopWorld, target: Instances) {
    world.fault_injected(format!("{:?} stopped", target.0));
    for instance in instances(world, &target) {
        world.system_mut().stop_instance(instance).await.unwrap_or_else(|error| panic!("{error:#}"));
        world.system().verify_instance_is_down(instance).await.unwrap_or_else(|error| panic!("{error:#}"));
    }
}

#[when(expr = "{instances} is started again")]
async fn service_is_started_again(world: &mut ShopWorld, target: Instances) {
    for instance in instances(world, &target) {
        world.system_mut().start_instance(instance).await.unwrap_or_else(|error| panic!("{error:#}"));
    }
}

/// The broker refuses the scenario's services: access to their vhost is revoked (new
/// connections are refused) and every connection they have is closed: those the management API
/// lists, and, through each instance's broker proxy, any opened too recently to be listed yet.
#[when("the message broker becomes unreachable")]
async fn broker_becomes_unreachable(world: &mut ShopWorld) {
    world.fault_injected("the message broker unreachable");
    world.system().vhost.revoke_access_and_disconnect().await.unwrap_or_else(|error| panic!("{error:#}"));
    world.system().reset_broker_connections().await.unwrap_or_else(|error| panic!("{error:#}"));
}

#[when("the message broker is reachable again")]
async fn broker_is_reachable_again(world: &mut ShopWorld) {
    let vhost = &world.system().vhost;
    vhost.grant_access().await.unwrap_or_else(|error| panic!("{error:#}"));
    vhost.verify_reachable().await.unwrap_or_else(|error| panic!("{error:#}"));
}

fn dependency_named(name: &str) -> Dependency {
    name.parse().unwrap_or_else(|error: String| panic!("{error}"))
}

/// Kills the service where it stands (mid-request, mid-message), then proves it: its port
/// refuses, and every connection it had to its database and the broker is closed.
#[when(expr = "{instances} is killed")]
async fn service_is_killed(world: &mut ShopWorld, target: Instances) {
    world.fault_injected(format!("{:?} killed", target.0));
    for instance in instances(world, &target) {
        let system = world.system_mut();
        system.kill_instance(instance).await.unwrap_or_else(|error| panic!("{error:#}"));
        system.verify_instance_is_down(instance).await.unwrap_or_else(|error| panic!("{error:#}"));
        system.verify_no_connections(instance).await.unwrap_or_else(|error| panic!("{error:#}"));
    }
}

/// The dependency is down for these instances: their connections are reset, new ones refused.
#[when(expr = "{instances}'s {word} goes down")]
async fn dependency_goes_down(world: &mut ShopWorld, target: Instances, dependency: String) {
    set_proxies(world, &target, &dependency, Mode::Cut).await;
}

/// The dependency hangs for these instances: connections stay open and nothing answers.
#[when(expr = "{instances}'s {word} hangs")]
async fn dependency_hangs(world: &mut ShopWorld, target: Instances, dependency: String) {
    set_proxies(world, &target, &dependency, Mode::Blackhole).await;
}

/// Connections the instances already have go on working; any new one hangs.
#[when(expr = "{instances}'s {word} stops answering new connections")]
async fn dependency_hangs_new_connections(world: &mut ShopWorld, target: Instances, dependency: String) {
    set_proxies(world, &target, &dependency, Mode::HangNew).await;
}

#[when(expr = "{instances}'s {word} is back")]
async fn dependency_is_back(world: &mut ShopWorld, target: Instances, dependency: String) {
    set_proxies(world, &target, &dependency, Mode::Pass).await;
}

async fn set_proxies(world: &mut ShopWorld, target: &Instances, dependency: &str, mode: Mode) {
    if mode != Mode::Pass {
        world.fault_injected(format!("{:?}'s {dependency} {mode:?}", target.0));
    }
    for instance in instances(world, target) {
        let proxy = world.system().proxy(instance, dependency_named(dependency));
        let before = (proxy.accepted_connections(), proxy.swallowed_bytes());
        proxy.set(mode).await.unwrap_or_else(|error| panic!("{instance}'s {dependency} did not become {mode:?}: {error:#}"));
        if mode == Mode::HangNew {
            world.connections_before_hang.insert((instance, dependency_named(dependency)), before);
        }
    }
}

/// Proves what a scenario would otherwise infer from an order that stays pending: the instances
/// opened a new connection to the dependency after it stopped answering new ones, and that
/// connection is held in the hang (the proxy is still in that mode and holds it open).
#[then(expr = "{instances}'s new {word} connection hangs")]
async fn new_connection_hangs(world: &mut ShopWorld, target: Instances, dependency: String) {
    for instance in instances(world, &target) {
        let key = (instance, dependency_named(&dependency));
        let (accepted_before, swallowed_before) = *world
            .connections_before_hang
            .get(&key)
            .unwrap_or_else(|| panic!("{instance}'s {dependency} was never made to stop answering new connections"));
        let system = world.system();
        let what = format!("a new connection from {instance} to its {dependency}, held in the hang");
        shop_testkit::eventually::eventually(Duration::from_secs(10), &what, || async {
            let proxy = system.proxy(instance, key.1);
            let (mode, accepted, swallowed, open) =
                (proxy.mode(), proxy.accepted_connections(), proxy.swallowed_bytes(), proxy.open_connections());
            // What the new connection sent (its protocol header) never reached the server.
            if mode == Mode::HangNew && accepted > accepted_before && swallowed > swallowed_before && open > 0 {
                Ok(())
            } else {
                Err(format!(
                    "mode {mode:?}; {accepted} connections accepted, {accepted_before} before the hang; {swallowed} bytes swallowed, {swallowed_before} before; {open} open"
                ))
            }
        })
        .await;
    }
}

/// How long a fault lasts. Not a wait for an effect (those poll): the fault itself is the time
/// the system must survive, as an outage of a minute or a failover would last.
#[when(expr = "{int} seconds pass")]
async fn seconds_pass(_world: &mut ShopWorld, seconds: u64) {
    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
}

/// `GET /ready` on every one of these instances answers 200 within the time.
#[then(expr = "within {int} seconds {instances} is ready")]
async fn instances_are_ready(world: &mut ShopWorld, seconds: u64, target: Instances) {
    for instance in instances(world, &target) {
        world.system().wait_until_ready(instance, Duration::from_secs(seconds)).await.unwrap_or_else(|error| panic!("{error:#}"));
    }
}

/// `GET /ready` on every one of these instances answers 503 within the time, with a detail
/// naming the failing check, and `/health` still answers 200 (the process is alive).
#[then(expr = "within {int} seconds {instances} is not ready, naming its {string}")]
async fn instances_are_not_ready(world: &mut ShopWorld, seconds: u64, target: Instances, check: String) {
    for instance in instances(world, &target) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let (status, body) = loop {
            let answer =
                world.system().readiness(instance).await.unwrap_or_else(|error| panic!("GET /ready on {instance}: {error:#}"));
            if answer.0 == 503 || tokio::time::Instant::now() >= deadline {
                break answer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(status, 503, "{instance} stayed ready for {seconds} s: {body}");
        assert_eq!(body["status"], "not ready", "{body}");
        let failing = body["checks"][&check].as_str().unwrap_or_else(|| panic!("{instance} has no check {check:?}: {body}"));
        assert_ne!(failing, "ok", "{instance} is not ready, but not because of its {check}: {body}");
        let detail = body["detail"].as_str().unwrap_or_else(|| panic!("a 503 says why: {body}"));
        assert!(detail.contains(&format!("{check}: ")), "the detail does not name {check:?}: {detail}");
        let live = world.system().liveness(instance).await;
        assert_eq!(live, Some(200), "{instance} is not ready, and its /health should still answer 200");
    }
}
