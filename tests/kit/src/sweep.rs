//! Sweeping up what crashed runs left on the shared servers: the `e2e_<id>_<service>` PostgreSQL
//! and MongoDB databases and the `e2e-<id>` RabbitMQ vhosts of systems whose process died before
//! their teardown (a panic in a runtime, a killed `cargo test`, a machine that lost power).
//!
//! Several harness processes may run at once against the same servers (the chaos run and the
//! feature suite in one `cargo test` under nextest, every feature file in a process of its own,
//! two developers' runs against a shared server), so a sweep removes a system's data only when
//! it can tell that no running process owns it. The names carry no time or owner (a system id is
//! 12 random hex digits), so ownership is told by two marks, and a system is left alone if either
//! says it is alive:
//!
//! - **An owner file per process on this machine**: every harness process claims each of its
//!   systems ([`claim`], called when the system's first service is configured) by appending the
//!   id to `$TMPDIR/shop-e2e-owners/<pid>-<start time>`. A file whose process is gone (no
//!   `/proc/<pid>`, or a process there that started at another time: the pid was reused) owns
//!   nothing any more, and is removed by the sweep.
//! - **Connections**: a live system always holds connections to its databases or its vhost (its
//!   user service's pool at least, unless every one of its dependencies is cut at once), which
//!   covers processes on other machines sharing the servers. A system with any connection to one
//!   of its PostgreSQL databases (`pg_stat_activity`) or its vhost (the management API) is alive.
//!
//! Both are looked at twice, [`SECOND_LOOK_AFTER`] apart, and only a system unowned and
//! unconnected both times is removed: a system that another process was just creating (its vhost
//! made, its services not connected nor claimed yet) is claimed and connected by the second look.
//! Removal is gentle: `DROP DATABASE` without `FORCE`, so a connection that appeared meanwhile
//! makes the drop fail instead of cutting a live system off. What is swept and what failed is
//! printed in one line.
//!
//! It runs once per process, in the background, when the process's first system is configured:
//! at the start of the feature suite's and the chaos run's first scenario, costing them nothing.
//! It does not remove anything else (the `security_*` databases of `tests/security.rs`, nginx's
//! prefix directories in `$TMPDIR`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use anyhow::Context;
use shop_testkit_base::management::Management;

use crate::infrastructure::Infrastructure;

/// How long a sweep waits between its two looks at the servers.
pub const SECOND_LOOK_AFTER: Duration = Duration::from_secs(20);

/// Records that this process owns the system `id`, and starts this process's sweep in the
/// background the first time it is called (from inside a tokio runtime).
pub fn claim(id: &str) {
    if let Err(error) = append_claim(id) {
        // Without the mark, the connections still protect the system from other sweeps.
        eprintln!("e2e sweep: could not record that this process owns system {id}: {error:#}");
    }
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async {
                let infrastructure = crate::infrastructure::get().await;
                match sweep(infrastructure, SECOND_LOOK_AFTER).await {
                    Ok(report) if report.removed.is_empty() && report.failures.is_empty() => {}
                    Ok(report) => println!("{}", report.describe()),
                    Err(error) => println!("e2e sweep: skipped: {error:#}"),
                }
            });
        }
    });
}

/// What a sweep did.
#[derive(Debug, Default)]
pub struct SweepReport {
    /// The system ids whose data it removed.
    pub removed: Vec<String>,
    /// Ids it left because a process owns them or they are connected (at either look).
    pub kept: usize,
    /// What it could not remove, and why.
    pub failures: Vec<String>,
}

impl SweepReport {
    pub fn describe(&self) -> String {
        let mut text = format!(
            "e2e sweep: removed the data of {} system(s) left by crashed runs ({}); {} in use by running processes left alone",
            self.removed.len(),
            self.removed.join(", "),
            self.kept
        );
        if !self.failures.is_empty() {
            text.push_str(&format!("; failed: {}", self.failures.join("; ")));
        }
        text
    }
}

