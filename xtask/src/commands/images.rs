//! `cargo xtask images`: builds every local image (services/images/ and the four services) on
//! this machine's Docker engine, for where the official images cannot be pulled.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::bail;

use crate::docker::Server;
use crate::shell::say;

/// `cargo xtask images`: every local image, idempotently.
pub fn images(arguments: &[String]) -> anyhow::Result<ExitCode> {
    if !arguments.is_empty() {
        bail!("usage: cargo xtask images");
    }
    let started = Instant::now();
    crate::docker::ensure_engine()?;
    for server in Server::ALL {
        crate::docker::build_local_server_image(server)?;
    }
    crate::docker::build_service_images()?;
    say(&format!("every local image is built ({:.0} s)", started.elapsed().as_secs_f64()));
    Ok(ExitCode::SUCCESS)
}
