//! The real nginx in front of each scenario's services, run from the repository's own gateway
//! configuration (services/gateway/) in a private prefix directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

const GATEWAY_DIRECTORY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/services/gateway");

/// Where each service listens, as `host:port`.
pub struct Upstreams {
    pub user: String,
    pub product: String,
    pub order: String,
    pub inventory: String,
}

/// A running nginx; killed when dropped.
pub struct Gateway {
    pub port: u16,
    prefix: PathBuf,
    /// The nginx master process. `kill_on_drop` makes dropping the gateway stop it.
    process: Child,
}

impl Gateway {
    pub async fn start(upstreams: &Upstreams, prefix: PathBuf) -> anyhow::Result<Self> {
        let mut last_error = None;
        // The port is picked by binding port 0 and letting go of it; another process may take it
        // in between, so try a few times.
        for _ in 0..5 {
            let port = free_port()?;
            match Self::start_on(upstreams, &prefix, port).await {
                Ok(gateway) => return Ok(gateway),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    async fn start_on(upstreams: &Upstreams, prefix: &Path, port: u16) -> anyhow::Result<Self> {
        render_configuration(upstreams, prefix, port)?;
        let mut process = Command::new(nginx_binary())
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("failed to start nginx (is it installed? `apt-get install nginx`)")?;
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if let Some(status) = process.try_wait()? {
                let log = std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default();
                bail!("nginx exited with {status} on port {port}: {log}");
            }
            if client
                .get(format!("http://127.0.0.1:{port}/health"))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success())
            {
                return Ok(Self { port, prefix: prefix.to_owned(), process });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = process.kill().await;
        bail!("nginx did not answer on port {port}")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn stop(mut self) {
        let _ = self.process.kill().await;
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}

/// Renders gateway.conf.template and nginx-local.conf.template into `prefix`.
pub fn render_configuration(upstreams: &Upstreams, prefix: &Path, port: u16) -> anyhow::Result<()> {
    for temporary in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(prefix.join("temp").join(temporary))?;
    }
    let prefix_text = prefix.to_str().context("the prefix path is not UTF-8")?;
    let port_text = port.to_string();
    let variables = [
        ("PREFIX", prefix_text),
        ("GATEWAY_PORT", port_text.as_str()),
        ("USER_SERVICE", upstreams.user.as_str()),
        ("PRODUCT_SERVICE", upstreams.product.as_str()),
        ("ORDER_SERVICE", upstreams.order.as_str()),
        ("INVENTORY_SERVICE", upstreams.inventory.as_str()),
    ];
    for (template, output) in [("gateway.conf.template", "gateway.conf"), ("nginx-local.conf.template", "nginx.conf")] {
        let mut text = std::fs::read_to_string(Path::new(GATEWAY_DIRECTORY).join(template))?;
        for (name, value) in variables {
            text = text.replace(&format!("${{{name}}}"), value);
        }
        std::fs::write(prefix.join(output), text)?;
    }
    Ok(())
}

fn nginx_binary() -> String {
    std::env::var("NGINX")
        .unwrap_or_else(|_| if Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx".into() } else { "nginx".into() })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
