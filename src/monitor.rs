//! The activity monitor: every `activity_interval` (Env clock) it reads
//! `pg_stat_activity` and moves the compute's `last_active` forward
//! (`/status` shows it; a control plane suspends idle computes by it).
//!
//! Activity is a client backend that is not the supervisor's own session
//! (`application_name` [`pg::APPLICATION_NAME`]): if one is busy (any state
//! but `idle`), the compute is active *now*; otherwise the latest
//! `state_change` of the idle ones is when it was last active.
//!
//! It uses the simple query protocol only (the simulated Postgres speaks no
//! other), keeps one session and reopens it after an error, and bounds every
//! poll by a deadline: a slow or stuck Postgres costs a skipped sample,
//! never a blocked or failed compute.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::compute::Compute;
use crate::env::{Env, timeout};
use crate::pg;
use crate::state::ComputeStatus;

/// The query, one row: busy client sessions, and the epoch seconds of the
/// latest state change of any client session (NULL when there is none).
pub fn activity_query() -> String {
    format!(
        "SELECT count(*) FILTER (WHERE state IS DISTINCT FROM 'idle'), \
         extract(epoch FROM max(state_change))::float8 \
         FROM pg_stat_activity \
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
         AND application_name IS DISTINCT FROM '{}'",
        pg::APPLICATION_NAME
    )
}

/// Why one poll produced no sample.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("activity monitor: {0}")]
    Connect(#[from] pg::ConnectError),
    #[error("activity monitor: reading pg_stat_activity failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("activity monitor: unexpected answer from pg_stat_activity: {0}")]
    Unexpected(String),
    #[error("activity monitor: Postgres did not answer within {0:?}")]
    Timeout(Duration),
}

