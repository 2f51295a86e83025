//! `cargo xtask keys rotate [--activate-in SECONDS] | list | remove KID`: the signing keys of the
//! system `cargo xtask up` runs, whose user service reads them from `.local/keys/user-service/`
//! (`JWT_KEY_DIR`). It runs the user service's own command (`user-service keys ...`, see
//! `user_service::keys`) on that directory; the running service picks the change up within
//! `JWT_KEY_RELOAD_SECONDS` (10).

use std::process::ExitCode;

use crate::{cargo, workspace_root};

/// The key directory `cargo xtask up` gives the user service.
pub fn key_directory() -> std::path::PathBuf {
    workspace_root().join(".local/keys/user-service")
}

pub fn keys(arguments: &[String]) -> anyhow::Result<ExitCode> {
    // The user service checks the arguments and says its usage.
    let status = cargo()
        .args(["run", "--quiet", "-p", "user-service", "--", "keys"])
        .args(arguments)
        .env("JWT_KEY_DIR", key_directory())
        .env_remove("JWT_PRIVATE_KEY")
        .env_remove("JWT_PRIVATE_KEY_PATH")
        .status()?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
