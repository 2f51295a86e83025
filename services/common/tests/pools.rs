//! Each store's connection pool as `/metrics` reports it, against the real servers
//! (`E2E_POSTGRES_URL`, `E2E_MONGODB_URL`; the local ones by default): connections lent out
//! count as `in_use` while they are held and go back to `idle` when they are returned; MongoDB's
//! pool, read from the driver's connection events, never reports more in use than its maximum,
//! shows requests waiting when it is saturated, and settles to nothing in use and nothing waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::metrics::{Metrics, PoolUsage};

/// The sample `line` of `metrics` appears within a few seconds (a returned connection goes back
/// to the pool a moment after it is dropped).
async fn reports(metrics: &Metrics, lines: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = metrics.scrape().await;
        let missing: Vec<_> = lines.iter().filter(|line| !text.lines().any(|rendered| rendered == **line)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{missing:?} not in:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_postgres_pool_counts_connections_held_as_in_use_until_they_are_returned() {
    let url = shop_testkit_base::ServerUrls::from_environment().postgres;
    let pool = common::postgres::pool(&format!("{url}/postgres"), 3).await.unwrap();
    let metrics = Metrics::new();
    let watched = pool.clone();
    metrics.watch_pool("postgres", Arc::new(move || common::postgres::usage(&watched)));

    let held = [pool.acquire().await.unwrap(), pool.acquire().await.unwrap()];
    reports(&metrics, &[r#"pool_connections{pool="postgres",state="in_use"} 2"#, r#"pool_max_connections{pool="postgres"} 3"#])
        .await;
    drop(held);
    reports(
        &metrics,
        &[r#"pool_connections{pool="postgres",state="in_use"} 0"#, r#"pool_connections{pool="postgres",state="idle"} 2"#],
    )
    .await;
    pool.close().await;
}

#[tokio::test]
async fn the_mongodb_pool_never_lends_more_than_its_maximum_shows_who_waits_and_settles() {
    let url = shop_testkit_base::ServerUrls::from_environment().mongodb;
    let connected = common::mongo::connect(&url, "pool-test", 1).await.unwrap();
    let collection = connected.client.database(&format!("e2e_pool_{}", uuid::Uuid::new_v4().simple())).collection("writes");
    let pool = connected.pool.clone();

    // Sixteen writers on one connection, watched while they run.
    let (most_in_use, most_waiting) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let done = tokio_util::sync::CancellationToken::new();
    let watcher = tokio::spawn({
        let (pool, most_in_use, most_waiting, done) = (pool.clone(), most_in_use.clone(), most_waiting.clone(), done.clone());
        async move {
            while !done.is_cancelled() {
                let usage = pool.usage();
                most_in_use.fetch_max(usage.in_use, Ordering::SeqCst);
                most_waiting.fetch_max(usage.waiting.unwrap(), Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        }
    });
    let writers: Vec<_> = (0..16)
        .map(|writer| {
            let collection = collection.clone();
            tokio::spawn(async move {
                for write in 0..5 {
                    collection.insert_one(bson::doc! { "writer": writer, "write": write }).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    done.cancel();
    watcher.await.unwrap();

    assert_eq!(most_in_use.load(Ordering::SeqCst), 1, "one connection, lent to one writer at a time");
    assert!(most_waiting.load(Ordering::SeqCst) >= 1, "sixteen writers on one connection: some waited");
    assert_eq!(collection.count_documents(bson::doc! {}).await.unwrap(), 80);

    // A connection goes back to the pool a moment after its operation ends.
    let metrics = Metrics::new();
    let watched = pool.clone();
    metrics.watch_pool("mongodb", Arc::new(move || watched.usage()));
    reports(
        &metrics,
        &[
            r#"pool_connections{pool="mongodb",state="in_use"} 0"#,
            r#"pool_connections{pool="mongodb",state="idle"} 1"#,
            r#"pool_max_connections{pool="mongodb"} 1"#,
            r#"pool_waiting{pool="mongodb"} 0"#,
            r#"pool_checkout_failures_total{pool="mongodb"} 0"#,
        ],
    )
    .await;
    assert_eq!(pool.usage(), PoolUsage { in_use: 0, idle: 1, max: 1, waiting: Some(0), checkout_failures: Some(0) });
    collection.drop().await.unwrap();
}
