//! `database-roles provision ADMIN_URL ROLE DATABASE`: makes ROLE (password from
//! `DATABASE_ROLE_PASSWORD`, or the file `DATABASE_ROLE_PASSWORD_FILE` names) a login role with no
//! other power, owning DATABASE (created if missing) and all in it, which no other role but
//! administrators may connect to. Idempotent: see `common::postgres::provision`. `cargo xtask up`
//! runs it for the user and inventory services on the local server; a deployment runs it (or its
//! operator's equivalent) before the service's first start, then gives the service a
//! `DATABASE_URL` that logs in as ROLE.

use std::process::ExitCode;

use common::config::Environment;
use common::postgres::{OwnDatabase, provision};

const USAGE: &str = "usage: DATABASE_ROLE_PASSWORD=... database-roles provision ADMIN_URL ROLE DATABASE";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match run(&arguments).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("database-roles: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(arguments: &[String]) -> anyhow::Result<()> {
    let words: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let ["provision", admin_url, role, database] = words.as_slice() else { anyhow::bail!(USAGE) };
    let environment = Environment::Process;
    environment.check_files()?;
    let password = environment.get("DATABASE_ROLE_PASSWORD").ok_or_else(|| anyhow::anyhow!("{USAGE}"))?;
    provision(admin_url, OwnDatabase { role, password: &password, database }).await?;
    println!("{role} owns {database}");
    Ok(())
}
