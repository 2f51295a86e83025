//! The one table of the shop's services as xtask runs them: name, binary (and Docker image, and
//! docker-compose service), the guide's port, and what each needs.

pub struct Service {
    /// `user`, `product`, ...: how the guide and the logs name it.
    pub name: &'static str,
    /// The binary, the image `ecommerce/<binary>:latest` and the docker-compose service.
    pub binary: &'static str,
    /// The guide's port (`cargo xtask up`, docker-compose).
    pub port: u16,
    /// Its PostgreSQL database, for those that have one.
    pub postgres_database: Option<&'static str>,
    /// The variable docker-compose.yml publishes its port from.
    pub compose_port_variable: &'static str,
}

/// In the order they start: the user service first (the others fetch its keys), product before
/// order (orders look prices up).
pub const SERVICES: [Service; 4] = [
    Service {
        name: "user",
        binary: "user-service",
        port: 8003,
        postgres_database: Some("users"),
        compose_port_variable: "USER_SERVICE_PORT",
    },
    Service {
        name: "product",
        binary: "product-service",
        port: 8000,
        postgres_database: None,
        compose_port_variable: "PRODUCT_SERVICE_PORT",
    },
    Service {
        name: "inventory",
        binary: "inventory-service",
        port: 8002,
        postgres_database: Some("inventory"),
        compose_port_variable: "INVENTORY_SERVICE_PORT",
    },
    Service {
        name: "order",
        binary: "order-service",
        port: 8001,
        postgres_database: None,
        compose_port_variable: "ORDER_SERVICE_PORT",
    },
];

pub fn service(name: &str) -> &'static Service {
    SERVICES.iter().find(|service| service.name == name).unwrap_or_else(|| panic!("no service {name}"))
}

/// `http://127.0.0.1:<port>` of a service on its guide's port.
pub fn local_url(service: &Service) -> String {
    format!("http://127.0.0.1:{}", service.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_has_its_own_port_binary_and_compose_variable() {
        for (index, service) in SERVICES.iter().enumerate() {
            for other in &SERVICES[index + 1..] {
                assert_ne!(service.port, other.port);
                assert_ne!(service.binary, other.binary);
                assert_ne!(service.compose_port_variable, other.compose_port_variable);
            }
            assert_eq!(service.binary, format!("{}-service", service.name));
        }
    }

    #[test]
    fn the_binaries_are_the_workspaces_service_packages() {
        let manifest = std::fs::read_to_string(crate::workspace_root().join("Cargo.toml")).unwrap();
        for service in &SERVICES {
            assert!(
                manifest.contains(&format!("{} = {{ path = \"services/{}\" }}", service.binary, service.name)),
                "{}",
                service.binary
            );
        }
    }
}
