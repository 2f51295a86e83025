//! Start-up: `Application::build` binds (port 0 works; read the port back with `port()`),
//! `run_until_stopped` serves until the shutdown future resolves. The binary and the test
//! harness both start the service through these two calls.

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

use crate::Config;

pub struct Application {
    port: u16,
    listener: TcpListener,
    router: Router,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = common::http::bind(&config.http).await?;
        let port = listener.local_addr()?.port();
        let router = common::http::finish(Router::new().merge(common::health::router("product-service")));
        Ok(Self { port, listener, router })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        common::http::serve(self.listener, self.router, shutdown).await
    }
}
