//! Each instance's configuration: its service's defaults plus this system's databases, vhost
//! and peers, reached through the instance's own fault proxies; never the caller's environment,
//! which a harness process poisons.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use anyhow::Context as _;
use common::config::{HttpSettings, Settings as _};
use common::messaging::topology::Service;

use super::addresses::*;
use super::process::*;
use super::*;

/// Per-scenario PostgreSQL pools stay small: several scenarios run at once against a server
/// with max_connections = 100.
pub(super) const DATABASE_MAX_CONNECTIONS: u32 = 3;

/// How often a system's user service reads its key directory again (see [`Setup::key_directory`]).
pub const KEY_RELOAD: std::time::Duration = std::time::Duration::from_secs(1);
/// How often, with a key directory, the other services fetch the key set again.
pub const KEY_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// The account the harness makes staff, as an operator would (see [`System::make_staff`]).
pub const STAFF_EMAIL: &str = "staff@shop.example";

/// The PostgreSQL role of each service that keeps its data there, and its database's name in a
/// system (`e2e_<id>_<name>`): each service runs as its own role, which owns its database only,
/// as a deployment runs it (see `common::postgres::provision`).
const DATABASE_ROLES: [(&str, &str); 2] =
    [(user_service::config::DATABASE_ROLE, "users"), (inventory_service::config::DATABASE_ROLE, "inventory")];

/// The roles, made once per process (they are the server's, shared by every system; making one
/// twice at the same moment may collide), each with its development password, its name.
static ROLES_PROVISIONED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Makes system `id`'s PostgreSQL databases, each owned by its service's role.
pub(super) async fn provision_databases(infrastructure: &Infrastructure, id: &str) -> anyhow::Result<()> {
    let admin = &infrastructure.postgres;
    ROLES_PROVISIONED
        .get_or_try_init(|| async {
            for (role, _) in DATABASE_ROLES {
                common::postgres::provision_role(admin, role, role).await?;
            }
            anyhow::Ok(())
        })
        .await?;
    for (role, database) in DATABASE_ROLES {
        common::postgres::provision_database(admin, role, &format!("e2e_{id}_{database}")).await?;
    }
    Ok(())
}

impl System {
    /// The service's PostgreSQL database, reached through the proxy on `proxy_port`, as the
    /// service's own role.
    pub(super) fn database_url(&self, proxy_port: u16, service: &str) -> String {
        let role = DATABASE_ROLES.iter().find(|(_, database)| *database == service).map(|(role, _)| *role);
        let server = through_port(&self.infrastructure.postgres, proxy_port);
        let server = match role {
            Some(role) => shop_testkit_base::servers::logged_in_as(&server, role, role).expect("a PostgreSQL URL"),
            None => server,
        };
        format!("{server}/e2e_{}_{service}", self.id)
    }

    /// The MongoDB server, reached through the proxy on `proxy_port`.
    pub(super) fn mongodb_url(&self, proxy_port: u16) -> String {
        through_port(&self.infrastructure.mongodb, proxy_port)
    }

    pub(super) fn mongodb_database(&self, service: &str) -> String {
        format!("e2e_{}_{service}", self.id)
    }

    /// Grants the staff role to the registered account `email` as an operator does, with the
    /// user service's own command (`user-service staff grant EMAIL`) against its database; the
    /// account's next login or refresh carries the role.
    pub async fn make_staff(&self, email: &str) -> anyhow::Result<()> {
        let command = user_service::staff::StaffCommand::Grant(email.to_owned());
        user_service::staff::run(&self.direct_database_url("users"), &command).await.map(drop)
    }

    /// Takes the staff role back from `email`, as [`Self::make_staff`] gives it.
    pub async fn revoke_staff(&self, email: &str) -> anyhow::Result<()> {
        let command = user_service::staff::StaffCommand::Revoke(email.to_owned());
        user_service::staff::run(&self.direct_database_url("users"), &command).await.map(drop)
    }

    /// The service's PostgreSQL database (`users` or `inventory`) reached directly, not through
    /// a fault proxy: for the teardown's checks, which must read it whatever fault the scenario
    /// left in place.
    pub fn direct_database_url(&self, service: &str) -> String {
        format!("{}/e2e_{}_{service}", self.infrastructure.postgres, self.id)
    }

    /// The service's MongoDB database (`products` or `orders`) reached directly, not through a
    /// fault proxy: for the teardown's checks.
    pub fn direct_mongodb_database(&self, service: &str) -> mongodb::Database {
        self.mongodb.database(&self.mongodb_database(service))
    }

    /// Gives this system's signing key back for another system to use once this one is gone
    /// (see [`SigningKeys`]). The teardown calls it; a system that ends otherwise keeps its key
    /// leased, which costs one key generation, never a shared key.
    pub fn release_signing_key(&self) {
        SigningKeys::global().release(&self.id);
    }

