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
//! primary gets 412; a second concurrent promote gets the same answer.

use std::time::Duration;

use rand::Rng;
use serde_json::json;

use super::driver::now_us;
use super::durable::{durable_shape, host_action, is_failed_on_a_fault, start};
use super::{Body, Driver, Topology};
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
            match post(REPLICA, "/configure", rs.configure_body()).await {
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
                Outcome::Answer(s, b) => {
                    d.violation(format!(
                        "the replica following {follow} did not start: {s} {b}"
                    ));
                    return;
                }
                _ => d.pause(100, 200).await,
            }
        }
        if !started {
            d.violation("the replica host never answered its configure");
            return;
        }
        d.pause(300, 900).await;

        let primary = d.stamp(spec.clone());
        // A promote of the primary: 412, nothing changes.
        if d.rng.random_bool(0.5) {
            let out = post(COMPUTE, "/promote", promote_body(&primary.json(), "0/1")).await;
            if out.status() != Some(412) {
                d.violation(format!(
                    "POST /promote to a primary got {}, not 412",
                    out.label()
                ));
            }
        }

        let t0 = now_us();
        let lsn = match d.terminate("fast").await {
            Outcome::Answer(200, body) => serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["lsn"].as_str().map(str::to_string)),
            other => {
                d.violation(format!("the primary's /terminate got {}", other.label()));
                None
            }
        };
        drop(commits);
        let Some(lsn) = lsn else {
            // With a majority of the safekeepers away the supervisor cannot
            // tell what a quorum flushed and answers the shutdown
            // checkpoint, which the simulated Postgres has no
            // `pg_controldata` for: no lsn, and no promote to send.
            let excused = d.safekeeper_fault_during(t0, now_us());
            if !excused {
                d.violation(
                    "the primary's /terminate answered no lsn (a primary with safekeepers must)",
                );
            }
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
            let out = post(REPLICA, "/promote", body.clone()).await;
            if let Some(h) = second {
                let other = h
                    .await
                    .unwrap_or_else(|e| Outcome::Transport(e.to_string()));
                if completed(&other) != completed(&out) {
                    d.violation(format!(
                        "a second concurrent promote got another answer: {other:?}, not {out:?}"
                    ));
                }
            }
            if let Some(answer) = completed(&out) {
                done = Some(answer);
                break;
            }
            let stays = matches!(&out, Outcome::Answer(500, b) if b.contains("the compute stays a replica"));
            if !stays || attempt + 1 == SAFEKEEPERS.len() {
                d.violation(format!("POST /promote to {lsn} did not complete: {out:?}"));
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
            let out = post(REPLICA, "/configure", moved.configure_body()).await;
            if out.status() != Some(200) {
                d.violation(format!(
                    "moving the replica to safekeeper {} got {}",
                    SAFEKEEPERS[upstream].0,
                    out.label()
                ));
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
        if status != Some(compute_ctl::state::ComputeStatus::Running) {
            d.violation(format!(
                "the promoted compute is {status:?} at the end, not running"
            ));
        }
    })
}
