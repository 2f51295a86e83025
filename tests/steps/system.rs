//! Starting the system a scenario runs against.

use std::time::Duration;

use cucumber::{given, then};

use shop_testkit::system::{ServiceName, Setup, System};
use shop_testkit::world::ShopWorld;

#[given("the shop is running")]
async fn the_shop_is_running(world: &mut ShopWorld) {
    start(world, Setup::default()).await;
}

/// `REQUIRE_STAFF_ROLE=true`: catalog and stock writes and fulfilment need the staff role.
#[given("the shop is running with staff-only writes")]
async fn the_shop_is_running_with_staff_only_writes(world: &mut ShopWorld) {
    start(world, Setup { staff_only: true, ..Setup::default() }).await;
}

/// The user service reads its signing keys from a directory an operator rotates (`JWT_KEY_DIR`),
/// read again every second; the other services fetch the key set every 2 s.
#[given("the shop is running with a key directory")]
async fn the_shop_is_running_with_a_key_directory(world: &mut ShopWorld) {
    start(world, Setup { key_directory: true, ..Setup::default() }).await;
}

/// Several replicas of two services, against the same databases and queues, nginx balancing
/// their routes over them.
#[given(expr = "the shop is running with {int} replicas of the {word} and {word} services")]
async fn the_shop_is_running_with_replicas(world: &mut ShopWorld, replicas: usize, first: String, second: String) {
    let services = [first, second].map(|name| name.parse::<ServiceName>().unwrap_or_else(|error| panic!("{error}")));
    let replicas = services.into_iter().map(|service| (service, replicas)).collect();
    start(world, Setup { replicas, ..Setup::default() }).await;
}

/// Several replicas of every service, against the same databases and queues, nginx balancing
/// every route over them.
#[given(expr = "the shop is running with {int} replicas of every service")]
async fn the_shop_is_running_with_replicas_of_every_service(world: &mut ShopWorld, replicas: usize) {
    let replicas = ServiceName::START_ORDER.into_iter().map(|service| (service, replicas)).collect();
    start(world, Setup { replicas, ..Setup::default() }).await;
}

pub(super) async fn start(world: &mut ShopWorld, setup: Setup) {
    assert!(world.system.is_none(), "the shop is already running in this scenario");
    let system = System::start(&setup).await.unwrap_or_else(|error| panic!("the shop failed to start: {error:#}"));
    world.system = Some(system);
}

/// Waits until nothing is going on any more: no message ready in any queue, none being handled
/// by a consumer, no event waiting in an outbox. A step that checks that something did NOT
/// happen comes after this one, so that what could have happened has had its chance.
#[then("the shop has settled")]
async fn the_shop_has_settled(world: &mut ShopWorld) {
    world.system().wait_until_settled(Duration::from_secs(30)).await.unwrap_or_else(|error| panic!("{error:#}"));
}
