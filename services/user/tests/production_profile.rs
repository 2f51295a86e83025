//! The user service's own binary under `APP_ENV=production`: it refuses to start on the
//! development database credentials, a signing key it would generate, or `STAFF_EMAILS`, naming
//! each; the development profile's defaults are not checked.

use std::process::Command;

use shop_testkit_base::binary::run_briefly;

fn user_service(variables: &[(&str, &str)]) -> (bool, String) {
    run_briefly(Command::new(env!("CARGO_BIN_EXE_user-service")).env_clear().env("PORT", "0").envs(variables.iter().copied()))
}

#[test]
fn the_binary_refuses_to_start_in_production_on_development_defaults_naming_each() {
    let (started, said) = user_service(&[("APP_ENV", "production"), ("STAFF_EMAILS", "boss@example.com")]);
    assert!(!started, "it started: {said}");
    for wrong in [
        "DATABASE_URL uses the development credentials postgres:postgres",
        "none of JWT_PRIVATE_KEY, JWT_PRIVATE_KEY_PATH and JWT_KEY_DIR is set: a signing key would be generated",
        "STAFF_EMAILS is set",
    ] {
        assert!(said.contains(wrong), "{wrong:?} not said: {said}");
    }
}

#[test]
fn an_unknown_profile_is_refused_by_name() {
    let (started, said) = user_service(&[("APP_ENV", "prod")]);
    assert!(!started, "it started: {said}");
    assert!(said.contains("APP_ENV=\"prod\" is neither development nor production"), "{said}");
}
