//! A RabbitMQ vhost of a test's own, created and deleted through the management API, shared by
//! the messaging tests of several crates (included with `#[path]`): each test adds the helpers it
//! needs in an `impl` block of its own.

pub struct TestVirtualHost {
    pub name: String,
    /// `amqp://guest:guest@host:port/<vhost>`.
    pub amqp_url: String,
    management_url: String,
    user: String,
    password: String,
    http: reqwest::Client,
}

impl TestVirtualHost {
    /// Creates a vhost named `<prefix>-<uuid>` and gives the management user (guest unless
    /// `E2E_RABBITMQ_MANAGEMENT_URL` names another) full rights on it.
    pub async fn create(prefix: &str) -> Self {
        let servers = common::config::TestServers::from_environment();
        let server = servers.rabbitmq.clone();
        let (management_url, user, password) = servers.rabbitmq_management_login();
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        let vhost =
            Self { amqp_url: format!("{server}/{name}"), management_url, user, password, http: reqwest::Client::new(), name };
        vhost.management(reqwest::Method::PUT, &format!("/api/vhosts/{}", vhost.name), None).await;
        let rights = serde_json::json!({ "configure": ".*", "write": ".*", "read": ".*" });
        let permissions = format!("/api/permissions/{}/{}", vhost.name, vhost.user);
        vhost.management(reqwest::Method::PUT, &permissions, Some(rights)).await;
        vhost
    }

    pub async fn management(&self, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.management_url))
            .basic_auth(&self.user, Some(&self.password));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        assert!(response.status().is_success(), "{method} {path} answered {}", response.status());
    }

    pub async fn delete(self) {
        self.management(reqwest::Method::DELETE, &format!("/api/vhosts/{}", self.name), None).await;
    }
}
