//! Configuration refresh: the spec pulled from the control plane again,
//! because a pushed storage notification can be lost (neon#12711, #12712).
//!
//! A refresh is asked for by `POST /refresh_configuration` on the internal
//! listener ([`RefreshHandle::request`]), or by the compute itself when a
//! replica's WAL receiver has not streamed for `--refresh-after-secs`
//! ([`watch_replica`]). The [`refresher`] then fetches the spec once
//! (`spec_source::fetch_once`) and applies it only when it moves storage
//! ([`storage_changes`]), and then as a notify: with the skip flag set,
//! validated as `POST /configure` validates, through `Compute::submit`, so
//! the supervisor writes the config and SIGHUPs the postmaster: no restart,
//! no catalog session. A pull that finds nothing to apply, or fails, is
//! followed by a pause ([`backoff`]: 5 s, doubling, at most 60 s; Neon
//! pauses 5 s) before the next; requests that arrive during the pause are
//! served once it ends, and a pause that no request interrupted starts the
//! schedule again.
//!
//! Everything here runs on the Env clock; both tasks end when the compute
//! stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::compute::{Compute, ComputeState, Submitted};
use crate::env::Env;
use crate::spec::{ComputeMode, ComputeSpec, SpecProblem, ValidationContext};
use crate::spec_source::{self, Answer, SpecSource};
use crate::state::ComputeStatus;

/// The pause after the first pull that applied nothing.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The longest pause between pulls.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Bounds one pull.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the replica watcher looks at the sampled WAL receiver (it is
/// sampled every second by the compute's replication watcher).
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// `--refresh-after-secs`' default.
pub const DEFAULT_REFRESH_AFTER: Duration = Duration::from_secs(30);

/// The pause after the `streak`-th pull in a row that applied nothing
/// (counted from 1): 5 s, 10 s, 20 s, 40 s, then 60 s.
pub fn backoff(streak: u32) -> Duration {
    let doublings = streak.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

/// The storage fields of the spec (those `pg/conf.rs` renders as storage:
/// the pageserver's address in either form, the safekeepers, the tenant and
/// timeline) that differ between the one in effect and `new` (empty:
/// nothing to apply).
pub fn storage_changes(running: &ComputeSpec, new: &ComputeSpec) -> Vec<&'static str> {
    let mut out = Vec::new();
    if running.pageserver_connstring != new.pageserver_connstring {
        out.push("pageserver_connstring");
    }
    if running.pageserver_connection_info != new.pageserver_connection_info {
        out.push("pageserver_connection_info");
    }
    if running.safekeeper_connstrings != new.safekeeper_connstrings {
        out.push("safekeeper_connstrings");
    }
    // Rendered with them in the storage block of postgresql.conf.
    if running.tenant_id != new.tenant_id {
        out.push("tenant_id");
    }
    if running.timeline_id != new.timeline_id {
        out.push("timeline_id");
    }
    out
}

/// Asks the refresher for a pull; cheap to clone, requests coalesce.
#[derive(Debug, Clone)]
pub struct RefreshHandle {
    requests: Arc<watch::Sender<u64>>,
}

