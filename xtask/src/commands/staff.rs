//! `cargo xtask staff grant EMAIL | revoke EMAIL | list`: who is staff in the system `cargo xtask
//! up` runs, decided by an operator. It runs the user service's own command
//! (`user-service staff ...`, see `user_service::staff`) against the same database `up` gives the
//! service (`users` on this machine's PostgreSQL, or on `E2E_POSTGRES_URL`). The account must
//! have registered; the role comes with its next login or token refresh.

use std::process::ExitCode;

use anyhow::bail;
use shop_testkit_base::ServerUrls;

use crate::cargo;

const USAGE: &str = "usage: cargo xtask staff grant EMAIL | revoke EMAIL | list";

pub fn staff(arguments: &[String]) -> anyhow::Result<ExitCode> {
    check(arguments)?;
    let database = crate::services::service("user").postgres_database.expect("the user service has a database");
    let status = cargo()
        .args(["run", "--quiet", "-p", "user-service", "--", "staff"])
        .args(arguments)
        .env("DATABASE_URL", format!("{}/{database}", ServerUrls::from_environment().postgres))
        .status()?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn check(arguments: &[String]) -> anyhow::Result<()> {
    let words: Vec<&str> = arguments.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["grant" | "revoke", email] if email.contains('@') => Ok(()),
        ["list"] => Ok(()),
        _ => bail!(USAGE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(text: &str) -> anyhow::Result<()> {
        check(&text.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn grant_revoke_and_list_pass_and_anything_else_is_the_usage() {
        for right in ["grant ann@example.com", "revoke ann@example.com", "list"] {
            assert!(checked(right).is_ok(), "{right:?}");
        }
        for wrong in ["", "grant", "grant ann", "list all", "promote ann@example.com", "grant a@b c@d"] {
            assert_eq!(checked(wrong).unwrap_err().to_string(), USAGE, "{wrong:?}");
        }
    }
}
