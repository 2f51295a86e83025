//! The user service's own binary under `APP_ENV=production`: it refuses to start on the
//! development database credentials, a signing key it would generate, or `STAFF_EMAILS`, naming
//! each; the development profile's defaults are not checked.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn user_service(variables: &[(&str, &str)]) -> (bool, String) {
    run_briefly(Command::new(env!("CARGO_BIN_EXE_user-service")).env_clear().env("PORT", "0").envs(variables.iter().copied()))
}

#[test]
fn the_binary_refuses_to_start_in_production_on_development_defaults_naming_each() {
    let (started, said) = user_service(&[("APP_ENV", "production"), ("STAFF_EMAILS", "boss@example.com")]);
    assert!(!started, "it started: {said}");
    for wrong in [
        "DATABASE_URL uses the development credentials postgres:postgres",
        "neither JWT_PRIVATE_KEY nor JWT_PRIVATE_KEY_PATH is set: a signing key would be generated",
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

/// Runs `command` and returns whether it started (still running after 10 s, when it is killed,
/// or exited successfully) and what it wrote to standard error. A service that passes its
/// checks runs until stopped: it must not outlive the test.
fn run_briefly(command: &mut Command) -> (bool, String) {
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("the binary runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("its status") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut said = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr is piped"), &mut said).expect("stderr is text");
    (status.is_none_or(|status| status.success()), said)
}
