//! The staff role, decided by an operator: `user-service staff grant EMAIL`, `staff revoke EMAIL`
//! and `staff list`, run against the service's own database (its `DATABASE_URL`), where the
//! service runs (`cargo xtask staff ...` locally; in the images the binary is
//! `/usr/local/bin/service`, so `docker compose exec user-service /usr/local/bin/service staff ...`). A grant or a revoke
//! takes effect at the account's next login or refresh.
//!
//! Not an email address: registration does not verify emails, so a list of addresses
//! (`STAFF_EMAILS`, now a development convenience) makes staff of whoever registers one first.

use anyhow::{Context, bail};

use crate::users::store;

/// What the operator asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaffCommand {
    Grant(String),
    Revoke(String),
    List,
}

impl StaffCommand {
    /// From the arguments after `staff`.
    pub fn parse(arguments: &[String]) -> anyhow::Result<Self> {
        match arguments {
            [verb, email] if verb == "grant" => Ok(Self::Grant(email.clone())),
            [verb, email] if verb == "revoke" => Ok(Self::Revoke(email.clone())),
            [verb] if verb == "list" => Ok(Self::List),
            _ => bail!("usage: user-service staff grant EMAIL | staff revoke EMAIL | staff list"),
        }
    }
}

/// Runs `command` against the user database at `database_url` (migrated first, as the service
/// does at start-up); returns what to tell the operator. An email no account has is an error.
pub async fn run(database_url: &str, command: &StaffCommand) -> anyhow::Result<String> {
    common::postgres::ensure_database(database_url).await?;
    let pool = common::postgres::pool(database_url, 1).await?;
    sqlx::migrate!().run(&pool).await.context("failed to run the user service's migrations")?;
    let said = match command {
        StaffCommand::Grant(email) | StaffCommand::Revoke(email) => {
            let grant = matches!(command, StaffCommand::Grant(_));
            if !store::set_staff(&pool, email, grant).await? {
                bail!("no account has the email {email:?}: it must register first");
            }
            let what = if grant { "granted the staff role to" } else { "revoked the staff role of" };
            tracing::info!(email = %email.trim(), grant, "staff role changed by an operator");
            format!("{what} {}; it takes effect at the account's next login or token refresh", email.trim())
        }
        StaffCommand::List => {
            let staff = store::staff(&pool).await?;
            if staff.is_empty() { "no account has the staff role".to_owned() } else { staff.join("\n") }
        }
    };
    pool.close().await;
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn the_three_commands_parse_and_anything_else_is_refused_with_the_usage() {
        assert_eq!(
            StaffCommand::parse(&arguments("grant ann@example.com")).unwrap(),
            StaffCommand::Grant("ann@example.com".into())
        );
        assert_eq!(
            StaffCommand::parse(&arguments("revoke ann@example.com")).unwrap(),
            StaffCommand::Revoke("ann@example.com".into())
        );
        assert_eq!(StaffCommand::parse(&arguments("list")).unwrap(), StaffCommand::List);
        for wrong in ["", "grant", "grant a b", "promote ann@example.com", "list all"] {
            let error = StaffCommand::parse(&arguments(wrong)).unwrap_err();
            assert!(error.to_string().starts_with("usage:"), "{wrong:?}: {error}");
        }
    }
}
