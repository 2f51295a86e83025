//! Starting the system a scenario runs against.

use cucumber::given;

use crate::support::system::System;
use crate::support::world::ShopWorld;

#[given("the shop is running")]
async fn the_shop_is_running(world: &mut ShopWorld) {
    assert!(world.system.is_none(), "the shop is already running in this scenario");
    let system = System::start().await.unwrap_or_else(|error| panic!("the shop failed to start: {error:#}"));
    world.system = Some(system);
}
