//! Password hashing with argon2id.
//!
//! Hashing is deliberately slow (tens of milliseconds of CPU and megabytes of memory per call),
//! so every hash and verification runs on tokio's blocking pool, never on a runtime worker. The
//! cost parameters come from configuration: production uses OWASP's recommendation, tests pass
//! cheap ones instead of weakening the defaults.
//!
//! This module does not decide who may log in; it only answers "does this password match".

use anyhow::Context;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version};

use crate::config::PasswordHashing;

/// Hashes and verifies passwords with one set of argon2id cost parameters.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    params: Params,
    /// A hash of a random password, verified against when a login names an unknown email, so
    /// that an unknown email costs the same time as a wrong password and response times do not
    /// tell an attacker which emails are registered.
    decoy_hash: String,
    /// How many hashes or verifications may run at once: as many as there are cores. More would
    /// only queue on the blocking pool, holding argon2's memory for each; a flood of logins
    /// waits here instead, and is bounded upstream by the gateway's per-address limit.
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

impl PasswordHasher {
    /// Validates the cost parameters and prepares the decoy hash (one hash at start-up).
    pub async fn new(settings: PasswordHashing) -> anyhow::Result<Self> {
        let params = Params::new(settings.memory_kib, settings.iterations, settings.parallelism, None)
            .map_err(|error| anyhow::anyhow!("invalid argon2 parameters {settings:?}: {error}"))?;
        let decoy_password = uuid::Uuid::new_v4().to_string();
        let decoy_hash = hash_blocking(params.clone(), decoy_password).await?;
        let cores = std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(1);
        Ok(Self { params, decoy_hash, permits: std::sync::Arc::new(tokio::sync::Semaphore::new(cores)) })
    }

    /// An argon2id PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) with a fresh salt.
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await.context("the password hasher is closed")?;
        hash_blocking(self.params.clone(), password.to_owned()).await
    }

    /// Whether `password` matches `stored_hash`. The parameters stored in the hash are used, so
    /// hashes made before a change of configuration keep verifying.
    pub async fn verify(&self, password: &str, stored_hash: &str) -> anyhow::Result<bool> {
        let password = password.to_owned();
        let stored_hash = stored_hash.to_owned();
        let _permit = self.permits.acquire().await.context("the password hasher is closed")?;
        tokio::task::spawn_blocking(move || verify_now(&password, &stored_hash))
            .await
            .context("password verification task panicked")?
    }

    /// Spends the time of one verification without any user, for unknown emails.
    pub async fn verify_decoy(&self, password: &str) -> anyhow::Result<()> {
        self.verify(password, &self.decoy_hash.clone()).await.map(drop)
    }
}

fn argon2id(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

async fn hash_blocking(params: Params, password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        argon2id(params)
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|error| anyhow::anyhow!("failed to hash a password: {error}"))
    })
    .await
    .context("password hashing task panicked")?
}

fn verify_now(password: &str, stored_hash: &str) -> anyhow::Result<bool> {
    let parsed =
        PasswordHash::new(stored_hash).map_err(|error| anyhow::anyhow!("stored password hash does not parse: {error}"))?;
    // The verifier's own parameters are irrelevant: verification reads them from the hash.
    match argon2id(Params::DEFAULT).verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(error) => Err(anyhow::anyhow!("failed to verify a password: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordHashing {
        PasswordHashing { memory_kib: 64, iterations: 1, parallelism: 1 }
    }

    #[tokio::test]
    async fn a_hashed_password_verifies_and_a_different_one_does_not() {
        let hasher = PasswordHasher::new(cheap()).await.unwrap();
        let hash = hasher.hash("Password123").await.unwrap();

        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "unexpected hash format: {hash}");
        assert!(hasher.verify("Password123", &hash).await.unwrap());
        assert!(!hasher.verify("Password124", &hash).await.unwrap());
    }

    #[tokio::test]
    async fn the_same_password_hashes_differently_each_time_because_of_the_salt() {
        let hasher = PasswordHasher::new(cheap()).await.unwrap();
        let first = hasher.hash("Password123").await.unwrap();
        let second = hasher.hash("Password123").await.unwrap();
        assert_ne!(first, second);
    }

    #[tokio::test]
    async fn a_hash_made_with_other_parameters_still_verifies() {
        let old = PasswordHasher::new(PasswordHashing { memory_kib: 128, iterations: 2, parallelism: 1 }).await.unwrap();
        let hash = old.hash("Password123").await.unwrap();
        let new = PasswordHasher::new(cheap()).await.unwrap();
        assert!(new.verify("Password123", &hash).await.unwrap());
    }

    #[tokio::test]
    async fn parameters_below_argon2s_minimum_are_refused_at_start_up() {
        let error = PasswordHasher::new(PasswordHashing { memory_kib: 1, iterations: 1, parallelism: 1 }).await.unwrap_err();
        assert!(error.to_string().contains("invalid argon2 parameters"), "{error}");
    }

    #[tokio::test]
    async fn a_corrupt_stored_hash_is_an_error_not_a_mismatch() {
        let hasher = PasswordHasher::new(cheap()).await.unwrap();
        assert!(hasher.verify("Password123", "not a hash").await.is_err());
    }
}
