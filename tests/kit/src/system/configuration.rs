//! Each instance's configuration: its service's defaults plus this system's databases, vhost
//! and peers, reached through the instance's own fault proxies; never the caller's environment,
//! which a harness process poisons.

use std::sync::{Arc, OnceLock};

use common::config::{HttpSettings, Settings as _};

use super::addresses::*;
use super::process::*;
use super::*;

/// Per-scenario PostgreSQL pools stay small: several scenarios run at once against a server
/// with max_connections = 100.
pub(super) const DATABASE_MAX_CONNECTIONS: u32 = 3;

/// The account whose tokens carry the staff role in every system (`STAFF_EMAILS`).
pub const STAFF_EMAIL: &str = "staff@shop.example";

impl System {
    /// The service's PostgreSQL database, reached through the proxy on `proxy_port`.
    pub(super) fn database_url(&self, proxy_port: u16, service: &str) -> String {
        format!("{}/e2e_{}_{service}", through_port(&self.infrastructure.postgres, proxy_port), self.id)
    }

    /// The MongoDB server, reached through the proxy on `proxy_port`.
    pub(super) fn mongodb_url(&self, proxy_port: u16) -> String {
        through_port(&self.infrastructure.mongodb, proxy_port)
    }

    pub(super) fn mongodb_database(&self, service: &str) -> String {
        format!("e2e_{}_{service}", self.id)
    }

    pub(super) fn http_settings(&self, instance: Instance) -> HttpSettings {
        HttpSettings {
            host: "127.0.0.1".into(),
            port: 0,
            inherited_listener: Some(Arc::clone(&self.listeners[&instance])),
            drain_limit: common::config::DEFAULT_DRAIN_LIMIT,
        }
    }

    pub(super) fn jwks_url(&self) -> String {
        format!("{}/api/v1/auth/jwks", self.service_url(ServiceName::User))
    }

    /// `instance`'s configuration: its service's defaults, plus this system's databases, vhost
    /// and peers, every store and the broker reached through the instance's own fault proxies.
    pub(super) fn config_for(&self, instance: Instance) -> anyhow::Result<ServiceConfig> {
        let database = |instance| self.proxies[&(instance, Dependency::Database)].port;
        let broker_url = |instance| self.proxies[&(instance, Dependency::Broker)].url_through(&self.vhost.amqp_url);
        let service = instance.service;
        Ok(match service {
            ServiceName::User => {
                let mut config = user_service::Config::defaults();
                config.http = self.http_settings(instance);
                config.database_url = self.database_url(database(instance), "users");
                config.database_max_connections = DATABASE_MAX_CONNECTIONS;
                config.signing_key = user_service::config::SigningKeySource::Pem(test_signing_key().to_owned());
                config.staff_emails = vec![STAFF_EMAIL.to_owned()];
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
                config.rabbitmq_url = broker_url(instance)?;
                config.jwks_url = self.jwks_url();
                config.staff_policy = self.staff_policy;
                ServiceConfig::Product(config)
            }
            ServiceName::Inventory => {
                let mut config = inventory_service::Config::defaults();
                config.http = self.http_settings(instance);
                config.database_url = self.database_url(database(instance), "inventory");
                config.database_max_connections = DATABASE_MAX_CONNECTIONS;
                config.rabbitmq_url = broker_url(instance)?;
                config.jwks_url = self.jwks_url();
                config.staff_policy = self.staff_policy;
                ServiceConfig::Inventory(config)
            }
            ServiceName::Order => {
                let mut config = order_service::Config::defaults();
                config.http = self.http_settings(instance);
                config.mongodb_url = self.mongodb_url(database(instance));
                config.mongodb_database = self.mongodb_database("orders");
                config.rabbitmq_url = broker_url(instance)?;
                config.jwks_url = self.jwks_url();
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

/// One RSA key for every scenario of the process: generating one takes a moment.
pub(super) fn test_signing_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs8::EncodePrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key generation works");
        key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).expect("a fresh key encodes").to_string()
    })
}