/// Removes the data of every system that no running process owns, looking twice, `second_look`
/// apart (see the module's documentation).
pub async fn sweep(infrastructure: &Infrastructure, second_look: Duration) -> anyhow::Result<SweepReport> {
    let first = look(infrastructure).await?;
    tokio::time::sleep(second_look).await;
    let second = look(infrastructure).await?;
    let mut report = SweepReport::default();
    let abandoned: Vec<&String> = second.abandoned.intersection(&first.abandoned).collect();
    report.kept = second.present.len().saturating_sub(abandoned.len());
    for id in abandoned {
        match remove(infrastructure, id, &second).await {
            Ok(()) => report.removed.push(id.clone()),
            Err(error) => report.failures.push(format!("{id}: {error:#}")),
        }
    }
    for file in second.dead_owner_files {
        let _ = std::fs::remove_file(file);
    }
    Ok(report)
}

/// One look at the servers.
struct Look {
    /// Every system id that has data on some server, with what it has.
    present: BTreeMap<String, SystemData>,
    /// The ids no running process owns and nothing is connected to.
    abandoned: BTreeSet<String>,
    /// Owner files whose process is gone.
    dead_owner_files: Vec<PathBuf>,
}

#[derive(Debug, Default)]
struct SystemData {
    postgres_databases: Vec<String>,
    mongodb_databases: Vec<String>,
    vhost: Option<String>,
}

async fn look(infrastructure: &Infrastructure) -> anyhow::Result<Look> {
    use sqlx::Connection as _;
    let mut present: BTreeMap<String, SystemData> = BTreeMap::new();
    let mut connected = BTreeSet::new();

    let mut postgres = sqlx::PgConnection::connect(&format!("{}/postgres", infrastructure.postgres))
        .await
        .context("failed to connect to PostgreSQL")?;
    let databases: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'e2e\\_%'")
        .fetch_all(&mut postgres)
        .await
        .context("failed to list the PostgreSQL databases")?;
    for database in databases {
        if let Some(id) = system_id_of_database(&database) {
            present.entry(id).or_default().postgres_databases.push(database);
        }
    }
    let in_use: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT datname FROM pg_stat_activity WHERE datname LIKE 'e2e\\_%' AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut postgres)
    .await
    .context("failed to list PostgreSQL's connections")?;
    connected.extend(in_use.iter().filter_map(|database| system_id_of_database(database)));
    let _ = postgres.close().await;

    let mongodb = mongodb::Client::with_uri_str(&infrastructure.mongodb).await.context("failed to create a MongoDB client")?;
    for database in mongodb.list_database_names().await.context("failed to list the MongoDB databases")? {
        if let Some(id) = system_id_of_database(&database) {
            present.entry(id).or_default().mongodb_databases.push(database);
        }
    }

    let management = Management::new(infrastructure.rabbitmq_management_login());
    let vhosts = management.request(reqwest::Method::GET, "/api/vhosts", None).await?;
    for vhost in vhosts.as_array().into_iter().flatten().filter_map(|vhost| vhost["name"].as_str()) {
        if let Some(id) = system_id_of_vhost(vhost) {
            if !management.connection_names(vhost).await?.is_empty() {
                connected.insert(id.clone());
            }
            present.entry(id).or_default().vhost = Some(vhost.to_owned());
        }
    }

    let (owned, dead_owner_files) = owned_by_running_processes();
    let abandoned = present.keys().filter(|id| !owned.contains(*id) && !connected.contains(*id)).cloned().collect();
    Ok(Look { present, abandoned, dead_owner_files })
}

