//! The real nginx in front of each scenario's services, run from the repository's own gateway
//! configuration (services/gateway/, rendered by the renderer `cargo xtask up` uses too) in a
//! private prefix directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

pub use shop_testkit_base::gateway::{Upstreams, render_configuration};

/// A running nginx. [`Gateway::stop`] stops it; dropping it without stopping kills the master as
/// a last resort, which leaves its worker behind, so always stop it.
pub struct Gateway {
    pub port: u16,
    prefix: PathBuf,
    /// The nginx master process (it runs with `daemon off`, so it is our child).
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
        stop_nginx(&mut process).await;
        bail!("nginx did not answer on port {port}")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops nginx and checks that nothing of it still listens (a leftover worker would).
    pub async fn stop(mut self) {
        stop_nginx(&mut self.process).await;
        let _ = std::fs::remove_dir_all(&self.prefix);
        let still_listening = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok();
        assert!(!still_listening, "nginx stopped, but something still listens on its port {}", self.port);
    }
}

/// Asks the nginx master to stop (SIGTERM: it stops its workers, then itself) and waits for it.
/// Killing the master outright would orphan its worker, which would keep the port open.
async fn stop_nginx(master: &mut Child) {
    if let Some(pid) = master.id() {
        let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
        if tokio::time::timeout(Duration::from_secs(10), master.wait()).await.is_ok() {
            return;
        }
    }
    let _ = master.kill().await;
}

fn nginx_binary() -> String {
    std::env::var("NGINX")
        .unwrap_or_else(|_| if Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx".into() } else { "nginx".into() })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
