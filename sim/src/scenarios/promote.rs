//! Promote of a replica after its primary terminated (issue 21): a
//! primary with three safekeepers on `compute` under the commit load, and
//! a Replica compute on a second host ([`REPLICA`], its own record over
//! this world's storage, see `SharedInner::second_compute`) that follows
//! one safekeeper. The primary is terminated (`POST /terminate`, its
//! answer's `lsn`), then `POST /promote` with `wal_flush_lsn` = that lsn
//! turns the replica into the primary (Neon's request and answer); the
//! load then commits on it. Every commit acknowledged before and after
//! must be read back from the promoted compute (the `acked` checker), and
//! acknowledged by a majority (`quorum_ack`). A promote sent to the
//! primary gets 412; a second concurrent promote gets the same answer. The
//! control plane logs every answer it acts on ([`Event::PromoteAnswered`])
//! and `checkers/promote.rs` judges them.

use std::time::Duration;

use rand::Rng;
use serde_json::json;

use super::driver::now_us;
use super::durable::{durable_shape, host_action, is_failed_on_a_fault, restart_if_lost, start};
use super::{Body, Driver, Topology};
use crate::events::{Event, PromoteCall};
use crate::http::{self, Outcome};
use crate::names::SAFEKEEPER_PORT;
use crate::names::{COMPUTE, HTTP_PORT, REPLICA, SAFEKEEPERS};

/// How long a request to the replica may take (a promote waits for
/// replay and for a quorum).
const DEADLINE: Duration = Duration::from_secs(120);

/// The durable topology, and the replica's host.
pub fn topology(seed: u64) -> Topology {
    Topology {
        second_compute: true,
        ..super::durable::topology(seed)
    }
}

/// The replica is Failed on something a fault that fired can cause.
fn replica_failed_on_a_fault(d: &Driver) -> bool {
    is_failed_on_a_fault(d, d.observed_replica_state())
}

/// The failure kind of the replica when it is Failed.
fn replica_failure(d: &Driver) -> Option<String> {
    let st = d.observed_replica_state()?;
    let failed = st.status == compute_ctl::state::ComputeStatus::Failed;
    let kind = st
        .failure
        .as_ref()
        .map(compute_ctl::compute::FailReason::kind);
    kind.filter(|_| failed).map(str::to_string)
}

/// Logs what `call`, sent at `sent_us`, got, for `checkers/promote.rs`
/// (`failed_with`: the failure kind of the compute asked, if Failed).
fn answered(
    d: &Driver,
    call: PromoteCall,
    sent_us: u64,
    out: &Outcome,
    failed_with: Option<String>,
) {
    let body = match out {
        Outcome::Answer(_, b) => b.clone(),
        _ => String::new(),
    };
    d.emit(Event::PromoteAnswered {
        call,
        outcome: out.label(),
        code: out.status(),
        body,
        sent_us,
        failed_with,
    });
}

fn promote_body(spec: &serde_json::Value, lsn: &str) -> String {
    json!({"spec": spec, "wal_flush_lsn": lsn}).to_string()
}

/// `POST path` to `host` with `body`.
async fn post(host: &str, path: &str, body: String) -> Outcome {
    http::request(host, HTTP_PORT, "POST", path, Some(body), DEADLINE).await
}

