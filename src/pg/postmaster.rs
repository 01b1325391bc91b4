//! The postmaster process: spawn it as the Postgres OS user, wait until it
//! accepts connections, and say why it died when it does.
//!
//! Failures name their cause:
//! - a port already in use is found before spawning, by binding it through
//!   `Env::bind` (a race with another process is still caught: Postgres'
//!   own "could not bind" lines end up in the exit message);
//! - a missing binary fails the spawn with the path;
//! - bad settings make Postgres exit at once; [`describe_exit`] quotes its
//!   last output lines (kept by the Env's child, see `Child::recent_output`).
//!
//! Readiness is a connect probe through [`super::connect`] on the Env clock,
//! bounded by `ready_timeout`. "Not yet" answers (connection refused,
//! SQLSTATE 57P03 "the database system is starting up") are retried with a
//! short backoff; any other refusal (unknown role, bad auth) ends the wait at
//! once, because it will not fix itself.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{ConnectError, PgError, connect};
use crate::env::{CommandSpec, Env, ExitInfo, Pace};
use crate::params::{ComputeParams, ConnTarget};

/// Bounds one readiness probe's connect.
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Statement timeout of the probe session (it sends no statement).
const PROBE_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between probes while a start is young: Postgres is up ~70 ms
/// after its spawn, and a doubling pause from 10 ms (10, 20, 40, 80) saw it
/// at 150 ms. A refused connect costs microseconds; one answered "starting
/// up" a fork of the postmaster.
const PROBE_DELAY_MIN: Duration = Duration::from_millis(5);
/// How long probes stay [`PROBE_DELAY_MIN`] apart before they back off (a
/// recovery that replays much WAL takes seconds).
const PROBE_FLAT_FOR: Duration = Duration::from_secs(1);
/// The largest pause between probes.
const PROBE_DELAY_MAX: Duration = Duration::from_millis(200);
/// How many of the postmaster's last output lines an exit message quotes.
const EXIT_LINES: usize = 6;

/// Checks that the `-C` port is free (when the host is an address or
/// `localhost`), then spawns `postgres -D PGDATA` as the Postgres OS user.
pub async fn spawn_postgres<E: Env>(env: &E, params: &ComputeParams) -> Result<E::Child, PgError> {
    check_port_free(env, &params.conn).await?;
    let who = env.postgres_identity().map_err(PgError::Identity)?;
    let mut cmd = CommandSpec::new(&params.pgbin)
        .arg("-D")
        .arg(params.pgdata.display().to_string())
        .run_as(who);
    if params.pgdata.is_absolute() {
        cmd.current_dir = Some("/".into());
    }
    // Under AUTOSCALING: start inside the vm-monitor's cgroup.
    cmd.cgroup_procs = params.cgroup_procs.clone();
    let child = env.spawn(&cmd).map_err(|source| PgError::Spawn {
        command: cmd.display(),
        source,
    })?;
    tracing::info!(pid = crate::env::Child::pid(&child), command = %cmd.display(), "postmaster spawned");
    Ok(child)
}

/// Binds the port Postgres is about to listen on, and lets it go again.
async fn check_port_free<E: Env>(env: &E, conn: &ConnTarget) -> Result<(), PgError> {
    let ip = if conn.host == "localhost" {
        IpAddr::from([127, 0, 0, 1])
    } else {
        match conn.host.parse::<IpAddr>() {
            Ok(ip) => ip,
            // A host name: Postgres resolves it and reports a conflict itself.
            Err(_) => return Ok(()),
        }
    };
    match env.bind(SocketAddr::new(ip, conn.port)).await {
        Ok(listener) => {
            drop(listener);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(PgError::PortInUse {
            host: conn.host.clone(),
            port: conn.port,
        }),
        Err(source) => Err(PgError::Listen {
            host: conn.host.clone(),
            port: conn.port,
            source,
        }),
    }
}

/// What a failed probe means.
enum Probe {
    /// Not accepting connections yet: try again.
    NotYet,
    /// Up (the server answered; only the database is missing).
    Up,
    /// Up, but it will never let us in.
    Refused,
}

fn classify(e: &ConnectError) -> Probe {
    use tokio_postgres::error::SqlState;
    match e {
        ConnectError::Tcp { .. } | ConnectError::Timeout { .. } => Probe::NotYet,
        ConnectError::Startup { source, .. } => match source.code() {
            None => Probe::NotYet,
            Some(c)
                if *c == SqlState::CANNOT_CONNECT_NOW || *c == SqlState::TOO_MANY_CONNECTIONS =>
            {
                Probe::NotYet
            }
            Some(c) if *c == SqlState::UNDEFINED_DATABASE => Probe::Up,
            Some(_) => Probe::Refused,
        },
    }
}

/// Waits until Postgres accepts the supervisor's connections, at most
/// `params.ready_timeout` on the Env clock; returns the session that got in
/// (`None` when the `-C` database does not exist yet), for a caller that
/// asks more of it right away (a new session is a backend fork and an
/// authentication).
pub async fn wait_ready<E: Env>(
    env: &E,
    params: &ComputeParams,
) -> Result<Option<tokio_postgres::Client>, PgError> {
    let t0 = env.now();
    let deadline = t0 + params.ready_timeout;
    let mut pace = Pace::new(t0, PROBE_DELAY_MIN, PROBE_FLAT_FOR, PROBE_DELAY_MAX);
    let mut last = "no attempt was made".to_string();
    let session = loop {
        let now = env.now();
        if now >= deadline {
            return Err(PgError::NotReady {
                after: params.ready_timeout,
                last,
            });
        }
        let connect_timeout = PROBE_CONNECT_TIMEOUT.min(deadline - now);
        match connect(env, &params.conn, PROBE_STATEMENT_TIMEOUT, connect_timeout).await {
            Ok(client) => break Some(client),
            Err(e) => match classify(&e) {
                Probe::Up => {
                    tracing::warn!(error = %e, "Postgres is up, but the --connstr database does not exist yet");
                    break None;
                }
                Probe::Refused => return Err(PgError::Refused(e)),
                Probe::NotYet => last = e.to_string(),
            },
        }
        let now = env.now();
        env.sleep(pace.next(now).min(deadline.saturating_duration_since(now)))
            .await;
    };
    tracing::info!(
        elapsed_ms = crate::env::ms(env.now() - t0),
        "Postgres accepts connections"
    );
    Ok(session)
}

/// Why the postmaster is gone, for the Failed status: its exit status and
/// its last output lines.
pub fn describe_exit(exit: &ExitInfo, last_lines: &[String], during_start: bool) -> String {
    let when = if during_start {
        "Postgres exited during start-up"
    } else {
        "Postgres exited unexpectedly"
    };
    let tail: Vec<&str> = last_lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    let tail = &tail[tail.len().saturating_sub(EXIT_LINES)..];
    if tail.is_empty() {
        format!("{when} ({exit}); it printed nothing")
    } else {
        format!("{when} ({exit}); its last output: {}", tail.join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_description_quotes_the_last_lines() {
        let exit = ExitInfo {
            code: Some(1),
            signal: None,
        };
        let lines: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
        let d = describe_exit(&exit, &lines, true);
        assert!(d.starts_with("Postgres exited during start-up (exit code 1)"));
        assert!(d.contains("line 4 | line 5") && d.ends_with("line 9"));
        assert!(!d.contains("line 3"));
        let killed = ExitInfo {
            code: None,
            signal: Some(9),
        };
        assert_eq!(
            describe_exit(&killed, &[], false),
            "Postgres exited unexpectedly (killed by signal 9); it printed nothing"
        );
    }
}
