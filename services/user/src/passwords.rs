//! Password hashing with argon2id.
//!
//! Hashing is deliberately slow (tens of milliseconds of CPU and megabytes of memory per call),
//! so every hash and verification runs on threads of its own, never on a runtime worker: as many
//! as there are cores, each reusing its own memory. (On tokio's blocking pool a call can land on
//! any of hundreds of threads, and the allocator keeps freed memory per thread: a burst of 64
//! sign-ups left the user service at 620 MiB resident, 19 MiB of argon2 memory kept by each of
//! the threads it had used.) The cost parameters come from configuration: production uses
//! OWASP's recommendation, tests pass cheap ones instead of weakening the defaults.
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
    /// The threads that hash and verify, one per core. More would only take turns on the cores
    /// while each held argon2's memory; a flood of logins waits in their queue instead, and is
    /// bounded upstream by the gateway's per-address limit.
    workers: Workers,
}

type Job = Box<dyn FnOnce() + Send>;

/// A few long-lived threads taking jobs from one queue; they end when every handle is dropped.
#[derive(Debug, Clone)]
struct Workers {
    jobs: tokio::sync::mpsc::Sender<Job>,
}

impl Workers {
    fn start(count: usize) -> anyhow::Result<Self> {
        let (jobs, queue) = tokio::sync::mpsc::channel::<Job>(1024);
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        for number in 0..count {
            let queue = std::sync::Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("password-hashing-{number}"))
                .spawn(move || {
                    loop {
                        // One worker waits on the queue at a time; the others wait for the lock.
                        let job = queue.lock().map_or(None, |mut queue| queue.blocking_recv());
                        match job {
                            // A panicking job fails its own caller (its reply is dropped), not the worker.
                            Some(job) => drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))),
                            None => return,
                        }
                    }
                })
                .context("failed to start a password hashing thread")?;
        }
        Ok(Self { jobs })
    }

    /// Runs `work` on a worker and waits, asynchronously, for its answer.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        self.jobs.send(job).await.map_err(|_| anyhow::anyhow!("the password hashing threads have stopped"))?;
        answer.await.context("a password hashing job panicked")
    }
}

impl PasswordHasher {
    /// Validates the cost parameters and prepares the decoy hash (one hash at start-up).
    pub async fn new(settings: PasswordHashing) -> anyhow::Result<Self> {
        let params = Params::new(settings.memory_kib, settings.iterations, settings.parallelism, None)
            .map_err(|error| anyhow::anyhow!("invalid argon2 parameters {settings:?}: {error}"))?;
        let cores = std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(1);
        let workers = Workers::start(cores)?;
        let decoy_password = uuid::Uuid::new_v4().to_string();
        let decoy_hash = hash_on(&workers, params.clone(), decoy_password).await?;
        Ok(Self { params, decoy_hash, workers })
    }

    /// An argon2id PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) with a fresh salt.
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        hash_on(&self.workers, self.params.clone(), password.to_owned()).await
    }

    /// Whether `password` matches `stored_hash`. The parameters stored in the hash are used, so
    /// hashes made before a change of configuration keep verifying.
    pub async fn verify(&self, password: &str, stored_hash: &str) -> anyhow::Result<bool> {
        let password = password.to_owned();
        let stored_hash = stored_hash.to_owned();
        self.workers.run(move || verify_now(&password, &stored_hash)).await?
    }

    /// Spends the time of one verification without any user, for unknown emails.
    pub async fn verify_decoy(&self, password: &str) -> anyhow::Result<()> {
        self.verify(password, &self.decoy_hash.clone()).await.map(drop)
    }
}

fn argon2id(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

async fn hash_on(workers: &Workers, params: Params, password: String) -> anyhow::Result<String> {
    workers
        .run(move || {
            argon2id(params)
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| anyhow::anyhow!("failed to hash a password: {error}"))
        })
        .await?
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
    async fn every_hash_runs_on_one_of_a_few_long_lived_threads() {
        let workers = Workers::start(2).unwrap();
        let mut names = std::collections::BTreeSet::new();
        let runs: Vec<_> =
            (0..32).map(|_| workers.run(|| std::thread::current().name().unwrap_or_default().to_owned())).collect();
        for name in futures::future::join_all(runs).await {
            names.insert(name.unwrap());
        }
        assert!(names.iter().all(|name| name.starts_with("password-hashing-")), "{names:?}");
        assert!(names.len() <= 2, "{names:?}");
    }

    #[tokio::test]
    async fn a_panicking_job_fails_its_caller_and_the_worker_goes_on() {
        let workers = Workers::start(1).unwrap();
        assert!(workers.run(|| panic!("boom")).await.is_err());
        assert_eq!(workers.run(|| 7).await.unwrap(), 7);
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
