//! The product service's own binary under `APP_ENV=production`, with nothing else set: it refuses
//! to start, naming every development default it would have run on. (`PORT=0`: a binary that did
//! start would take no port anyone else uses.)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_binary_refuses_to_start_in_production_on_development_defaults_naming_each() {
    let (started, said) = run_briefly(
        Command::new(env!("CARGO_BIN_EXE_product-service")).env_clear().env("APP_ENV", "production").env("PORT", "0"),
    );
    assert!(!started, "it started: {said}");
    for wrong in [
        "APP_ENV=production refuses to start with development settings",
        "RABBITMQ_URL uses the development credentials guest:guest",
        "MONGODB_URL has no user and password",
        "REQUIRE_STAFF_ROLE is false",
    ] {
        assert!(said.contains(wrong), "{wrong:?} not said: {said}");
    }
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