pub fn body(mut d: Driver) -> Body {
    Box::pin(async move {
        let no_pageserver = d.rng.random_bool(0.5);
        let spec = durable_shape(&mut d, no_pageserver);
        start(&mut d, &spec).await;
        let clients = d.rng.random_range(1..=2);
        let commits = d.start_commits(clients);
        d.pause(200, 600).await;

        // The replica follows one safekeeper.
        let follow_at = d.rng.random_range(0..SAFEKEEPERS.len());
        let follow = SAFEKEEPERS[follow_at].0;
        let mut rs = spec.clone();
        rs.replica = true;
        rs.safekeepers.clear();
        rs.no_pageserver = false;
        rs.upstream = Some(format!("host={follow} port={SAFEKEEPER_PORT}"));
        let rs = d.stamp(rs);
        let mut started = false;
        for _ in 0..20 {
            let sent = now_us();
            let out = post(REPLICA, "/configure", rs.configure_body()).await;
            let call = PromoteCall::ReplicaStart {
                follows: follow.to_string(),
            };
            answered(&d, call, sent, &out, replica_failure(&d));
            match out {
                Outcome::Answer(200, _) => {
                    started = true;
                    break;
                }
                Outcome::Answer(_, _) if replica_failed_on_a_fault(&d) => {
                    // Its safekeeper went down or away during the start: the
                    // control plane starts it again once the faults are over.
                    d.healed().await;
                    host_action(&d, REPLICA, true);
                    d.pause(50, 300).await;
                    host_action(&d, REPLICA, false);
                }
                // It did not start (judged by the checker): nothing to promote.
                Outcome::Answer(_, _) => return,
                _ => d.pause(100, 200).await,
            }
        }
        if !started {
            // A harness bound, not a property: the scenario gives up
            // setting up after 20 tries that got no answer at all.
            d.violation("the replica host never answered its configure");
            return;
        }
        d.pause(300, 900).await;

        // A primary the schedule took away (its host crashed, its
        // postmaster died) is started again before it is terminated.
        restart_if_lost(&mut d, &spec).await;
        let primary = d.stamp(spec.clone());
        // A promote of the primary: 412, nothing changes.
        if d.rng.random_bool(0.5) {
            let sent = now_us();
            let out = post(COMPUTE, "/promote", promote_body(&primary.json(), "0/1")).await;
            answered(&d, PromoteCall::PromotePrimary, sent, &out, None);
        }

        let t0 = now_us();
        let out = d.terminate("fast").await;
        answered(&d, PromoteCall::TerminatePrimary, t0, &out, None);
        let lsn = match out {
            Outcome::Answer(200, body) => serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["lsn"].as_str().map(str::to_string)),
            _ => None,
        };
        drop(commits);
        let Some(lsn) = lsn else {
            // No lsn (excused only while a safekeeper fault kept a quorum
            // away: `checkers/promote.rs`): no promote to send.
            return;
        };

        // The promote (sometimes twice at once: both get the same answer).
        // A replica whose safekeeper missed the old primary's last WAL
        // stays a replica and says so: the control plane points it at the
        // next safekeeper and sends the promote again, as the error asks.
        let body = promote_body(&primary.json(), &lsn);
        let completed = |o: &Outcome| match o {
            Outcome::Answer(200, b) => serde_json::from_str::<serde_json::Value>(b)
                .ok()
                .filter(|v| v["status"] == "completed"),
            _ => None,
        };
        let mut upstream = follow_at;
        let mut done = None;
        for attempt in 0..SAFEKEEPERS.len() {
            let twice = d.rng.random_bool(0.3);
            let second = twice.then(|| {
                let body = body.clone();
                tokio::spawn(async move { post(REPLICA, "/promote", body).await })
            });
            let sent = now_us();
            let out = post(REPLICA, "/promote", body.clone()).await;
            answered(
                &d,
                PromoteCall::Promote { concurrent: false },
                sent,
                &out,
                None,
            );
            if let Some(h) = second {
                let other = h
                    .await
                    .unwrap_or_else(|e| Outcome::Transport(e.to_string()));
                answered(
                    &d,
                    PromoteCall::Promote { concurrent: true },
                    sent,
                    &other,
                    None,
                );
            }
            if let Some(answer) = completed(&out) {
                done = Some(answer);
                break;
            }
            let stays = matches!(&out, Outcome::Answer(500, b) if b.contains("the compute stays a replica"));
            if !stays || attempt + 1 == SAFEKEEPERS.len() {
                // It did not complete (judged by the checker).
                return;
            }
            upstream = (upstream + 1) % SAFEKEEPERS.len();
            let mut moved = rs.clone();
            moved.skip_catalog = true;
            moved.upstream = Some(format!(
                "host={} port={SAFEKEEPER_PORT}",
                SAFEKEEPERS[upstream].0
            ));
            let moved = d.stamp(moved);
            let sent = now_us();
            let out = post(REPLICA, "/configure", moved.configure_body()).await;
            let call = PromoteCall::ReplicaMove {
                follows: SAFEKEEPERS[upstream].0.to_string(),
            };
            answered(&d, call, sent, &out, None);
            if out.status() != Some(200) {
                return;
            }
        }
        if done.is_none() {
            return;
        }

        // Every commit of the old primary is on the promoted one; the load
        // goes on there.
        d.readback_on(REPLICA).await;
        let clients = d.rng.random_range(1..=2);
        let commits = d.start_commits_on(clients, REPLICA);
        d.pause(500, 1500).await;
        drop(commits);
        d.pause(100, 300).await;
        d.readback_on(REPLICA).await;
        let status = d.observed_replica_state().map(|s| s.status);
        d.emit(Event::PromotedStatus { status });
    })
}
