//! One isolated copy of the whole system per scenario: its own PostgreSQL databases, MongoDB
//! databases and RabbitMQ vhost, the four services started in-process (on ports the system
//! holds) through the same `build` / `run_until_stopped` calls their binaries use,
//! and the real nginx in front. Services can be stopped and started again on the same port, or
//! killed, to inject outages; each runs in a tokio runtime and thread of its own, like a process
//! of its own, and reaches its database and the broker through fault proxies of its own (see
//! [`crate::proxy`]).
//!
//! Each service's port belongs to the system, not to the service: the service serves on a
//! duplicate of the system's listening socket, and while the service is stopped or killed the
//! system holds the port with a socket that does not listen, so every connection is refused as
//! at a dead process's port (nginx tries the next replica, or answers its JSON 503). So nobody
//! else can take a stopped service's port, and a restart serves on exactly the port nginx knows.
//!
//! A system uses the process's servers ([`crate::infrastructure::get`]) unless its [`Setup`]
//! names others (the chaos run's own servers, which it stops and kills).
//!
//! A service may run as several replicas ([`Setup::replicas`]): each replica is an
//! [`Instance`] with its own port, runtime and fault proxies, all sharing the service's
//! databases and queues, and nginx balances the service's routes over them.
//!
//! Services are configured from their defaults plus what the system sets, never from the
//! caller's environment, and they run inside a tracing span that names the system (see
//! [`crate::logs`]).
//!
//! By job: [`addresses`] (names of services, instances and targets; ports and URLs),
//! [`configuration`] (each instance's configuration, the staff account, the poisoned
//! environment), [`process`] (a service run as if it were a process of its own, and the
//! refusing port of a stopped one), [`lifecycle`] (start, stop, kill, readiness, faults' proofs, removal
//! of the data), [`dependencies`] (which instances depend on which server, and the proof that a
//! server's fault shows on their readiness) and [`settling`] (what the system is still doing,
//! and waiting until it is idle).

mod addresses;
mod configuration;
mod dependencies;
mod lifecycle;
mod process;
mod settling;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use addresses::{Dependency, Instance, ServiceName, Target};
pub use configuration::{KEY_REFRESH, KEY_RELOAD, STAFF_EMAIL, poison_service_environment};
pub use shop_testkit_base::ServerKind;

use crate::gateway::Gateway;
use crate::infrastructure::Infrastructure;
use crate::proxy::Proxy;
use crate::rabbitmq::VirtualHost;
use process::{RefusingPort, RunningService};

pub struct System {
    pub id: String,
    pub vhost: VirtualHost,
    infrastructure: &'static Infrastructure,
    /// How many replicas each service has.
    replicas: BTreeMap<ServiceName, usize>,
    /// Who may do staff work in the product, inventory and order services.
    staff_policy: common::auth::StaffPolicy,
    /// The user service's key directory (`JWT_KEY_DIR`), for a system set up with one.
    key_directory: Option<std::path::PathBuf>,
    /// Every instance's port, fixed for the system's whole life (nginx's upstreams point at it).
    ports: BTreeMap<Instance, u16>,
    /// The listening socket of every running instance; the service serves on a duplicate of it.
    listeners: BTreeMap<Instance, Arc<std::net::TcpListener>>,
    running: BTreeMap<Instance, RunningService>,
    /// The ports of stopped and killed instances, held without listening: connections are
    /// refused, and nobody else can take the port before the instance starts again.
    refusing: BTreeMap<Instance, RefusingPort>,
    gateway: Option<Gateway>,
    /// HTTPS at the gateway, beside HTTP, for a system set up with it.
    https: Option<crate::gateway::Https>,
    /// For reading the MongoDB services' outboxes (an event stored and never published).
    mongodb: mongodb::Client,
    /// One fault proxy per instance and dependency: every connection an instance makes to its
    /// database or to the broker goes through its own, so a fault can hit one replica alone.
    proxies: BTreeMap<(Instance, Dependency), Proxy>,
}

/// How a system is set up beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// How many replicas of each service named here (at least one); one of every other.
    pub replicas: BTreeMap<ServiceName, usize>,
    /// `REQUIRE_STAFF_ROLE` for the product, inventory and order services.
    pub staff_only: bool,
    /// The user service reads its signing keys from a directory of its own (`JWT_KEY_DIR`, read
    /// again every [`KEY_RELOAD`]), holding the system's key at first, for an operator to rotate
    /// ([`System::rotate_signing_key`]); the other services fetch the key set every
    /// [`KEY_REFRESH`].
    pub key_directory: bool,
    /// The gateway serves HTTPS too, with a certificate of [`crate::gateway::local_ca`], and
    /// clients reach it that way ([`System::gateway_url`]).
    pub https: Option<crate::gateway::Https>,
    /// The servers to use instead of the process's ([`crate::infrastructure::get`]): the fault
    /// proxies' upstreams, the databases, the vhost, the management API, the teardown's checks
    /// and the removal of the data all go there. A run that stops and kills its own servers
    /// (see [`shop_testkit_base::own_servers`]) leaks a box of their URLs to give them here.
    pub servers: Option<&'static Infrastructure>,
}
