//! The one way xtask speaks HTTP: the shop's typed client (shop-testkit-base), driven from
//! xtask's blocking code on a small runtime of its own.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;
use shop_testkit_base::Client;

use crate::services::{SERVICES, local_url};

/// Runs `work` to its end on a current-thread runtime.
pub fn block_on<F: Future>(work: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime").block_on(work)
}

/// Every service's `/ready` answers 200 on its guide's port (the build and the start take a
/// while on a cold machine).
pub fn wait_until_ready(timeout: Duration) -> anyhow::Result<()> {
    block_on(async {
        let deadline = Instant::now() + timeout;
        for service in &SERVICES {
            let client = Client::new(local_url(service));
            loop {
                match client.readiness().await {
                    Ok(answer) if answer.status == 200 => break,
                    last if Instant::now() >= deadline => {
                        let last = match last {
                            Ok(answer) => format!("{} {}", answer.status, answer.body),
                            Err(error) => error.to_string(),
                        };
                        bail!("the {} service was not ready within {timeout:?}; last: {last}", service.name)
                    }
                    _ => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        }
        Ok(())
    })
}
