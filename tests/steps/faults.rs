//! Injected failures: a service stopped and started again, the broker taken away from this
//! scenario and given back.

use cucumber::when;

use crate::support::system::ServiceName;
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
