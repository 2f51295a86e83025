//! Names and addresses: the services, what they depend on, their instances (replicas) and the
//! targets a fault names; each instance's port and URL, and the URLs of the servers reached
//! through a proxy.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{Context, bail};

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceName {
    User,
    Product,
    Inventory,
    Order,
}

impl ServiceName {
    /// The order services start in: the user service first (the others verify its tokens), the
    /// product service before the order service (orders look products up).
    pub const START_ORDER: [ServiceName; 4] =
        [ServiceName::User, ServiceName::Product, ServiceName::Inventory, ServiceName::Order];

    /// Its name, as the steps and Prometheus's jobs say it (`inventory`).
    pub fn name(self) -> &'static str {
        match self {
            ServiceName::User => "user",
            ServiceName::Product => "product",
            ServiceName::Inventory => "inventory",
            ServiceName::Order => "order",
        }
    }
}

impl FromStr for ServiceName {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "user" => Ok(ServiceName::User),
            "product" => Ok(ServiceName::Product),
            "inventory" => Ok(ServiceName::Inventory),
            "order" => Ok(ServiceName::Order),
            other => Err(format!("unknown service {other:?}: expected user, product, inventory or order")),
        }
    }
}

/// What a service depends on, each reached through a fault proxy of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dependency {
    /// Its own database: PostgreSQL for user and inventory, MongoDB for product and order.
    Database,
    /// RabbitMQ (the user service has none).
    Broker,
}

impl FromStr for Dependency {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "database" => Ok(Dependency::Database),
            "broker" => Ok(Dependency::Broker),
            other => Err(format!("unknown dependency {other:?}: expected database or broker")),
        }
    }
}

impl ServiceName {
    pub(super) fn dependencies(self) -> &'static [Dependency] {
        match self {
            ServiceName::User => &[Dependency::Database],
            _ => &[Dependency::Database, Dependency::Broker],
        }
    }
}

/// One running copy of a service: replica 1, 2, ... Every service has at least replica 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instance {
    pub service: ServiceName,
    pub replica: usize,
}

impl Instance {
    /// A service's first (for most services, only) replica.
    pub fn first(service: ServiceName) -> Self {
        Self { service, replica: 1 }
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?} replica {}", self.service, self.replica)
    }
}

/// What a fault hits: every replica of a service (`the inventory service`), or one of them
/// (`inventory replica 2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Service(ServiceName),
    Replica(Instance),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(name) = text.strip_prefix("the ").and_then(|rest| rest.strip_suffix(" service")) {
            return Ok(Target::Service(name.parse()?));
        }
        let (name, replica) = text
            .split_once(" replica ")
            .ok_or_else(|| format!("{text:?} names no service: expected `the inventory service` or `inventory replica 2`"))?;
        let replica = replica.parse().map_err(|_| format!("{replica:?} is not a replica number"))?;
        Ok(Target::Replica(Instance { service: name.parse()?, replica }))
    }
}

impl System {
    /// Every instance of the system, started or stopped.
    pub fn all_instances(&self) -> Vec<Instance> {
        all_instances(&self.replicas)
    }

    /// Where clients reach the gateway: over HTTPS for a system set up with it.
    pub fn gateway_url(&self) -> String {
        self.gateway.as_ref().expect("the gateway runs while the system does").url()
    }

    /// The gateway over plain HTTP, whatever else it serves.
    pub fn plain_gateway_url(&self) -> String {
        self.gateway.as_ref().expect("the gateway runs while the system does").http_url()
    }

    /// HTTPS at the gateway, for a system set up with it.
    pub fn https(&self) -> Option<crate::gateway::Https> {
        self.https
    }

    /// The URL of the service's first replica.
    pub fn service_url(&self, service: ServiceName) -> String {
        self.instance_url(Instance::first(service))
    }

    pub fn instance_url(&self, instance: Instance) -> String {
        format!("http://127.0.0.1:{}", self.port(instance))
    }

    /// Every replica of `service`, as nginx's `host:port` upstream servers.
    pub(super) fn upstreams(&self, service: ServiceName) -> Vec<String> {
        self.instances_of(service).map(|instance| format!("127.0.0.1:{}", self.port(instance))).collect()
    }

    pub(super) fn instances_of(&self, service: ServiceName) -> impl Iterator<Item = Instance> + use<> {
        (1..=self.replicas[&service]).map(move |replica| Instance { service, replica })
    }

    /// The instances `target` names, or an error naming a replica the system does not have.
    pub fn instances(&self, target: Target) -> anyhow::Result<Vec<Instance>> {
        match target {
            Target::Service(service) => Ok(self.instances_of(service).collect()),
            Target::Replica(instance) if (1..=self.replicas[&instance.service]).contains(&instance.replica) => Ok(vec![instance]),
            Target::Replica(instance) => {
                bail!(
                    "there is no {instance}: the {:?} service has {} replica(s)",
                    instance.service,
                    self.replicas[&instance.service]
                )
            }
        }
    }

    pub(super) fn port(&self, instance: Instance) -> u16 {
        self.ports[&instance]
    }
}

/// Every instance of every service, in the order services start in.
pub(super) fn all_instances(replicas: &BTreeMap<ServiceName, usize>) -> Vec<Instance> {
    ServiceName::START_ORDER
        .into_iter()
        .flat_map(|service| (1..=replicas[&service]).map(move |replica| Instance { service, replica }))
        .collect()
}

/// `host:port` of a server URL.
pub(super) fn address_of(url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).with_context(|| format!("{url} is not a URL"))?;
    let host = parsed.host_str().with_context(|| format!("{url} names no host"))?;
    let port = parsed.port_or_known_default().with_context(|| format!("{url} names no port"))?;
    Ok(format!("{host}:{port}"))
}

/// `url` with its host and port replaced by 127.0.0.1 and `port` (a proxy's).
pub(super) fn through_port(url: &str, port: u16) -> String {
    let mut parsed = url::Url::parse(url).expect("the infrastructure's URLs parse");
    parsed.set_host(Some("127.0.0.1")).expect("the URL takes a host");
    parsed.set_port(Some(port)).expect("the URL takes a port");
    parsed.to_string().trim_end_matches('/').to_owned()
}
