//! RabbitMQ's management API, as the tests and the harness use it: vhosts and permissions,
//! connections, and the queues of a vhost (message counts as the API reports them, sampled every
//! few seconds; exact counts come from a passive declare, see the kit's `VirtualHost`).

use anyhow::{Context, bail};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::servers::ManagementLogin;

/// One queue of a vhost, as the management API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QueueSummary {
    pub name: String,
    /// Absent until the API has sampled the queue once.
    #[serde(default)]
    pub messages: Option<u64>,
    #[serde(default)]
    pub consumers: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Management {
    http: reqwest::Client,
    login: ManagementLogin,
}

impl Management {
    pub fn new(login: ManagementLogin) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("an HTTP client without TLS builds");
        Self { http, login }
    }

    /// The user the API is used as: the one given rights on test vhosts.
    pub fn user(&self) -> &str {
        &self.login.user
    }

    /// Any call of the API; its JSON answer (`null` when it answered nothing), or an error naming
    /// the call and what it answered.
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.login.url);
        let mut request = self.http.request(method.clone(), &url).basic_auth(&self.login.user, Some(&self.login.password));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| format!("RabbitMQ management API {method} {url}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("RabbitMQ management API {method} {url} answered {status}: {text}");
        }
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) })
    }

    pub async fn create_vhost(&self, vhost: &str) -> anyhow::Result<()> {
        self.request(Method::PUT, &format!("/api/vhosts/{}", encode(vhost)), None).await.map(drop)
    }

    pub async fn delete_vhost(&self, vhost: &str) -> anyhow::Result<()> {
        self.request(Method::DELETE, &format!("/api/vhosts/{}", encode(vhost)), None).await.map(drop)
    }

    /// Gives the management user every right on `vhost`.
    pub async fn grant_access(&self, vhost: &str) -> anyhow::Result<()> {
        let rights = json!({ "configure": ".*", "write": ".*", "read": ".*" });
        let path = format!("/api/permissions/{}/{}", encode(vhost), encode(&self.login.user));
        self.request(Method::PUT, &path, Some(rights)).await.map(drop)
    }

    /// Creates the broker user `name` with `password` (tagged with nothing: no management
    /// access), or sets its password if it exists. Users are the broker's, not a vhost's.
    pub async fn put_user(&self, name: &str, password: &str) -> anyhow::Result<()> {
        let user = json!({ "password": password, "tags": "" });
        let path = format!("/api/users/{}", encode(name));
        match self.request(Method::PUT, &path, Some(user.clone())).await {
            // Another test created it at the same moment: now it exists, and a PUT updates it.
            Err(error) if format!("{error:#}").contains("user_already_exists") => {
                self.request(Method::PUT, &path, Some(user)).await.map(drop)
            }
            outcome => outcome.map(drop),
        }
    }

    /// Gives `user` on `vhost` the rights of RabbitMQ's three patterns, replacing any it had.
    pub async fn set_permissions(&self, vhost: &str, user: &str, [configure, write, read]: [&str; 3]) -> anyhow::Result<()> {
        let rights = json!({ "configure": configure, "write": write, "read": read });
        let path = format!("/api/permissions/{}/{}", encode(vhost), encode(user));
        self.request(Method::PUT, &path, Some(rights)).await.map(drop)
    }

    /// Takes every right on `vhost` from `user` (none is an error only if the call fails).
    pub async fn clear_permissions(&self, vhost: &str, user: &str) -> anyhow::Result<()> {
        let path = format!("/api/permissions/{}/{}", encode(vhost), encode(user));
        match self.request(Method::DELETE, &path, None).await {
            Err(error) if format!("{error:#}").contains("404") => Ok(()),
            outcome => outcome.map(drop),
        }
    }

    /// Takes every right on `vhost` from the management user: new connections are refused.
    pub async fn revoke_access(&self, vhost: &str) -> anyhow::Result<()> {
        let path = format!("/api/permissions/{}/{}", encode(vhost), encode(&self.login.user));
        self.request(Method::DELETE, &path, None).await.map(drop)
    }

    /// The names of the connections the broker lists for `vhost`.
    pub async fn connection_names(&self, vhost: &str) -> anyhow::Result<Vec<String>> {
        let connections = self.request(Method::GET, &format!("/api/vhosts/{}/connections", encode(vhost)), None).await?;
        Ok(connections
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|connection| connection["name"].as_str().map(str::to_owned))
            .collect())
    }

    /// Closes one connection from the broker's side.
    pub async fn close_connection(&self, name: &str) -> anyhow::Result<()> {
        self.request(Method::DELETE, &format!("/api/connections/{}", encode(name)), None).await.map(drop)
    }

    /// Every queue of `vhost`, sorted by name.
    pub async fn queues(&self, vhost: &str) -> anyhow::Result<Vec<QueueSummary>> {
        let listed = self.request(Method::GET, &format!("/api/queues/{}", encode(vhost)), None).await?;
        let mut queues: Vec<QueueSummary> =
            serde_json::from_value(if listed.is_null() { Value::Array(Vec::new()) } else { listed })
                .context("the management API listed queues in an unexpected shape")?;
        queues.sort_by(|left, right| left.name.cmp(&right.name));
        Ok(queues)
    }
}

/// A path segment, percent-encoded (a space as `%20`, not `+`).
pub fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect::<String>().replace('+', "%20")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_connection_name_is_one_path_segment() {
        assert_eq!(super::encode("127.0.0.1:5000 -> 127.0.0.1:5672"), "127.0.0.1%3A5000%20-%3E%20127.0.0.1%3A5672");
        assert_eq!(super::encode("/"), "%2F");
    }
}
