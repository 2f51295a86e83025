//! The MongoDB-wire server used where no MongoDB is installed (Debian has none): built once from
//! crates.io with `cargo install` and cached under ~/.cache, for `servers` (a local server) and
//! `docker` (the stand-in's image).

use std::path::PathBuf;

use anyhow::Context;

use crate::shell::{apt_install, found, run, say};

/// The MongoDB-compatible server used where no MongoDB is installed (see shared/infra.md).
const MONGODB_STAND_IN_CRATE: &str = "secantus-mdb";
const MONGODB_STAND_IN_VERSION: &str = "0.5.3-beta.196";
const MONGODB_STAND_IN_BINARY: &str = "secantusd-rs";

/// The stand-in's binary, built once with cargo and cached under ~/.cache.
pub fn mongodb_stand_in() -> anyhow::Result<PathBuf> {
    let home = std::env::var("HOME").context("HOME is not set")?;
    let root = PathBuf::from(home).join(".cache/ecommerce-tools/secantus");
    let binary = root.join("bin").join(MONGODB_STAND_IN_BINARY);
    if binary.exists() {
        return Ok(binary);
    }
    if !found("cmake") {
        apt_install(&["cmake"])?;
    }
    say(&format!(
        "MongoDB stand-in: building {MONGODB_STAND_IN_CRATE} {MONGODB_STAND_IN_VERSION} once with cargo install (a few minutes; cached in {})",
        root.display()
    ));
    run(crate::cargo()
        .args([
            "install",
            MONGODB_STAND_IN_CRATE,
            "--version",
            MONGODB_STAND_IN_VERSION,
            "--locked",
            "--ignore-rust-version",
            "--root",
        ])
        .arg(&root)
        .current_dir(std::env::temp_dir()))?;
    Ok(binary)
}
