//! `/configure` and `/terminate` semantics that need no Postgres: one
//! configure at a time, duplicates join the operation in flight, clients
//! that go away, the 500 of a failed first start, terminate.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use tokio::sync::mpsc;

use super::*;
use crate::env::timeout;
use crate::http::router;
use crate::state::ComputeStatus;

const DEADLINE: Duration = Duration::from_secs(10);

/// Many parallel configures from `empty`: exactly one is accepted and waits,
/// every other one is answered 409 at once; many parallel `/status` calls
/// all answer while it waits; when the compute fails the waiter gets 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_configure_at_a_time_others_409_status_stays_fast() {
    const CONFIGURES: usize = 24;
    const STATUSES: usize = 48;
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let app = router(c.clone(), None);
    let (tx, mut rx) = mpsc::unbounded_channel();
    for i in 0..CONFIGURES {
        let (app, tx) = (app.clone(), tx.clone());
        tokio::spawn(async move {
            let body = configure_body(spec(&format!("op-{i}")));
            let r = send(&app, request(Method::POST, "/configure", Some(&body))).await;
            let _ = tx.send(("configure", r));
        });
    }
    for _ in 0..STATUSES {
        let (app, tx) = (app.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send((
                "status",
                send(&app, request(Method::GET, "/status", None)).await,
            ));
        });
    }
    // Everything but the accepted configure answers without the supervisor.
    let mut conflicts = 0;
    for _ in 0..(CONFIGURES - 1 + STATUSES) {
        let (what, r) = timeout(c.env(), DEADLINE, rx.recv())
            .await
            .expect("a request hung: deadlock?")
            .unwrap();
        match what {
            "configure" => {
                assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
                assert!(r.error().contains("another configuration is in progress"));
                conflicts += 1;
            }
            _ => {
                assert_eq!(r.status, StatusCode::OK);
                let s = r.json()["status"].as_str().unwrap().to_string();
                assert!(s == "empty" || s == "configuration_pending", "{s}");
            }
        }
    }
    assert_eq!(conflicts, CONFIGURES - 1);
    let st = c.state();
    assert_eq!(
        (st.status, st.generation),
        (ComputeStatus::ConfigurationPending, 1)
    );
    assert!(
        rx.try_recv().is_err(),
        "the accepted configure must still be waiting"
    );
    c.fail(crate::compute::FailReason::WriteConfig(
        "injected failure".into(),
    ));
    let (what, r) = timeout(c.env(), DEADLINE, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(what, "configure");
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.error(), "injected failure");
}

/// A duplicate of the operation in flight waits for it instead of 409.
#[tokio::test]
async fn a_duplicate_joins_the_operation_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let app = router(c.clone(), None);
    let body = configure_body(spec("op-dup"));
    let first = tokio::spawn({
        let (app, body) = (app.clone(), body.clone());
        async move { send(&app, request(Method::POST, "/configure", Some(&body))).await }
    });
    wait_until(&c, "the first configure accepted", |st| st.generation == 1).await;
    // One poll takes the duplicate through the router to its wait.
    let mut second = Box::pin(send(&app, request(Method::POST, "/configure", Some(&body))));
    assert!(
        futures::poll!(&mut second).is_pending(),
        "the duplicate must wait, not answer"
    );
    // A different operation is refused meanwhile.
    let other = configure_body(spec("op-other"));
    let r = send(&app, request(Method::POST, "/configure", Some(&other))).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    c.fail(crate::compute::FailReason::WriteConfig("injected".into()));
    let first = timeout(c.env(), DEADLINE, first).await.unwrap().unwrap();
    let second = timeout(c.env(), DEADLINE, second).await.unwrap();
    for r in [first, second] {
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::INTERNAL_SERVER_ERROR, "injected".into())
        );
    }
    assert_eq!(
        c.state().generation,
        1,
        "the duplicate was not applied twice"
    );
}

/// With the real supervisor loop: a first start that fails answers 500 with
/// the reason, and a client that went away does not leave the compute stuck.
#[tokio::test]
async fn failed_first_start_is_500_and_abandoned_clients_do_not_wedge_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let app = router(c.clone(), None);
    // A client that gives up while its configure is pending: drop the request future.
    let body = configure_body(spec("op-gone"));
    let mut gone = Box::pin(send(&app, request(Method::POST, "/configure", Some(&body))));
    tokio::select! {
        biased;
        r = &mut gone => panic!("answered without a supervisor: {r:?}"),
        () = wait_until(&c, "accepted", |st| st.generation == 1) => {}
    }
    drop(gone);
    assert_eq!(c.state().status, ComputeStatus::ConfigurationPending);
    // The supervisor still does the work (and here fails: no postgres binary).
    let run = tokio::spawn({
        let c = c.clone();
        async move { c.run().await }
    });
    wait_until(&c, "failed", |st| st.status == ComputeStatus::Failed).await;
    let outcome = timeout(c.env(), DEADLINE, run).await.unwrap().unwrap();
    assert!(
        matches!(outcome, crate::compute::RunOutcome::Failed(_)),
        "{outcome:?}"
    );
    let r = send(&app, request(Method::GET, "/status", None)).await;
    let v = r.json();
    assert_eq!(v["status"], "failed");
    assert!(!v["error"].as_str().unwrap().is_empty());
    // Failed accepts no configure.
    let r = send(&app, request(Method::POST, "/configure", Some(&body))).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn failed_first_configure_answers_500_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (c, app, run) = running(&dir);
    let body = configure_body(spec("op-500"));
    let r = timeout(
        c.env(),
        DEADLINE,
        send(&app, request(Method::POST, "/configure", Some(&body))),
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    assert_eq!(Some(r.error()), c.state().error);
    let _ = timeout(c.env(), DEADLINE, run).await.unwrap();
}

#[tokio::test]
async fn terminate_waits_for_terminated_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (c, app, run) = running(&dir);
    let r = timeout(
        c.env(),
        DEADLINE,
        send(
            &app,
            request(Method::POST, "/terminate?mode=immediate", None),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (StatusCode::OK, Some("terminated"))
    );
    assert_eq!(
        c.state().terminate_mode,
        Some(crate::compute::TerminateMode::Immediate)
    );
    // Again, once terminated: 201, as Neon.
    let r = send(&app, request(Method::POST, "/terminate", None)).await;
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (StatusCode::CREATED, Some("terminated"))
    );
    let outcome = timeout(c.env(), DEADLINE, run).await.unwrap().unwrap();
    assert_eq!(outcome, crate::compute::RunOutcome::Terminated);
}
