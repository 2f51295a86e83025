//! A RabbitMQ vhost of a test's own, created and deleted through the management API, shared by
//! the messaging tests of several crates (included with `#[path]`): each test adds the helpers it
//! needs in an `impl` block of its own.

pub struct TestVirtualHost {
    pub name: String,
    /// `amqp://guest:guest@host:port/<vhost>`.
    pub amqp_url: String,
    management_url: String,
    http: reqwest::Client,
}

impl TestVirtualHost {
    /// Creates a vhost named `<prefix>-<uuid>` and gives guest full rights on it.
    pub async fn create(prefix: &str) -> Self {
        let server = common::config::env_or("RABBITMQ_URL_WITHOUT_VHOST", "amqp://guest:guest@127.0.0.1:5672");
        let management_url = common::config::env_or("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672");
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        let vhost = Self { amqp_url: format!("{server}/{name}"), management_url, http: reqwest::Client::new(), name };
        vhost.management(reqwest::Method::PUT, &format!("/api/vhosts/{}", vhost.name), None).await;
        let rights = serde_json::json!({ "configure": ".*", "write": ".*", "read": ".*" });
        vhost.management(reqwest::Method::PUT, &format!("/api/permissions/{}/guest", vhost.name), Some(rights)).await;
        vhost
    }

    pub async fn management(&self, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) {
        let mut request =
            self.http.request(method.clone(), format!("{}{path}", self.management_url)).basic_auth("guest", Some("guest"));
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