impl Default for RefreshHandle {
    fn default() -> Self {
        Self {
            requests: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl RefreshHandle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for a pull; several requests before it starts make one.
    pub fn request(&self) {
        self.requests.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// What one pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The spec moved storage and was applied.
    Applied(Vec<&'static str>),
    /// Storage is where the compute already has it.
    Unchanged,
    /// The control plane has no spec for this compute (`spec: null`).
    NoSpec,
    /// No usable answer, or the apply failed: why.
    Failed(String),
}

/// Why a refresh cannot be asked of the compute in this state (the
/// handler's 412), or `None` when it can. Init and configuring states are
/// accepted: the pull waits until the work under way is done.
pub fn refusal(st: &ComputeState) -> Option<String> {
    let why = match st.status {
        ComputeStatus::Empty => {
            "the compute has no spec yet (compute_ctl is still fetching its first one from the control plane); nothing to refresh"
        }
        ComputeStatus::TerminationPending | ComputeStatus::Terminated => {
            "the compute is stopping; a refreshed spec could not be applied"
        }
        ComputeStatus::Failed if !st.postgres_started || st.supervisor_exited => {
            "the compute failed and Postgres is not running; a refreshed spec could not be applied: start a new compute"
        }
        _ => return None,
    };
    Some(format!(
        "invalid compute status: the compute is {}: {why}",
        st.status
    ))
}

fn ended(st: &ComputeState) -> bool {
    st.supervisor_exited || st.status.is_terminating()
}

/// Completes once the compute stops.
async fn until_ended<E: Env>(compute: &Compute<E>) {
    let mut rx = compute.subscribe();
    let _ = rx.wait_for(ended).await;
}

/// Starts the refresher and, with `refresh_after`, the replica watcher;
/// returns when the compute stops.
pub async fn run<E: Env>(
    compute: Arc<Compute<E>>,
    handle: RefreshHandle,
    source: SpecSource,
    ctx: ValidationContext,
    refresh_after: Option<Duration>,
) {
    let watcher = refresh_after.map(|after| watch_replica(&compute, &handle, after));
    match watcher {
        Some(w) => {
            tokio::join!(w, refresher(&compute, &handle, &source, &ctx));
        }
        None => refresher(&compute, &handle, &source, &ctx).await,
    }
}

/// Serves refresh requests one pull at a time, pausing after a pull that
/// applied nothing.
pub async fn refresher<E: Env>(
    compute: &Compute<E>,
    handle: &RefreshHandle,
    source: &SpecSource,
    ctx: &ValidationContext,
) {
    let mut requests = handle.requests.subscribe();
    let mut streak: u32 = 0;
    loop {
        tokio::select! {
            biased;
            () = until_ended(compute) => return,
            changed = requests.changed() => if changed.is_err() { return },
        }
        requests.borrow_and_update();
        // A start or a configure under way finishes first.
        let settled = compute
            .subscribe()
            .wait_for(|st| {
                ended(st) || matches!(st.status, ComputeStatus::Running | ComputeStatus::Failed)
            })
            .await
            .map(|st| !ended(&st))
            .unwrap_or(false);
        if !settled {
            return;
        }
        tracing::info!(
            url = source.url(),
            "refreshing the configuration: pulling the spec from the control plane"
        );
        let outcome = refresh_once(compute, source, ctx).await;
        if let Outcome::Applied(changed) = &outcome {
            tracing::info!(
                ?changed,
                "refreshed configuration applied (storage moved; no restart, no catalog work)"
            );
            streak = 0;
            continue;
        }
        streak = streak.saturating_add(1);
        let pause = backoff(streak);
        match &outcome {
            Outcome::Failed(reason) => {
                tracing::warn!(%reason, retry_in_s = pause.as_secs(), "configuration refresh failed; a later request pulls again")
            }
            Outcome::NoSpec => tracing::info!(
                pause_s = pause.as_secs(),
                "configuration refresh: the control plane has no spec for this compute; nothing applied"
            ),
            _ => tracing::info!(
                pause_s = pause.as_secs(),
                "configuration refresh: storage unchanged in the control plane's spec; nothing applied, waiting for the control plane to update it"
            ),
        }
        tokio::select! {
            biased;
            () = until_ended(compute) => return,
            () = compute.env().sleep(pause) => {}
        }
        if !requests.has_changed().unwrap_or(false) {
            // Nobody asked again during the pause: the next request is a new episode.
            streak = 0;
        }
    }
}

/// One pull, applied if it moves storage.
pub async fn refresh_once<E: Env>(
    compute: &Compute<E>,
    source: &SpecSource,
    ctx: &ValidationContext,
) -> Outcome {
    let mut spec = match spec_source::fetch_once(compute.env(), source, ctx, REQUEST_TIMEOUT).await
    {
        Ok(Answer::Spec(fetched)) => fetched.spec,
        Ok(Answer::NotYet) => return Outcome::NoSpec,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let st = compute.state();
    let Some(running) = st.spec.as_deref() else {
        return Outcome::Failed("the compute has no spec in effect to compare with".into());
    };
    let changed = storage_changes(running, &spec);
    if changed.is_empty() {
        return Outcome::Unchanged;
    }
    // Applied as a notify: never catalog work. A refresh is an operation of
    // its own, even if the control plane did not give it a new uuid.
    spec.skip_pg_catalog_updates = true;
    if spec.operation_uuid.is_some() && spec.operation_uuid == running.operation_uuid {
        spec.operation_uuid = None;
    }
    let mut problems = crate::spec::validate_advertise(&spec, &compute.params().advertised());
    if st.postgres_started {
        problems.extend(crate::spec::validate_change(running, &spec));
    }
    let refused = compute.setting_problems(&spec, &problems).await;
    problems.extend(refused);
    if !problems.is_empty() {
        return Outcome::Failed(format!(
            "the control plane's spec cannot be applied: {}; nothing was changed",
            SpecProblem::join(&problems)
        ));
    }
    match compute.submit(spec) {
        Ok(Submitted::Accepted(generation)) => match compute.wait_applied(generation).await {
            Ok(_) => Outcome::Applied(changed),
            Err(reason) => Outcome::Failed(format!("applying the refreshed spec failed: {reason}")),
        },
        Ok(Submitted::AlreadyApplied) => Outcome::Unchanged,
        Err(e) => Outcome::Failed(format!("the refreshed spec was not accepted: {e}")),
    }
}

/// A replica whose WAL receiver has not streamed for `after` (counted from
/// the last sample that streamed, or from when it last became running with
/// a new spec) asks for a refresh, every [`WATCH_INTERVAL`] while it lasts;
/// the refresher's pauses pace the pulls.
pub async fn watch_replica<E: Env>(compute: &Compute<E>, handle: &RefreshHandle, after: Duration) {
    let env = compute.env();
    let mut rx = compute.subscribe();
    let mut last_streamed = None;
    let mut seen_generation = None;
    let mut announced = false;
    loop {
        let now = env.now();
        let stale = {
            let st = rx.borrow_and_update();
            if ended(&st) {
                return;
            }
            let replica = st
                .spec
                .as_deref()
                .is_some_and(|s| s.mode == ComputeMode::Replica);
            if !replica || st.status != ComputeStatus::Running {
                last_streamed = None;
                false
            } else if seen_generation != Some(st.applied_generation)
                || st.replication.as_ref().is_some_and(|r| r.streaming)
            {
                seen_generation = Some(st.applied_generation);
                last_streamed = Some(now);
                announced = false;
                false
            } else {
                let since = *last_streamed.get_or_insert(now);
                now.duration_since(since) >= after
            }
        };
        if stale {
            if !announced {
                tracing::warn!(
                    seconds = after.as_secs(),
                    "the replica's WAL receiver has not streamed for --refresh-after-secs; refreshing the configuration from the control plane"
                );
                announced = true;
            }
            handle.request();
        }
        tokio::select! {
            biased;
            _ = rx.wait_for(ended) => return,
            () = env.sleep(WATCH_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_starts_at_5s_doubles_and_stops_at_60s() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 60, 60, 60, 60]);
        assert_eq!(backoff(0), FIRST_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    fn spec() -> ComputeSpec {
        serde_json::from_str(include_str!("../fixtures/spec_minimal.json")).unwrap()
    }

    #[test]
    fn only_storage_fields_count_as_a_change() {
        let a = spec();
        let mut b = a.clone();
        b.operation_uuid = Some("other".into());
        b.skip_pg_catalog_updates = !a.skip_pg_catalog_updates;
        b.cluster.postgresql_conf = Some("work_mem = '8MB'".into());
        assert!(storage_changes(&a, &b).is_empty());
        b.pageserver_connstring = Some("host=storage2 port=5432".into());
        assert_eq!(storage_changes(&a, &b), ["pageserver_connstring"]);
        b.safekeeper_connstrings = vec!["sk1:5454".into()];
        b.timeline_id = Some("de200bd42b49cc1814412c7e592dd6e9".into());
        assert_eq!(
            storage_changes(&a, &b),
            [
                "pageserver_connstring",
                "safekeeper_connstrings",
                "timeline_id"
            ]
        );
    }

    #[test]
    fn a_refresh_is_refused_only_where_nothing_could_apply_it() {
        use crate::compute::ComputeParams;
        let params = ComputeParams::unstartable();
        let compute = Compute::new(crate::env::TokioEnv::new(), params);
        let mut st = compute.state();
        let refused = |st: &ComputeState| refusal(st).is_some();
        assert!(refused(&st), "empty");
        for s in [
            ComputeStatus::Init,
            ComputeStatus::ConfigurationPending,
            ComputeStatus::Configuration,
            ComputeStatus::Running,
        ] {
            st.status = s;
            assert!(!refused(&st), "{s}");
        }
        st.status = ComputeStatus::Failed;
        assert!(refused(&st), "a failed start");
        st.postgres_started = true;
        assert!(!refused(&st), "a failed reconfigure, Postgres running");
        st.supervisor_exited = true;
        assert!(refused(&st), "the supervisor is gone");
        for s in [ComputeStatus::TerminationPending, ComputeStatus::Terminated] {
            st.status = s;
            assert!(refused(&st), "{s}");
        }
    }
}