async fn remove(infrastructure: &Infrastructure, id: &str, look: &Look) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let Some(data) = look.present.get(id) else { return Ok(()) };
    if !data.postgres_databases.is_empty() {
        let mut postgres = sqlx::PgConnection::connect(&format!("{}/postgres", infrastructure.postgres)).await?;
        for database in &data.postgres_databases {
            // No FORCE: a connection that appeared since the look fails the drop, and the system
            // it belongs to keeps its database.
            let statement = format!(r#"DROP DATABASE IF EXISTS "{database}""#);
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut postgres)
                .await
                .with_context(|| format!("failed to drop {database}"))?;
        }
        let _ = postgres.close().await;
    }
    if !data.mongodb_databases.is_empty() {
        let mongodb = mongodb::Client::with_uri_str(&infrastructure.mongodb).await?;
        for database in &data.mongodb_databases {
            mongodb.database(database).drop().await.with_context(|| format!("failed to drop {database}"))?;
        }
    }
    if let Some(vhost) = &data.vhost {
        Management::new(infrastructure.rabbitmq_management_login()).delete_vhost(vhost).await?;
    }
    Ok(())
}

/// `e2e_<12 hex digits>_<service>` -> the id.
pub fn system_id_of_database(name: &str) -> Option<String> {
    let rest = name.strip_prefix("e2e_")?;
    let (id, service) = rest.split_once('_')?;
    (is_system_id(id) && !service.is_empty()).then(|| id.to_owned())
}

/// `e2e-<12 hex digits>` -> the id.
pub fn system_id_of_vhost(name: &str) -> Option<String> {
    let id = name.strip_prefix("e2e-")?;
    is_system_id(id).then(|| id.to_owned())
}

fn is_system_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

fn owner_directory() -> PathBuf {
    std::env::temp_dir().join("shop-e2e-owners")
}

/// This process's owner file: `<pid>-<start time in clock ticks since boot>`.
fn own_owner_file() -> anyhow::Result<PathBuf> {
    let pid = std::process::id();
    let started = process_start_time(pid).context("cannot read this process's start time")?;
    Ok(owner_directory().join(format!("{pid}-{started}")))
}

fn append_claim(id: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(owner_directory())?;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(own_owner_file()?)?;
    writeln!(file, "{id}")?;
    Ok(())
}

/// The ids claimed by processes that still run, and the owner files of processes that do not.
fn owned_by_running_processes() -> (BTreeSet<String>, Vec<PathBuf>) {
    let mut owned = BTreeSet::new();
    let mut dead = Vec::new();
    let Ok(entries) = std::fs::read_dir(owner_directory()) else { return (owned, dead) };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let alive = name
            .split_once('-')
            .and_then(|(pid, started)| Some((pid.parse::<u32>().ok()?, started.parse::<u64>().ok()?)))
            .is_some_and(|(pid, started)| process_start_time(pid) == Some(started));
        if alive {
            owned.extend(std::fs::read_to_string(&path).unwrap_or_default().lines().map(str::to_owned));
        } else {
            dead.push(path);
        }
    }
    (owned, dead)
}

/// When process `pid` started (field 22 of `/proc/<pid>/stat`, in clock ticks since boot), if it
/// runs. Telling a reused pid from the process that wrote an owner file.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_ids_are_read_from_the_names_the_harness_gives() {
        assert_eq!(system_id_of_database("e2e_0123456789ab_inventory").as_deref(), Some("0123456789ab"));
        assert_eq!(system_id_of_database("e2e_0123456789ab_users").as_deref(), Some("0123456789ab"));
        assert_eq!(system_id_of_vhost("e2e-0123456789ab").as_deref(), Some("0123456789ab"));
        assert_eq!(system_id_of_database("e2e_tooshort_users"), None);
        assert_eq!(system_id_of_database("security_0123456789ab"), None);
        assert_eq!(system_id_of_database("e2e_0123456789ab_"), None);
        assert_eq!(system_id_of_vhost("e2e-0123456789abc"), None);
    }

    #[test]
    fn this_process_is_running_and_a_reused_pid_is_not_its_writer() {
        let pid = std::process::id();
        let started = process_start_time(pid).expect("this process runs");
        assert!(started > 0);
        assert_ne!(process_start_time(pid), Some(started + 1));
    }
}
