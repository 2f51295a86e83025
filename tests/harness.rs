//! Tests of the harness's own mechanisms that need no system: a check in the harness that
//! cannot fail is as much a defect as one in the services.

use std::time::Duration;

use shop_testkit_base::eventually::eventually;

#[tokio::test]
async fn eventually_gives_up_at_its_deadline_even_while_a_probe_hangs() {
    // A probe that never answers (a request to a service that accepted the connection and went
    // silent) must not keep the wait beyond its deadline.
    let waiting = tokio::spawn(eventually(Duration::from_millis(300), "a probe that hangs", || {
        std::future::pending::<Result<(), String>>()
    }));
    let outcome = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("eventually waited for the hanging probe instead of keeping its deadline");
    let panic = outcome.expect_err("a probe that never succeeds must fail the wait").into_panic();
    let message = panic.downcast_ref::<String>().expect("the failure says what was awaited");
    assert!(message.contains("a probe that hangs did not happen within 300ms"), "{message}");
    assert!(message.contains("still waiting for its answer at the deadline"), "{message}");
}

#[tokio::test]
async fn eventually_retries_failed_probes_and_returns_the_first_success() {
    let mut attempts = 0;
    let value = eventually(Duration::from_secs(10), "the third attempt", || {
        attempts += 1;
        let attempt = attempts;
        async move { if attempt < 3 { Err(format!("connection refused (attempt {attempt})")) } else { Ok(attempt) } }
    })
    .await;
    assert_eq!(value, 3);
}

#[tokio::test]
async fn eventually_reports_the_last_value_it_saw() {
    let waiting = tokio::spawn(eventually(Duration::from_millis(200), "status paid", || async {
        Err::<(), _>("status pending".to_owned())
    }));
    let panic = waiting.await.expect_err("never paid").into_panic();
    let message = panic.downcast_ref::<String>().expect("a message");
    assert!(message.ends_with("last seen: status pending"), "{message}");
}
