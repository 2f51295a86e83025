//! A service's own binary run as an operator would start it, for tests of what it refuses.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `command` and returns whether it started (still running after 10 s, when it is killed,
/// or exited successfully) and what it wrote to standard error. A service that passes its
/// checks runs until stopped: it must not outlive the test.
pub fn run_briefly(command: &mut Command) -> (bool, String) {
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