    /// A fingerprint of this system's signing key (its public modulus's last 16 hex digits), for
    /// a test to tell two systems' keys apart.
    pub fn signing_key_fingerprint(&self) -> String {
        let pem = SigningKeys::global().lease(&self.id);
        fingerprint(&pem)
    }

    pub(super) fn http_settings(&self, instance: Instance) -> HttpSettings {
        HttpSettings {
            host: "127.0.0.1".into(),
            port: 0,
            inherited_listener: Some(Arc::clone(&self.listeners[&instance])),
            drain_limit: common::config::DEFAULT_DRAIN_LIMIT,
        }
    }

    /// How the verifying services fetch the key set: their defaults, or, with a key directory,
    /// again every [`KEY_REFRESH`] so that a rotation's scenario sees a removed key refused soon.
    fn key_fetching(&self) -> common::auth::KeyFetching {
        let defaults = common::auth::KeyFetching::default();
        match self.key_directory {
            Some(_) => {
                common::auth::KeyFetching { refresh_interval: KEY_REFRESH, minimum_refetch_interval: KEY_REFRESH / 2, ..defaults }
            }
            None => defaults,
        }
    }

    /// The user service's key directory, for a system set up with one.
    pub fn key_directory(&self) -> Option<&std::path::Path> {
        self.key_directory.as_deref()
    }

    /// What an operator's `user-service keys COMMAND` does to this system's key directory.
    pub async fn signing_keys(&self, command: &user_service::keys::KeysCommand) -> anyhow::Result<String> {
        let directory = self.key_directory().context("this system's user service has no key directory")?;
        user_service::keys::run(directory, user_service::Config::defaults().token_lifetime(), command).await
    }

    pub(super) fn jwks_url(&self) -> String {
        format!("{}/api/v1/auth/jwks", self.service_url(ServiceName::User))
    }

    /// `instance`'s configuration: its service's defaults, plus this system's databases, vhost
    /// and peers, every store and the broker reached through the instance's own fault proxies.
    pub(super) fn config_for(&self, instance: Instance) -> anyhow::Result<ServiceConfig> {
        // The earliest point of a system's start that this module sees: from here on its
        // databases and vhost are this process's, and no sweep of another process removes them.
        crate::sweep::claim(&self.id);
        let database = |instance| self.proxies[&(instance, Dependency::Database)].port;
        // Each service logs in to the broker as its own user.
        let broker_url =
            |instance: Instance, speaker| self.proxies[&(instance, Dependency::Broker)].url_through(&self.vhost.url_as(speaker));
        let service = instance.service;
        Ok(match service {
            ServiceName::User => {
                let mut config = user_service::Config::defaults();
                config.http = self.http_settings(instance);
                config.database_url = self.database_url(database(instance), "users");
                config.database_max_connections = DATABASE_MAX_CONNECTIONS;
                // Its own key, held as long as the system lives: a token of one scenario's shop is
                // never valid in another's.
                config.signing_key = match &self.key_directory {
                    Some(directory) => user_service::config::SigningKeySource::Directory(directory.clone()),
                    None => user_service::config::SigningKeySource::Pem(SigningKeys::global().lease(&self.id).to_string()),
                };
                config.key_reload = KEY_RELOAD;
                // Cheap hashing keeps scenarios fast; production defaults are untouched.
                config.password_hashing =
                    user_service::config::PasswordHashing { memory_kib: 1024, iterations: 1, parallelism: 1 };
                ServiceConfig::User(config)
            }
            ServiceName::Product => {
                let mut config = product_service::Config::defaults();
                config.http = self.http_settings(instance);
                config.mongodb_url = self.mongodb_url(database(instance));
                config.mongodb_database = self.mongodb_database("products");
                config.rabbitmq_url = broker_url(instance, Service::Product)?;
                config.jwks_url = self.jwks_url();
                config.key_fetching = self.key_fetching();
                config.staff_policy = self.staff_policy;
                ServiceConfig::Product(config)
            }
            ServiceName::Inventory => {
                let mut config = inventory_service::Config::defaults();
                config.http = self.http_settings(instance);
                config.database_url = self.database_url(database(instance), "inventory");
                config.database_max_connections = DATABASE_MAX_CONNECTIONS;
                config.rabbitmq_url = broker_url(instance, Service::Inventory)?;
                config.jwks_url = self.jwks_url();
                config.key_fetching = self.key_fetching();
                config.staff_policy = self.staff_policy;
                ServiceConfig::Inventory(config)
            }
            ServiceName::Order => {
                let mut config = order_service::Config::defaults();
                config.http = self.http_settings(instance);
                config.mongodb_url = self.mongodb_url(database(instance));
                config.mongodb_database = self.mongodb_database("orders");
                config.rabbitmq_url = broker_url(instance, Service::Order)?;
                config.jwks_url = self.jwks_url();
                config.key_fetching = self.key_fetching();
                config.staff_policy = self.staff_policy;
                config.product_service_url = self.service_url(ServiceName::Product);
                ServiceConfig::Order(config)
            }
        })
    }
}

