//! Starting the system a scenario runs against.

use std::time::Duration;

use cucumber::{given, then};

use crate::support::system::System;
use crate::support::world::ShopWorld;

#[given("the shop is running")]
async fn the_shop_is_running(world: &mut ShopWorld) {
    assert!(world.system.is_none(), "the shop is already running in this scenario");
    let system = System::start().await.unwrap_or_else(|error| panic!("the shop failed to start: {error:#}"));
    world.system = Some(system);
}

/// Waits until nothing is going on any more: no message ready in any queue, none being handled
/// by a consumer, no event waiting in an outbox. A step that checks that something did NOT
/// happen comes after this one, so that what could have happened has had its chance.
#[then("the shop has settled")]
async fn the_shop_has_settled(world: &mut ShopWorld) {
    world.system().wait_until_settled(Duration::from_secs(30)).await.unwrap_or_else(|error| panic!("{error:#}"));
}
