//! `broker-users`: each service's broker user and its rights on a vhost, as JSON, from
//! `common::messaging::topology::Service::permissions`: what `cargo xtask up` creates on the local
//! broker, and what docker-compose's definitions (deploy/rabbitmq/definitions.json) must match.
//!
//! `[{"user": "order", "configure": "^(...)$", "write": "^amq\\.default$", "read": "^(...)$"}, ...]`

use common::messaging::topology::Service;

fn main() {
    let users: Vec<serde_json::Value> = Service::ALL
        .into_iter()
        .map(|service| {
            let rights = service.permissions();
            serde_json::json!({
                "user": service.broker_user(),
                "configure": rights.configure,
                "write": rights.write,
                "read": rights.read,
            })
        })
        .collect();
    println!("{}", serde_json::Value::Array(users));
}
