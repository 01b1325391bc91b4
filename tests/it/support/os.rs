//! The operating-system side of the tests: temp dirs the `postgres` user can
//! reach, that user's ids, and processes found through `/proc` (to find a
//! postmaster and to leave no Postgres behind, also when a test fails).

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A temp directory under /tmp that the `postgres` user can traverse.
pub fn temp_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("compute_ctl-test-")
        .tempdir_in("/tmp")
        .expect("create temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod temp dir");
    dir
}

/// The `postgres` OS user's uid and gid.
pub fn postgres_user() -> (u32, u32) {
    let u = nix::unistd::User::from_name("postgres")
        .expect("look up the postgres OS user")
        .expect("the postgres OS user exists (useradd postgres)");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// Creates `dir` owned by the `postgres` user.
pub fn create_postgres_dir(dir: &Path) {
    let (uid, gid) = postgres_user();
    std::fs::create_dir(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    nix::unistd::chown(
        dir,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
}

/// Pids of the processes in `/proc`.
fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The postmaster running with `-D pgdata`.
pub fn postmaster_of(pgdata: &Path) -> Option<i32> {
    let want = format!("-D\0{}\0", pgdata.display());
    all_pids().into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| {
                let c = String::from_utf8_lossy(&c);
                c.split('\0')
                    .next()
                    .is_some_and(|p| p.ends_with("postgres"))
                    && c.contains(&want)
            })
            .unwrap_or(false)
    })
}

/// Processes whose working directory is `dir` (Postgres chdirs into its
/// PGDATA and its children inherit that): the postmaster and its children.
pub fn processes_in(dir: &Path) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|p| p == dir))
        .collect()
}

/// Children of `pid` (zombies included).
pub fn children_of(pid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| {
            // pid (comm) state ppid ...: comm may contain spaces, so split after ')'.
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Every descendant of `pid`: children, their children, and so on.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut next = vec![pid];
    while let Some(p) = next.pop() {
        for c in children_of(p) {
            found.push(c);
            next.push(c);
        }
    }
    found
}

/// The file name of the program `pid` runs (its first argument), or `None`
/// when there is no such process.
pub fn program_of(pid: i32) -> Option<String> {
    let args = args_of(pid)?;
    let program = Path::new(args.first()?).file_name()?;
    Some(program.to_string_lossy().into_owned())
}

/// The arguments `pid` was started with (its program first), or `None`
/// when there is no such process.
pub fn args_of(pid: i32) -> Option<Vec<String>> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// The process state letter of `/proc/<pid>/stat` (`T`: stopped by a
/// signal), or `None` when there is no such process.
pub fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The real uid of a process.
pub fn uid_of(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether a process exists.
pub fn alive(pid: i32) -> bool {
    // A zombie (exited, not yet reaped by whoever adopted it) runs no more.
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false);
    kill(Pid::from_raw(pid), None).is_ok() && !zombie
}

/// Kills `pid` with SIGKILL only while it runs: SIGSTOP first, and the kill
/// once `/proc` shows it stopped. `false` when it was already leaving (gone,
/// a zombie, or in its exit, where a signal no longer reaches it), so that a
/// program that finished on its own is not taken for one the kill hit:
/// between reading its name and a bare SIGKILL it may exit 0.
pub async fn kill_running(pid: i32) -> bool {
    let pid_t = Pid::from_raw(pid);
    if kill(pid_t, Signal::SIGSTOP).is_err() {
        return false;
    }
    // The stop takes effect when the process next runs (or leaves a disk wait).
    let running = super::poll_until(Duration::from_secs(10), || async {
        match state_of(pid) {
            Some('T') => Some(true),
            None | Some('Z' | 'X') => Some(false),
            Some(_) => None,
        }
    })
    .await;
    // Stopped (or still in a disk wait after 10 s, so not exiting): SIGKILL
    // kills it before it can finish.
    running != Some(false) && kill(pid_t, Signal::SIGKILL).is_ok()
}

/// Stops every Postgres process of `pgdata` (cleanup on drop): an immediate
/// shutdown (SIGQUIT to the postmaster, which also releases its shared
/// memory), then SIGKILL for whatever is left after a few seconds.
pub fn stop_postgres_in(pgdata: &Path) {
    if let Some(pm) = postmaster_of(pgdata) {
        let _ = kill(Pid::from_raw(pm), Signal::SIGQUIT);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_in(pgdata).is_empty() && Instant::now() < deadline {
            // Drop cannot await: a bounded poll of the process table.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for pid in processes_in(pgdata) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}
