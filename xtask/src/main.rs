//! Project automation, run as `cargo xtask <command>`:
//!
//! - `e2e [--containers] [--name REGEX] [--tags EXPRESSION] [-- CUCUMBER OPTIONS]`: sets up what
//!   the tests need on this machine (idempotently, saying what it does), runs the whole test suite
//!   (unit, integration and the Gherkin features, then `fuzz`; only the features, filtered, when
//!   a filter is given) and ends with one summary line. `--containers`: against PostgreSQL,
//!   MongoDB and RabbitMQ in containers started with testcontainers, removed at the end.
//! - `up [--release] [--gateway-port N] [--monitoring]`: sets up the same, builds and starts the four services as separate
//!   processes on ports 8000 to 8003 and nginx in front (port 80 by default, so the guide's
//!   commands work as written), with `--monitoring` Prometheus on 9090 too, prints where
//!   everything is, and stops everything it started on Ctrl-C or SIGTERM.
//! - `load [--debug] [goose options]`: runs the goose load tests (a release build, unless
//!   `--debug`) against a running system.
//! - `bench [--url URL --order-service URL]`: the one-table benchmark (load/src/bench.rs) against
//!   the system in release, started and stopped here (or one given by URL); writes
//!   target/bench/latest.md.
//! - `chaos [--seed N] [--operations M]`: a seeded run of random customers, orders, cancels and
//!   refunds with faults injected at random, against 2 replicas of the order and inventory
//!   services; prints its invariants and fails when one does not hold.
//! - `mutants [--list] [AREA...]`: a mutation check (cargo-mutants) of the order flow (orders,
//!   their events and catalog look-ups, reservations and stock, the consumer, outage-or-bug
//!   classification, publishing, the outbox relay, token verification, login throttling), each
//!   area against the tests and features that should catch a change there, after a baseline run
//!   of those tests; writes target/mutants/summary.md.
//!
//! - `dlq list | show [--queue Q] [--limit N] | replay [--queue Q]`: against a running system (the
//!   broker at `RABBITMQ_URL`, default the local one): what is dead-lettered and why, and handing
//!   it back to its consumer (safe: every consumer is idempotent).
//! - `staff grant EMAIL | revoke EMAIL | list`: who is staff in the system `up` runs, decided by
//!   an operator (the user service's own `user-service staff` command against its database).
//! - `keys rotate [--activate-in SECONDS] | list | remove KID`: the signing keys of the system `up`
//!   runs (the user service's own `user-service keys` command on its key directory).
//!
//! - `fuzz [--examples N]`: schemathesis against every service's OpenAPI on a system it brings up
//!   and stops; fails on a server error or an answer outside its schema.
//! - `alerts`: promtool's checks of deploy/prometheus (configuration, alert rules) and the rules'
//!   unit tests.
//! - `manifests`: the Kubernetes manifests of deploy/kubernetes rendered per overlay, validated
//!   in strict mode against a current Kubernetes's schemas, and checked against our own rules.
//!
//! - `images`: builds every local image (services/images/ and the four services) on this
//!   machine's Docker engine, for where the official images cannot be pulled.
//! - `compose up | check | down`: the whole system with docker-compose; `check` brings it up,
//!   walks the guide's health checks and one order from POST to paid, and `down` removes it.
//!
//! Layout: one file per command in `commands/`; what they share below it, in layers that import
//! only downwards: `shell` (say, run, apt, ports, stopping children) and `services` (the one table
//! of the four services) import nothing of xtask; `stand_in` (the MongoDB-wire stand-in) and
//! `http` (the shop's typed client, from shop-testkit-base, on a small runtime) use those;
//! `docker` (engine, images, containers) uses `stand_in`; `servers` (what the tests need on this
//! machine, or in containers) uses `docker`.
//!
//! Few dependencies on purpose: `cargo xtask` should start fast.

mod commands;
mod docker;
mod http;
mod servers;
mod services;
mod shell;
mod stand_in;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let result = match arguments.first().map(String::as_str) {
        Some("e2e") => commands::e2e::end_to_end(&arguments[1..]),
        Some("up") => commands::up::up(&arguments[1..]),
        Some("load") => commands::load::load(&arguments[1..]),
        Some("mutants") => commands::mutants::mutants(&arguments[1..]),
        Some("chaos") => commands::chaos::chaos(&arguments[1..]),
        Some("dlq") => commands::dlq::dlq(&arguments[1..]),
        Some("staff") => commands::staff::staff(&arguments[1..]),
        Some("keys") => commands::keys::keys(&arguments[1..]),
        Some("fuzz") => commands::fuzz::fuzz(&arguments[1..]),
        Some("alerts") => commands::alerts::alerts(&arguments[1..]),
        Some("manifests") => commands::manifests::manifests(&arguments[1..]),
        Some("images") => commands::images::images(&arguments[1..]),
        Some("bench") => commands::bench::bench(&arguments[1..]),
        Some("compose") => commands::compose::compose(&arguments[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask e2e [--containers] [--name REGEX] [--tags EXPRESSION] [-- CUCUMBER OPTIONS] | up [--release] [--gateway-port N] [--monitoring] | load [--debug] [goose options] | bench [--url URL --order-service URL] | chaos [--seed N] [--operations M] | mutants [--list] [AREA...] [-- CARGO-MUTANTS OPTIONS] | dlq list|show|replay [--queue Q] | staff grant|revoke EMAIL | staff list | keys rotate [--activate-in SECONDS] | keys list | keys remove KID | fuzz [--examples N] | alerts | manifests | images | compose up|check|down"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo` as the one that invoked us (`$CARGO`), run from the workspace root.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Where cargo puts what it builds (`$CARGO_TARGET_DIR`, or `target/` in the workspace).
pub fn target_directory() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(Into::into).unwrap_or_else(|| workspace_root().join("target"))
}

pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_owned()
}
