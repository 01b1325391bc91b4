//! A postmaster left behind by an earlier compute_ctl that was killed without
//! a chance to stop it (SIGKILL, the OOM killer): it still holds PGDATA, its
//! shared memory and the port, so the next start would fail on the port, or
//! worse, remove PGDATA under a running server.
//!
//! Before PGDATA is removed, [`stop_stale_postmaster`] reads
//! `postmaster.pid`; when the pid it names is alive and is a postmaster of
//! this very PGDATA (its command line has `-D <pgdata>`, so a recycled pid of
//! an unrelated process is never signalled), it is sent SIGQUIT (immediate
//! shutdown: its backends go with it) and, if it lingers, SIGKILL.
//!
//! Then [`stop_stale_tools`] kills what else of an earlier run still works on
//! this PGDATA: a killed compute_ctl takes its initdb or pg_basebackup with it
//! (parent-death signal), but not always what those forked: pg_basebackup's
//! WAL streamer can outlive it and go on writing into the PGDATA about to be
//! recreated. They are found by the PGDATA path among their arguments.

use std::path::Path;
use std::time::Duration;

use super::PgError;
use crate::env::{Env, Signal};

/// How often a stopping postmaster is looked at.
const POLL: Duration = Duration::from_millis(20);

/// What `postmaster.pid` says, when it names a live postmaster of `pgdata`.
pub async fn live_postmaster<E: Env>(env: &E, pgdata: &Path) -> Option<u32> {
    let text = env.read(&pgdata.join("postmaster.pid")).await.ok()?;
    let text = String::from_utf8_lossy(&text);
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let want = pgdata.display().to_string();
    let cmdline = env.command_line(pid).ok()??;
    let ours = cmdline.windows(2).any(|w| w[0] == "-D" && w[1] == want);
    if !ours {
        tracing::info!(
            pid,
            ?cmdline,
            "postmaster.pid names a process that is not a postmaster of this PGDATA; it is stale"
        );
    }
    ours.then_some(pid)
}

/// Waits up to `within` for `pid` to be gone.
async fn gone<E: Env>(env: &E, pid: u32, within: Duration) -> bool {
    let deadline = env.now() + within;
    loop {
        if !matches!(env.command_line(pid), Ok(Some(_))) {
            return true;
        }
        if env.now() >= deadline {
            return false;
        }
        env.sleep(POLL).await;
    }
}

/// Stops a postmaster of `pgdata` left running by an earlier run; returns
/// its pid when there was one.
pub async fn stop_stale_postmaster<E: Env>(
    env: &E,
    pgdata: &Path,
    grace: Duration,
) -> Result<Option<u32>, PgError> {
    let Some(pid) = live_postmaster(env, pgdata).await else {
        return Ok(None);
    };
    tracing::warn!(
        pid,
        pgdata = %pgdata.display(),
        "a postmaster from an earlier run still holds PGDATA (was compute_ctl killed?); stopping it"
    );
    for sig in [Signal::Quit, Signal::Kill] {
        if let Err(e) = env.signal(pid, sig) {
            tracing::warn!(pid, ?sig, error = %e, "signalling the stale postmaster failed");
        }
        if gone(env, pid, grace).await {
            tracing::info!(pid, "stale postmaster stopped");
            return Ok(Some(pid));
        }
    }
    Err(PgError::Config(format!(
        "a postmaster (pid {pid}) from an earlier run still holds {} and did not stop on SIGQUIT or SIGKILL; stop it by hand, then start again",
        pgdata.display()
    )))
}

/// The programs of ours that name a PGDATA among their arguments.
const TOOLS: [&str; 3] = ["initdb", "pg_basebackup", "postgres"];

/// Kills (SIGKILL) every initdb, pg_basebackup or postgres of an earlier run
/// that still has `pgdata` among its arguments (run after
/// [`stop_stale_postmaster`]); returns their pids.
pub async fn stop_stale_tools<E: Env>(
    env: &E,
    pgdata: &Path,
    grace: Duration,
) -> Result<Vec<u32>, PgError> {
    let arg = pgdata.display().to_string();
    let candidates = env.processes_with_arg(&arg).map_err(|e| {
        PgError::Config(format!(
            "cannot list the processes that may still work on {arg}: {e}"
        ))
    })?;
    let mut left = Vec::new();
    for (pid, cmdline) in candidates {
        let program = cmdline.first().map(Path::new).and_then(|p| p.file_name());
        if program.is_some_and(|p| TOOLS.iter().any(|t| p == *t)) {
            tracing::warn!(
                pid,
                ?cmdline,
                "a process of an earlier run still works on PGDATA; killing it"
            );
            if let Err(e) = env.signal(pid, Signal::Kill) {
                tracing::warn!(pid, error = %e, "killing a leftover process failed");
            }
            left.push(pid);
        }
    }
    for &pid in &left {
        if !gone(env, pid, grace).await {
            return Err(PgError::Config(format!(
                "a process (pid {pid}) of an earlier run still works on {arg} after SIGKILL; stop it by hand, then start again"
            )));
        }
    }
    Ok(left)
}
