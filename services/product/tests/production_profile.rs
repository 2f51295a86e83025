//! The product service's own binary under `APP_ENV=production`, with nothing else set: it refuses
//! to start, naming every development default it would have run on. (`PORT=0`: a binary that did
//! start would take no port anyone else uses.)

use std::process::Command;

use shop_testkit_base::binary::run_briefly;

#[test]
fn the_binary_refuses_to_start_in_production_on_development_defaults_naming_each() {
    let (started, said) = run_briefly(
        Command::new(env!("CARGO_BIN_EXE_product-service")).env_clear().env("APP_ENV", "production").env("PORT", "0"),
    );
    assert!(!started, "it started: {said}");
    for wrong in [
        "APP_ENV=production refuses to start with development settings",
        "RABBITMQ_URL uses the development credentials product:product",
        "MONGODB_URL has no user and password",
        "REQUIRE_STAFF_ROLE is false",
    ] {
        assert!(said.contains(wrong), "{wrong:?} not said: {said}");
    }
}
