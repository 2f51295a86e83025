//! Work that must finish once started, whoever stops waiting for it.
//!
//! An async handler can be dropped at any await: hyper drops a request's handler when its client
//! hangs up, and a consumer drops its in-flight handlers when the broker connection fails. For
//! most work that is harmless (a PostgreSQL transaction dropped is rolled back), but not for a
//! write whose effect outlives the process's memory of it: an outbox write that announced a
//! hand-over to its relay must answer it, or the events it stored wait for a read that the
//! announcement holds back. [`run_to_completion`] runs such a write in a task of its own, which
//! the caller awaits but does not own, so dropping the caller lets the write finish and answer.

use std::future::Future;

use tracing::Instrument;

/// Runs `work` in a task of its own and awaits it: dropping the returned future does not stop
/// `work`. The current span and request id go with it. A panic in `work` is resumed in the
/// caller; a runtime shutting down is an error.
pub async fn run_to_completion<T, W>(work: W) -> anyhow::Result<T>
where
    T: Send + 'static,
    W: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let work = work.in_current_span();
    let task = match crate::request_id::current() {
        Some(request_id) => tokio::spawn(crate::request_id::scope(request_id, work)),
        None => tokio::spawn(work),
    };
    match task.await {
        Ok(outcome) => outcome,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(anyhow::anyhow!("the write was stopped before it finished: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn work_whose_caller_is_dropped_still_finishes() {
        let finished = Arc::new(AtomicBool::new(false));
        let (started_sender, started) = tokio::sync::oneshot::channel();
        let work = {
            let finished = Arc::clone(&finished);
            async move {
                let _ = started_sender.send(());
                tokio::time::sleep(Duration::from_millis(20)).await;
                finished.store(true, Ordering::SeqCst);
                anyhow::Ok(())
            }
        };
        let caller = tokio::spawn(run_to_completion(work));
        started.await.expect("the work started");
        caller.abort();
        assert!(caller.await.expect_err("the caller was dropped").is_cancelled());
        for _ in 0..100 {
            if finished.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the work stopped with its caller");
    }

    #[tokio::test]
    async fn the_work_runs_in_the_callers_request() {
        let seen = crate::request_id::scope("request-7".into(), run_to_completion(async { Ok(crate::request_id::current()) }))
            .await
            .unwrap();
        assert_eq!(seen.as_deref(), Some("request-7"));
    }
}
