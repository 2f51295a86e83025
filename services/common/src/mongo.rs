//! The MongoDB client every MongoDB service opens: named after the service, failing fast when no
//! server answers, its pool bounded, and the pool's use counted from the driver's connection
//! events for `/metrics` (the driver has no other window on its pool).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use mongodb::event::EventHandler;
use mongodb::event::cmap::CmapEvent;
use mongodb::options::ClientOptions;

use crate::metrics::PoolUsage;

/// A client and the pool counts its connection events keep.
#[derive(Clone)]
pub struct Connected {
    pub client: mongodb::Client,
    pub pool: Arc<PoolEvents>,
}

/// A client for `url`, named `app_name` on the server, with at most `max_pool_size` connections.
pub async fn connect(url: &str, app_name: &str, max_pool_size: u32) -> anyhow::Result<Connected> {
    let mut options = ClientOptions::parse(url).await.context("MONGODB_URL is not a MongoDB URL")?;
    options.app_name = Some(app_name.to_owned());
    options.max_pool_size = Some(max_pool_size);
    options.server_selection_timeout = Some(crate::config::MONGODB_SERVER_SELECTION_TIMEOUT);
    let pool = Arc::new(PoolEvents::new(max_pool_size));
    let counted = Arc::clone(&pool);
    options.cmap_event_handler = Some(EventHandler::callback(move |event| counted.record(&event)));
    let client = mongodb::Client::with_options(options).context("failed to create the MongoDB client")?;
    Ok(Connected { client, pool })
}

/// The pool as its connection events tell it: every count goes up on one event and down on its
/// pair, so a count left above zero is a connection (or a wait) still open.
#[derive(Debug)]
pub struct PoolEvents {
    max: u64,
    /// Created and not yet closed: lent out, idle or being established.
    open: AtomicU64,
    /// Checked out and not yet checked in.
    in_use: AtomicU64,
    /// Checkouts started and not yet ended (checked out or failed).
    waiting: AtomicU64,
    checkout_failures: AtomicU64,
}

impl PoolEvents {
    fn new(max: u32) -> Self {
        Self {
            max: u64::from(max),
            open: AtomicU64::new(0),
            in_use: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            checkout_failures: AtomicU64::new(0),
        }
    }

    fn record(&self, event: &CmapEvent) {
        let up = |count: &AtomicU64| {
            count.fetch_add(1, Ordering::SeqCst);
        };
        // Never below zero, whatever order the driver's events come in.
        let down = |count: &AtomicU64| {
            let _ = count.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |value| value.checked_sub(1));
        };
        match event {
            CmapEvent::ConnectionCreated(_) => up(&self.open),
            CmapEvent::ConnectionClosed(_) => down(&self.open),
            CmapEvent::ConnectionCheckoutStarted(_) => up(&self.waiting),
            CmapEvent::ConnectionCheckedOut(_) => {
                down(&self.waiting);
                up(&self.in_use);
            }
            CmapEvent::ConnectionCheckoutFailed(_) => {
                down(&self.waiting);
                up(&self.checkout_failures);
            }
            CmapEvent::ConnectionCheckedIn(_) => down(&self.in_use),
            _ => {}
        }
    }

    /// What the pool holds now.
    pub fn usage(&self) -> PoolUsage {
        let in_use = self.in_use.load(Ordering::SeqCst);
        PoolUsage {
            in_use,
            idle: self.open.load(Ordering::SeqCst).saturating_sub(in_use),
            max: self.max,
            waiting: Some(self.waiting.load(Ordering::SeqCst)),
            checkout_failures: Some(self.checkout_failures.load(Ordering::SeqCst)),
        }
    }
}