/// What every service variable is set to in a harness process: a service that read its
/// environment instead of the configuration the harness gives it would fail to start.
pub(super) const POISON: &str = "poisoned-by-the-e2e-harness";

/// Sets every variable the services read to an unusable value, proving that nothing in the
/// caller's environment reaches them.
///
/// # Safety
/// Call before any other thread exists (it writes the process environment).
pub unsafe fn poison_service_environment() {
    for variable in common::config::VARIABLES {
        // SAFETY: the caller guarantees no other thread runs yet.
        unsafe { std::env::set_var(variable, POISON) };
    }
}

/// RSA signing keys for the systems of this process: each live system holds a key of its own
/// (leased by its id), and a key goes back to the pool when its system is torn down, for a later
/// system to use. So no two live systems ever share a key, and the process generates at most as
/// many keys as it has systems alive at once (generating one 2048-bit key costs tens to hundreds
/// of milliseconds of a core; one per scenario would cost the whole suite that much again).
pub struct SigningKeys {
    state: Mutex<SigningKeyState>,
}

#[derive(Default)]
struct SigningKeyState {
    /// The key each live system holds, by system id.
    leased: HashMap<String, Arc<str>>,
    /// Keys whose systems are gone, free for the next system.
    free: Vec<Arc<str>>,
    /// How many keys this pool generated (for tests and reports).
    generated: usize,
}

impl SigningKeys {
    /// The pool of this process.
    pub fn global() -> &'static SigningKeys {
        static KEYS: LazyLock<SigningKeys> = LazyLock::new(SigningKeys::new);
        &KEYS
    }

    pub fn new() -> Self {
        Self { state: Mutex::new(SigningKeyState::default()) }
    }

    fn state(&self) -> MutexGuard<'_, SigningKeyState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key `system` holds (PKCS#8 PEM): the one it leased before, a free one, or a new one.
    pub fn lease(&self, system: &str) -> Arc<str> {
        {
            let mut state = self.state();
            if let Some(key) = state.leased.get(system) {
                return Arc::clone(key);
            }
            if let Some(key) = state.free.pop() {
                state.leased.insert(system.to_owned(), Arc::clone(&key));
                return key;
            }
        }
        // Generated without the lock held: other systems may lease meanwhile.
        let key: Arc<str> = generate_signing_key().into();
        let mut state = self.state();
        state.generated += 1;
        // Another call for the same system may have won the race: keep one, free the other.
        if let Some(existing) = state.leased.get(system).cloned() {
            state.free.push(key);
            return existing;
        }
        state.leased.insert(system.to_owned(), Arc::clone(&key));
        key
    }

    /// `system` is gone: its key is free for another system.
    pub fn release(&self, system: &str) {
        let mut state = self.state();
        if let Some(key) = state.leased.remove(system) {
            state.free.push(key);
        }
    }

    /// How many keys this pool has generated so far.
    #[cfg(test)]
    pub fn generated(&self) -> usize {
        self.state().generated
    }
}

impl Default for SigningKeys {
    fn default() -> Self {
        Self::new()
    }
}

/// A fresh 2048-bit RSA key, as PKCS#8 PEM.
fn generate_signing_key() -> String {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key generation works");
    key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).expect("a fresh key encodes").to_string()
}

/// The last 16 hex digits of a PEM private key's public modulus.
pub fn fingerprint(pem: &str) -> String {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem).expect("a key this module made decodes");
    let modulus = key.n().to_bytes_be();
    modulus[modulus.len() - 8..].iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_live_systems_share_a_key_and_a_key_is_reused_only_after_its_system_is_gone() {
        let keys = SigningKeys::new();
        let first = keys.lease("system-a");
        let second = keys.lease("system-b");
        assert_ne!(first, second, "two live systems were given the same key");
        assert_eq!(
            keys.lease("system-a"),
            first,
            "a system's key changed while it lived (its restarted user service would sign with another)"
        );
        assert_eq!(keys.generated(), 2);
        keys.release("system-a");
        let third = keys.lease("system-c");
        assert_eq!(third, first, "a released key is reused instead of generating a new one");
        assert_ne!(third, second);
        assert_eq!(keys.generated(), 2);
        let started = std::time::Instant::now();
        let fourth = keys.lease("system-d");
        println!("one 2048-bit RSA key generated in {:?}", started.elapsed());
        assert!(![&first, &second].contains(&&fourth));
        assert_eq!(keys.generated(), 3);
    }
}
