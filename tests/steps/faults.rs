//! Injected failures, each proven to have taken effect before the scenario goes on: a service
//! stopped and started again, or killed where it stands; the broker taken away from the whole
//! scenario; one service's database or broker connection cut, hung or given back through its
//! fault proxy.

use cucumber::when;

use crate::support::proxy::Mode;
use crate::support::system::{Dependency, ServiceName};
use crate::support::world::ShopWorld;

#[when(expr = "the {word} service is stopped")]
async fn service_is_stopped(world: &mut ShopWorld, service: String) {
    let service: ServiceName = service.parse().unwrap_or_else(|error: String| panic!("{error}"));
    world.system_mut().stop_service(service).await.unwrap_or_else(|error| panic!("{error:#}"));
    world.system().verify_service_is_down(service).await.unwrap_or_else(|error| panic!("{error:#}"));
}

#[when(expr = "the {word} service is started again")]
async fn service_is_started_again(world: &mut ShopWorld, service: String) {
    let service: ServiceName = service.parse().unwrap_or_else(|error: String| panic!("{error}"));
    world.system_mut().start_service(service).await.unwrap_or_else(|error| panic!("{error:#}"));
}

#[when("the message broker becomes unreachable")]
async fn broker_becomes_unreachable(world: &mut ShopWorld) {
    world.system().vhost.revoke_access_and_disconnect().await.unwrap_or_else(|error| panic!("{error:#}"));
}

#[when("the message broker is reachable again")]
async fn broker_is_reachable_again(world: &mut ShopWorld) {
    let vhost = &world.system().vhost;
    vhost.grant_access().await.unwrap_or_else(|error| panic!("{error:#}"));
    vhost.verify_reachable().await.unwrap_or_else(|error| panic!("{error:#}"));
}

fn service_named(name: &str) -> ServiceName {
    name.parse().unwrap_or_else(|error: String| panic!("{error}"))
}

fn dependency_named(name: &str) -> Dependency {
    name.parse().unwrap_or_else(|error: String| panic!("{error}"))
}

/// Kills the service where it stands (mid-request, mid-message), then proves it: its port
/// refuses, and every connection it had to its database and the broker is closed.
#[when(expr = "the {word} service is killed")]
async fn service_is_killed(world: &mut ShopWorld, service: String) {
    let service = service_named(&service);
    let system = world.system_mut();
    system.kill_service(service).await.unwrap_or_else(|error| panic!("{error:#}"));
    system.verify_service_is_down(service).await.unwrap_or_else(|error| panic!("{error:#}"));
    system.verify_no_connections(service).await.unwrap_or_else(|error| panic!("{error:#}"));
}

/// The dependency is down for this one service: its connections are reset, new ones refused.
#[when(expr = "the {word} service's {word} goes down")]
async fn dependency_goes_down(world: &mut ShopWorld, service: String, dependency: String) {
    set_proxy(world, &service, &dependency, Mode::Cut).await;
}

/// The dependency hangs for this one service: connections stay open and nothing answers.
#[when(expr = "the {word} service's {word} hangs")]
async fn dependency_hangs(world: &mut ShopWorld, service: String, dependency: String) {
    set_proxy(world, &service, &dependency, Mode::Blackhole).await;
}

/// Connections the service already has go on working; any new one hangs.
#[when(expr = "the {word} service's {word} stops answering new connections")]
async fn dependency_hangs_new_connections(world: &mut ShopWorld, service: String, dependency: String) {
    set_proxy(world, &service, &dependency, Mode::HangNew).await;
}

#[when(expr = "the {word} service's {word} is back")]
async fn dependency_is_back(world: &mut ShopWorld, service: String, dependency: String) {
    set_proxy(world, &service, &dependency, Mode::Pass).await;
}

async fn set_proxy(world: &mut ShopWorld, service: &str, dependency: &str, mode: Mode) {
    let proxy = world.system().proxy(service_named(service), dependency_named(dependency));
    proxy.set(mode).await.unwrap_or_else(|error| panic!("{service}'s {dependency} did not become {mode:?}: {error:#}"));
}

/// How long a fault lasts. Not a wait for an effect (those poll): the fault itself is the time
/// the system must survive, as an outage of a minute or a failover would last.
#[when(expr = "{int} seconds pass")]
async fn seconds_pass(_world: &mut ShopWorld, seconds: u64) {
    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
}
