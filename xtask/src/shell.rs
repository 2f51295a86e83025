//! What every command does with the machine: say what it does, find and run programs, install
//! packages with apt, wait for ports, stop the processes it started. It imports nothing else of
//! xtask, so every other module may use it.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub fn say(message: &str) {
    println!("xtask: {message}");
}

pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(300)).is_ok()
}

pub fn wait_for_port(port: u16, what: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !port_open(port) {
        if Instant::now() >= deadline {
            bail!("{what} did not open port {port} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Whether `program` is on the PATH (or in /usr/sbin, which a non-root PATH may lack).
pub fn found(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
        || Path::new("/usr/sbin").join(program).exists()
}

pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("failed to run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

pub fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    if !found("apt-get") {
        bail!("{} missing and there is no apt-get to install it; install it yourself", packages.join(", "));
    }
    say(&format!("installing {} with apt-get", packages.join(" ")));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get").args(["install", "-y", "-qq"]).args(packages).env("DEBIAN_FRONTEND", "noninteractive"))
}

/// SIGTERM, as Ctrl-C would, then waits at most `patience` before killing it.
pub fn stop_child(child: &mut Child, patience: Duration) -> bool {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopped = !matches!(child.try_wait(), Ok(None));
    if !stopped {
        let _ = child.kill();
    }
    let _ = child.wait();
    stopped
}
