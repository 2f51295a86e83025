//! The real nginx in front of each scenario's services, run from the repository's own gateway
//! configuration (services/gateway/, rendered by the renderer `cargo xtask up` uses too) in a
//! private prefix directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

pub use shop_testkit_base::gateway::{Tls, Upstreams, render_configuration};
use shop_testkit_base::tls::LocalCa;

/// HTTPS at a scenario's gateway, beside HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Https {
    /// As `cargo xtask up` serves it: both protocols answer alike.
    BesideHttp,
    /// The production profile's gateway: plain HTTP is redirected to HTTPS, HTTPS answers carry
    /// HSTS.
    Production,
}

/// The certificate authority of this process's gateways, made at its first use: a client that
/// trusts it (and nothing else) reaches every scenario's gateway over HTTPS.
pub fn local_ca() -> &'static LocalCa {
    static AUTHORITY: std::sync::OnceLock<LocalCa> = std::sync::OnceLock::new();
    AUTHORITY.get_or_init(|| LocalCa::generate("ecommerce-rust test CA").expect("a local certificate authority"))
}

/// The name (an address here) a scenario's gateway is reached by over HTTPS, which its
/// certificate names.
pub const HTTPS_HOST: &str = "127.0.0.1";

/// A running nginx. [`Gateway::stop`] stops it; dropping it without stopping kills the master as
/// a last resort, which leaves its worker behind, so always stop it.
pub struct Gateway {
    pub port: u16,
    /// Where HTTPS is served, when it is.
    pub https_port: Option<u16>,
    prefix: PathBuf,
    /// The nginx master process (it runs with `daemon off`, so it is our child).
    process: Child,
}

impl Gateway {
    pub async fn start(upstreams: &Upstreams, prefix: PathBuf, https: Option<Https>) -> anyhow::Result<Self> {
        let mut last_error = None;
        // The port is picked by binding port 0 and letting go of it; another process may take it
        // in between, so try a few times.
        for _ in 0..5 {
            let port = free_port()?;
            let tls = match https {
                Some(https) => Some(certificate_in(&prefix, free_port()?, https)?),
                None => None,
            };
            match Self::start_on(upstreams, &prefix, port, tls.as_ref()).await {
                Ok(gateway) => return Ok(gateway),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    async fn start_on(upstreams: &Upstreams, prefix: &Path, port: u16, tls: Option<&Tls>) -> anyhow::Result<Self> {
        render_configuration(upstreams, prefix, port, tls)?;
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
            // /health answers over plain HTTP in every profile; nginx opens every listener at once.
            if client
                .get(format!("http://127.0.0.1:{port}/health"))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success())
            {
                return Ok(Self { port, https_port: tls.map(|tls| tls.port), prefix: prefix.to_owned(), process });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop_nginx(&mut process).await;
        bail!("nginx did not answer on port {port}")
    }

    /// Where clients reach the gateway: over HTTPS when it serves it, otherwise HTTP.
    pub fn url(&self) -> String {
        self.https_url().unwrap_or_else(|| self.http_url())
    }

    /// Plain HTTP, whatever else the gateway serves.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn https_url(&self) -> Option<String> {
        self.https_port.map(|port| format!("https://{HTTPS_HOST}:{port}"))
    }

    /// Stops nginx and checks that nothing of it still listens (a leftover worker would).
    pub async fn stop(mut self) {
        stop_nginx(&mut self.process).await;
        let _ = std::fs::remove_dir_all(&self.prefix);
        for port in [Some(self.port), self.https_port].into_iter().flatten() {
            let still_listening = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok();
            assert!(!still_listening, "nginx stopped, but something still listens on its port {port}");
        }
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

/// A certificate for the gateway in `prefix`, signed by [`local_ca`], served on `port`.
fn certificate_in(prefix: &Path, port: u16, https: Https) -> anyhow::Result<Tls> {
    let directory = prefix.join("tls");
    std::fs::create_dir_all(&directory)?;
    let certificate = local_ca().issue(&[HTTPS_HOST, "localhost"])?;
    let tls = Tls {
        port,
        certificate: directory.join("gateway.pem"),
        key: directory.join("gateway-key.pem"),
        production: https == Https::Production,
    };
    certificate.write(&tls.certificate, &tls.key)?;
    Ok(tls)
}

/// A client that trusts the gateways' local certificate authority and nothing else, speaking
/// HTTP/2 where the server offers it (ALPN) and HTTP/1.1 otherwise, limited to `versions` of TLS
/// (`None`: 1.2 and 1.3).
pub fn https_client(versions: Option<reqwest::tls::Version>) -> anyhow::Result<reqwest::Client> {
    let authority = reqwest::Certificate::from_pem(local_ca().certificate_pem().as_bytes())?;
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30)).tls_certs_only([authority]);
    if let Some(version) = versions {
        builder = builder.tls_version_min(version).tls_version_max(version);
    }
    Ok(builder.build()?)
}

fn nginx_binary() -> String {
    std::env::var("NGINX")
        .unwrap_or_else(|_| if Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx".into() } else { "nginx".into() })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
