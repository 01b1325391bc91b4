//! compute_ctl as PID 1 (a container's entrypoint): reap zombies without
//! stealing exit statuses.
//!
//! PID 1 inherits every orphan of its namespace (Postgres backends after a
//! postmaster crash, daemonised `archive_command`s, `COPY ... TO PROGRAM`
//! jobs) and must reap them, or they stay zombies. The obvious reaper, a
//! `waitpid(-1)` loop beside tokio, would race tokio's own `waitpid(pid)` of
//! the postmaster and initdb and could consume their exit status: the
//! supervisor would then never learn that the postmaster died, or why.
//! Peeking first (`waitid(WNOWAIT)`) and skipping known children narrows the
//! race but needs every spawn to register its pid under a lock.
//!
//! We avoid the race by construction, as tini does: when we are PID 1 we
//! fork, before any thread exists. The parent stays PID 1 and does nothing
//! but init work: it reaps every child that exits, forwards SIGTERM, SIGINT,
//! SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the supervisor, and exits with the
//! supervisor's exit code (128 + signal when it was killed). The child is an
//! ordinary process running the real compute_ctl, whose tokio runtime is the
//! only one to wait for its own children. Orphans are reparented to PID 1,
//! never to the supervisor, so nothing else waits for them.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid};

/// Signals passed on to the supervisor.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// When we are PID 1, splits into an init (this call never returns in it)
/// and the supervisor (this call returns). Otherwise returns at once.
/// Must be called before any thread is started.
pub fn split_if_pid1() -> anyhow::Result<()> {
    if getpid().as_raw() != 1 {
        return Ok(());
    }
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    // Blocked before the fork, so nothing arrives unhandled in between; the
    // init collects them with sigwait, the supervisor unblocks them.
    let mut old = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))?;
    // SAFETY: no other thread exists yet (called first thing in main).
    match unsafe { fork() }? {
        ForkResult::Child => {
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None)?;
            Ok(())
        }
        ForkResult::Parent { child } => std::process::exit(init(child, &set)),
    }
}

/// The init loop: forwards signals to `supervisor`, reaps every child, and
/// returns the supervisor's exit code once it has exited.
fn init(supervisor: Pid, set: &SigSet) -> i32 {
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => {
                if let Some(code) = reap(supervisor) {
                    return code;
                }
            }
            Ok(sig) => {
                let _ = kill(supervisor, sig);
            }
            Err(_) => {}
        }
    }
}

/// Reaps every exited child; the supervisor's exit code once it is among them.
fn reap(supervisor: Pid) -> Option<i32> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == supervisor => return Some(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == supervisor => {
                return Some(128 + sig as i32);
            }
            Ok(WaitStatus::StillAlive) => return None,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            // ECHILD: no children at all, so the supervisor is gone too.
            Err(_) => return Some(1),
        }
    }
}