/// The deadline of one poll: the interval, within [1 s, 30 s].
pub fn poll_deadline(interval: Duration) -> Duration {
    interval.clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// When the compute was last active according to one row of [`activity_query`].
pub fn activity_at(
    busy: Option<&str>,
    last_change_epoch: Option<&str>,
    now: SystemTime,
) -> Result<Option<SystemTime>, MonitorError> {
    let busy: u64 = busy
        .ok_or_else(|| MonitorError::Unexpected("count is NULL".into()))?
        .parse()
        .map_err(|e| MonitorError::Unexpected(format!("count: {e}")))?;
    if busy > 0 {
        return Ok(Some(now));
    }
    let Some(epoch) = last_change_epoch else {
        return Ok(None);
    };
    let secs: f64 = epoch
        .parse()
        .map_err(|e| MonitorError::Unexpected(format!("state_change epoch {epoch:?}: {e}")))?;
    let at = Duration::try_from_secs_f64(secs)
        .map_err(|e| MonitorError::Unexpected(format!("state_change epoch {epoch:?}: {e}")))?;
    // Never in the future of our own clock.
    Ok(Some((SystemTime::UNIX_EPOCH + at).min(now)))
}

async fn poll_once<E: Env>(
    compute: &Compute<E>,
    session: &mut Option<Client>,
    deadline: Duration,
) -> Result<Option<SystemTime>, MonitorError> {
    let client = match session.take() {
        Some(c) if !c.is_closed() => c,
        _ => pg::connect(&compute.env, &compute.params.conn, deadline, deadline).await?,
    };
    let messages = client.simple_query(&activity_query()).await?;
    *session = Some(client);
    let row = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .ok_or_else(|| MonitorError::Unexpected("no row".into()))?;
    activity_at(row.get(0), row.get(1), compute.env.wall_clock())
}

/// One bounded poll: never takes longer than `deadline`, drops the session
/// when it failed or timed out (the next poll reconnects).
pub async fn sample<E: Env>(
    compute: &Compute<E>,
    session: &mut Option<Client>,
    deadline: Duration,
) -> Result<Option<SystemTime>, MonitorError> {
    let outcome = match timeout(
        &compute.env,
        deadline,
        poll_once(compute, session, deadline),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(MonitorError::Timeout(deadline)),
    };
    if outcome.is_err() {
        *session = None;
    }
    outcome
}

/// Whether Postgres is expected to be up.
fn postgres_up(status: ComputeStatus, started: bool) -> bool {
    started
        && matches!(
            status,
            ComputeStatus::Running
                | ComputeStatus::Configuration
                | ComputeStatus::ConfigurationPending
        )
}

/// Runs until the compute is terminating; spawn it beside the supervisor.
pub async fn run<E: Env>(compute: Arc<Compute<E>>) {
    let interval = compute.params.activity_interval;
    let deadline = poll_deadline(interval);
    let mut rx = compute.subscribe();
    let mut session: Option<Client> = None;
    let mut failing = false;
    loop {
        let stopping = rx.wait_for(|st| {
            matches!(
                st.status,
                ComputeStatus::TerminationPending | ComputeStatus::Terminated
            )
        });
        tokio::select! {
            biased;
            _ = stopping => break,
            () = compute.env.sleep(interval) => {}
        }
        let (status, started) = {
            let st = rx.borrow();
            (st.status, st.postgres_started)
        };
        if !postgres_up(status, started) {
            session = None;
            continue;
        }
        match sample(&compute, &mut session, deadline).await {
            Ok(Some(at)) => compute.record_activity(at),
            Ok(None) => {}
            Err(e) => {
                // Log the first failure of a streak only; Postgres may be down for a while.
                if !failing {
                    tracing::warn!(error = %e, "activity sample skipped");
                }
                failing = true;
                continue;
            }
        }
        if failing {
            tracing::info!("activity monitor reads pg_stat_activity again");
            failing = false;
        }
    }
    tracing::debug!("activity monitor stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn busy_sessions_mean_active_now() {
        assert_eq!(
            activity_at(Some("2"), Some("100.5"), t(1000)).unwrap(),
            Some(t(1000))
        );
    }

    #[test]
    fn idle_sessions_give_their_last_state_change() {
        assert_eq!(
            activity_at(Some("0"), Some("100.5"), t(1000)).unwrap(),
            Some(t(100) + Duration::from_millis(500))
        );
        assert_eq!(activity_at(Some("0"), None, t(1000)).unwrap(), None);
    }

    #[test]
    fn a_state_change_ahead_of_our_clock_is_capped_at_now() {
        assert_eq!(
            activity_at(Some("0"), Some("5000"), t(1000)).unwrap(),
            Some(t(1000))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(activity_at(None, None, t(1)).is_err());
        assert!(activity_at(Some("x"), None, t(1)).is_err());
        assert!(activity_at(Some("0"), Some("NaN"), t(1)).is_err());
        assert!(activity_at(Some("0"), Some("-1"), t(1)).is_err());
    }

    #[test]
    fn the_query_ignores_the_supervisors_own_sessions() {
        assert!(activity_query().contains(&format!("'{}'", pg::APPLICATION_NAME)));
    }

    /// A Postgres that accepts connections and never answers costs one
    /// bounded, failed sample; the compute is untouched.
    #[tokio::test]
    async fn a_silent_postgres_times_out_without_touching_the_compute() {
        // A port of this suite's own range (the integration tests count up from 38100).
        let mut silent = None;
        for port in 38_280..=38_299u16 {
            if let Ok(l) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                silent = Some(l);
                break;
            }
        }
        let silent = silent.expect("a free port in 38280-38299");
        let port = silent.local_addr().unwrap().port();
        let params = crate::params::ComputeParams {
            pgdata: "/nonexistent/pgdata".into(),
            pgbin: "/nonexistent/postgres".into(),
            conn: crate::params::ConnTarget {
                host: "127.0.0.1".into(),
                port,
                user: "cloud_admin".into(),
                dbname: "postgres".into(),
            },
            http_addr: "127.0.0.1:0".parse().unwrap(),
            compute_id: None,
            ready_timeout: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(1),
            activity_interval: Duration::from_secs(1),
            cgroup_procs: None,
            max_ready_lag: None,
            tls: None,
        };
        let compute = Compute::new(crate::env::TokioEnv::new(), params);
        let before = compute.state();
        let mut session = None;
        let r = sample(&compute, &mut session, Duration::from_millis(200)).await;
        assert!(
            matches!(
                r,
                Err(MonitorError::Timeout(_)) | Err(MonitorError::Connect(_))
            ),
            "{r:?}"
        );
        assert!(session.is_none());
        let after = compute.state();
        assert_eq!(
            (after.status, after.last_active),
            (before.status, before.last_active)
        );
        drop(silent);
    }

    #[test]
    fn polls_only_while_postgres_is_up() {
        assert!(postgres_up(ComputeStatus::Running, true));
        assert!(postgres_up(ComputeStatus::Configuration, true));
        assert!(!postgres_up(ComputeStatus::Init, true));
        assert!(!postgres_up(ComputeStatus::ConfigurationPending, false));
        assert!(!postgres_up(ComputeStatus::Empty, false));
    }
}
