//! The supervisor's shared-state operations (no Postgres needed).

use std::time::Duration;

use super::*;
use crate::env::TokioEnv;
use crate::spec::ComputeSpec;

fn compute() -> Arc<Compute<TokioEnv>> {
    let params = ComputeParams::unstartable();
    Compute::new(TokioEnv::new(), params)
}

fn spec(op: &str) -> ComputeSpec {
    serde_json::from_value(serde_json::json!({
        "format_version": 1.0, "operation_uuid": op, "cluster": {}
    }))
    .unwrap()
}

/// Moves a compute to Running as the supervisor would after a start.
fn make_running(c: &Compute<TokioEnv>, op: &str) -> u64 {
    let Ok(Submitted::Accepted(g)) = c.submit(spec(op)) else {
        panic!("not accepted")
    };
    assert!(c.begin(Event::BeginStart).is_some());
    c.apply_event(Event::Started, |st| st.applied_generation = g)
        .unwrap();
    g
}

#[test]
fn first_spec_is_accepted_once_and_a_second_is_busy() {
    let c = compute();
    assert_eq!(c.submit(spec("a")), Ok(Submitted::Accepted(1)));
    assert_eq!(c.state().status, ComputeStatus::ConfigurationPending);
    assert_eq!(
        c.submit(spec("b")),
        Err(SubmitError::Busy(ComputeStatus::ConfigurationPending))
    );
    assert_eq!(
        c.state().pending.unwrap().operation_uuid.as_deref(),
        Some("a")
    );
}

#[test]
fn repeat_of_the_applied_operation_does_no_work() {
    let c = compute();
    let g = make_running(&c, "op-1");
    assert_eq!(c.submit(spec("op-1")), Ok(Submitted::AlreadyApplied));
    assert_eq!(c.state().status, ComputeStatus::Running);
    assert_eq!(c.state().generation, g);
    assert_eq!(c.submit(spec("op-2")), Ok(Submitted::Accepted(g + 1)));
}

#[test]
fn specs_without_operation_uuid_are_never_deduplicated() {
    let c = compute();
    let mut s = spec("x");
    s.operation_uuid = None;
    let Ok(Submitted::Accepted(g)) = c.submit(s.clone()) else {
        panic!()
    };
    c.begin(Event::BeginStart).unwrap();
    c.apply_event(Event::Started, |st| st.applied_generation = g)
        .unwrap();
    assert_eq!(c.submit(s), Ok(Submitted::Accepted(g + 1)));
}

#[test]
fn a_failed_reconfigure_accepts_a_repairing_spec_while_postgres_runs() {
    let c = compute();
    c.state.send_modify(|st| st.postgres_started = true);
    c.fail(FailReason::WriteConfig(
        "writing Postgres configuration failed: No space left on device".into(),
    ));
    assert_eq!(c.submit(spec("repair")), Ok(Submitted::Accepted(1)));
    assert_eq!(c.state().status, ComputeStatus::ConfigurationPending);
    assert_eq!(c.state().error, None);
    // Once the supervisor loop has ended (a failed start, a dead
    // postmaster), nobody could apply it: refused.
    let c = compute();
    c.state.send_modify(|st| {
        st.postgres_started = true;
        st.supervisor_exited = true;
    });
    c.fail(FailReason::PostgresExited("the postmaster died".into()));
    assert_eq!(
        c.submit(spec("late")),
        Err(SubmitError::WrongState(ComputeStatus::Failed))
    );
}

#[test]
fn failed_and_terminating_computes_refuse_specs() {
    let c = compute();
    c.fail(FailReason::Catalog("boom".into()));
    assert_eq!(
        c.submit(spec("a")),
        Err(SubmitError::WrongState(ComputeStatus::Failed))
    );
    c.request_terminate(TerminateMode::Fast).unwrap();
    assert_eq!(
        c.submit(spec("a")),
        Err(SubmitError::WrongState(ComputeStatus::TerminationPending))
    );
}

#[test]
fn immediate_terminate_upgrades_a_fast_one() {
    let c = compute();
    c.request_terminate(TerminateMode::Fast).unwrap();
    c.request_terminate(TerminateMode::Immediate).unwrap();
    c.request_terminate(TerminateMode::Fast).unwrap();
    assert_eq!(c.state().terminate_mode, Some(TerminateMode::Immediate));
}

#[test]
fn last_active_only_moves_forward() {
    let c = compute();
    let t = std::time::UNIX_EPOCH + Duration::from_secs(1000);
    c.record_activity(t);
    c.record_activity(t - Duration::from_secs(5));
    assert_eq!(c.state().last_active, Some(t));
    c.record_activity(t + Duration::from_secs(5));
    assert_eq!(c.state().last_active, Some(t + Duration::from_secs(5)));
}

#[tokio::test]
async fn waiters_see_failure_with_its_reason() {
    let c = compute();
    let Ok(Submitted::Accepted(g)) = c.submit(spec("a")) else {
        panic!()
    };
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { c.wait_applied(g).await })
    };
    c.begin(Event::BeginStart).unwrap();
    c.fail(FailReason::WriteConfig("disk full".into()));
    assert_eq!(waiter.await.unwrap().unwrap_err(), "disk full");
}

#[tokio::test]
async fn terminate_with_no_postgres_reaches_terminated() {
    let c = compute();
    let run = {
        let c = c.clone();
        tokio::spawn(async move { c.run().await })
    };
    c.request_terminate(TerminateMode::Fast).unwrap();
    assert_eq!(run.await.unwrap(), RunOutcome::Terminated);
    assert_eq!(c.wait_terminated().await.status, ComputeStatus::Terminated);
}

#[tokio::test]
async fn terminate_after_the_supervisor_gave_up_is_answered_at_once() {
    let c = compute();
    c.fail(FailReason::SafekeeperSync("storage is down".into()));
    assert_eq!(c.run().await, RunOutcome::Failed("storage is down".into()));
    assert_eq!(
        c.request_terminate(TerminateMode::Fast),
        Ok(ComputeStatus::Terminated)
    );
    let st = c.wait_terminated().await;
    assert_eq!(st.status, ComputeStatus::Terminated);
    assert_eq!(st.error.as_deref(), Some("storage is down"));
}
