//! What the tests of a primary with safekeepers share (`durable_primary`,
//! `promote`): the spec of such a primary, its start, the wait until every
//! safekeeper streams from it, and the client's acknowledged rows in the
//! table `acked` of [`Safekeepers`].

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::compute::{Compute, ComputeOpts};
use super::safekeepers::Safekeepers;
use super::{fixture, wait_for};

/// The deadline of each step of these tests.
pub const WITHIN: Duration = Duration::from_secs(60);

/// A primary with the three safekeepers, its base backup source the first.
pub fn spec(sks: &Safekeepers, op: &str) -> Value {
    let mut s = fixture("spec.json");
    s["operation_uuid"] = op.into();
    s["pageserver_connstring"] = sks.members[0].connstr().into();
    s["safekeeper_connstrings"] = json!(sks.connstrings());
    // A standby needs max_connections at least its primary's: the test
    // safekeepers run with 40.
    for setting in s["cluster"]["settings"].as_array_mut().unwrap() {
        if setting["name"] == "max_connections" {
            setting["value"] = "40".into();
        }
    }
    s
}

/// Starts a compute with `spec` and waits until it runs; returns it with
/// the time from its spawn to `running`.
pub async fn start(spec: &Value) -> (Compute, Duration) {
    let t0 = Instant::now();
    let c = Compute::start(ComputeOpts::with_spec(spec.clone()));
    c.wait_status("running", WITHIN).await;
    (c, t0.elapsed())
}

/// Waits until `/status` shows every safekeeper streaming; returns it.
pub async fn wait_all_streaming(c: &Compute) -> Value {
    wait_for(WITHIN, "all three safekeepers to stream", || async {
        let st = c.status().await;
        let all = st["safekeepers"]
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|s| s["state"] == "streaming"));
        all.then_some(st)
    })
    .await
}

/// Inserts `id` in its own transaction; true once acknowledged.
pub async fn insert(client: &tokio_postgres::Client, id: i32) -> bool {
    client
        .execute("INSERT INTO acked VALUES ($1)", &[&id])
        .await
        .is_ok()
}

/// Every id in `acked`.
pub async fn present(c: &Compute) -> BTreeSet<i32> {
    let client = c.sql("postgres", "durable-test").await;
    client
        .query("SELECT id FROM acked", &[])
        .await
        .expect("read acked")
        .iter()
        .map(|r| r.get::<_, i32>(0))
        .collect()
}
