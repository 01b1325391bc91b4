//! The production Env: tokio time, TCP, processes and the real file system.
//! This is the only module allowed to touch the OS clock, threads and OS
//! randomness (see `clippy.toml`).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rand::{RngCore, SeedableRng, rngs::SmallRng};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::{
    Child, Clock, CommandSpec, ExitInfo, FileStamp, Fs, Net, ProcessOutput, Processes, Rng, RunAs,
    Signal,
};

/// The production environment.
#[derive(Clone)]
pub struct TokioEnv {
    rng: Arc<Mutex<SmallRng>>,
}

impl TokioEnv {
    pub fn new() -> Self {
        Self {
            rng: Arc::new(Mutex::new(SmallRng::from_os_rng())),
        }
    }
}

impl Default for TokioEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioEnv {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall_clock(&self) -> SystemTime {
        SystemTime::now()
    }

    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await
    }
}

impl Net for TokioEnv {
    type Stream = TcpStream;
    type Listener = TcpListener;

    async fn connect(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind(addr).await
    }

    async fn resolve(&self, host: &str) -> io::Result<Vec<std::net::IpAddr>> {
        let mut ips: Vec<std::net::IpAddr> = tokio::net::lookup_host((host, 0))
            .await?
            .map(|a| a.ip())
            .collect();
        ips.sort();
        ips.dedup();
        Ok(ips)
    }
}

/// How many of a child's last output lines are kept for error messages.
const RECENT_LINES: usize = 20;

/// How long `wait` gives the output forwarders to drain the pipes after the
/// process exited. Postgres' own children inherit the pipes and may keep them
/// open a little longer; the bound keeps `wait` from hanging on them.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

/// The last lines a child printed.
type Recent = Arc<Mutex<std::collections::VecDeque<String>>>;

/// A child process started by [`TokioEnv`].
pub struct TokioChild {
    pid: u32,
    child: tokio::process::Child,
    recent: Recent,
    forwarders: Vec<tokio::task::JoinHandle<()>>,
}

impl Child for TokioChild {
    fn pid(&self) -> u32 {
        self.pid
    }

    async fn wait(&mut self) -> io::Result<ExitInfo> {
        let status = self.child.wait().await?;
        let drain = futures::future::join_all(std::mem::take(&mut self.forwarders));
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
        Ok(exit_info(status))
    }

    fn recent_output(&self) -> Vec<String> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }
}

fn exit_info(status: std::process::ExitStatus) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    ExitInfo {
        code: status.code(),
        signal: status.signal(),
    }
}

fn command(cmd: &CommandSpec) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(&cmd.program);
    c.args(&cmd.args);
    for (k, v) in &cmd.env {
        c.env(k, v);
    }
    if let Some(dir) = &cmd.current_dir {
        c.current_dir(dir);
    }
    if let Some(who) = cmd.run_as {
        // std drops root's supplementary groups itself before setuid (a
        // pre_exec setgroups would run after setuid and fail with EPERM).
        c.uid(who.uid).gid(who.gid);
    }
    c
}

/// Moves the child into a cgroup before it execs: `procs` (a cgroup's
/// `cgroup.procs`) is opened here, and the child writes its own pid into
/// it between fork and exec, so that Postgres and everything it forks
/// start inside the cgroup (what `cgexec` does; it is not installed on
/// every host).
fn place_in_cgroup(c: &mut tokio::process::Command, procs: &Path) -> io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(procs)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot open {} to start the process in its cgroup: {e}",
                    procs.display()
                ),
            )
        })?;
    // SAFETY: the closure runs in the forked child before exec; it only
    // calls getpid and write (async-signal-safe) on a stack buffer, and
    // allocates nothing.
    unsafe {
        c.pre_exec(move || {
            let mut buf = [0u8; 12];
            let line = pid_line(nix::unistd::getpid().as_raw().unsigned_abs(), &mut buf);
            nix::unistd::write(&file, line)
                .map(|_| ())
                .map_err(io::Error::from)
        });
    }
    Ok(())
}

/// `pid` in decimal with a newline, written into `buf` without allocating.
fn pid_line(mut pid: u32, buf: &mut [u8; 12]) -> &[u8] {
    let mut i = buf.len() - 1;
    buf[i] = b'\n';
    loop {
        i -= 1;
        buf[i] = b'0' + (pid % 10) as u8;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Forwards each line a child prints to the log, tagged with the program
/// name, and keeps the last [`RECENT_LINES`] in `recent`.
fn forward_lines<R: AsyncRead + Unpin + Send + 'static>(
    program: String,
    pipe: R,
    recent: Recent,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "postgres", "{program}: {line}");
            if let Ok(mut r) = recent.lock() {
                if r.len() == RECENT_LINES {
                    r.pop_front();
                }
                r.push_back(line);
            }
        }
    })
}

fn program_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Processes for TokioEnv {
    type Child = TokioChild;

    fn spawn(&self, cmd: &CommandSpec) -> io::Result<TokioChild> {
        let mut c = command(cmd);
        if let Some(procs) = &cmd.cgroup_procs {
            place_in_cgroup(&mut c, procs)?;
        }
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start {}: {e}", cmd.program.display()),
                )
            })?;
        let name = program_name(&cmd.program);
        let recent = Recent::default();
        let mut forwarders = Vec::new();
        if let Some(out) = child.stdout.take() {
            forwarders.push(forward_lines(name.clone(), out, recent.clone()));
        }
        if let Some(err) = child.stderr.take() {
            forwarders.push(forward_lines(name, err, recent.clone()));
        }
        let pid = child.id().unwrap_or(0);
        Ok(TokioChild {
            pid,
            child,
            recent,
            forwarders,
        })
    }

    async fn output(&self, cmd: &CommandSpec) -> io::Result<ProcessOutput> {
        let mut c = command(cmd);
        // A caller that stops waiting (a timeout) no longer wants the program.
        c.kill_on_drop(true);
        // Nor does a compute_ctl that is killed: an orphaned initdb or
        // pg_basebackup would go on writing into the PGDATA that the next
        // start recreates. The kernel sends SIGKILL when the thread that
        // forked exits: a tokio worker, which lives as long as the process.
        // Set after std's uid change (closures run later), which would clear it.
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            c.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(io::Error::from)
            });
        }
        // Its own process group, so that what it forks (pg_basebackup's WAL
        // streamer) goes with it: see [`ToolGroup`].
        c.process_group(0);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = c.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run {}: {e}", cmd.program.display()),
            )
        })?;
        let group = ToolGroup(child.id());
        if let (Some(input), Some(mut stdin)) = (cmd.stdin.clone(), child.stdin.take()) {
            tokio::spawn(async move {
                let _ = stdin.write_all(&input).await;
            });
        }
        let stdout = tokio::spawn(read_all(child.stdout.take()));
        let stderr = tokio::spawn(read_all(child.stderr.take()));
        let status = child.wait().await?;
        // A forked helper that outlived the program (pg_basebackup killed,
        // its WAL streamer not) would hold the pipes open for ever.
        drop(group);
        Ok(ProcessOutput {
            status: exit_info(status),
            stdout: stdout.await.unwrap_or_default(),
            stderr: stderr.await.unwrap_or_default(),
        })
    }

    fn spawn_streaming(&self, cmd: &CommandSpec) -> io::Result<super::StreamingChild> {
        let mut c = command(cmd);
        // Whoever stops reading (a client gone, a deadline) no longer wants it.
        c.kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run {}: {e}", cmd.program.display()),
            )
        })?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("the child has no stdout pipe"))?;
        // Drained at once, so that a chatty stderr cannot block the program.
        let stderr = child.stderr.take().map(|mut e| {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let _ = e.read_to_end(&mut buf).await;
                buf
            })
        });
        let done = async move {
            let status = child.wait().await?;
            let err = match stderr {
                Some(task) => task.await.unwrap_or_default(),
                None => Vec::new(),
            };
            Ok((exit_info(status), err))
        };
        Ok(super::StreamingChild {
            stdout: Box::pin(stdout),
            done: Box::pin(done),
        })
    }

    fn signal(&self, pid: u32, sig: Signal) -> io::Result<()> {
        use nix::sys::signal::Signal as S;
        let s = match sig {
            Signal::Hup => S::SIGHUP,
            Signal::Int => S::SIGINT,
            Signal::Quit => S::SIGQUIT,
            Signal::Term => S::SIGTERM,
            Signal::Kill => S::SIGKILL,
        };
        let pid = i32::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), s).map_err(io::Error::from)
    }

    fn command_line(&self, pid: u32) -> io::Result<Option<Vec<String>>> {
        match std::fs::read(format!("/proc/{pid}/cmdline")) {
            // A zombie has an empty command line: it runs no more.
            Ok(raw) if raw.is_empty() => Ok(None),
            Ok(raw) => Ok(Some(
                raw.split(|&b| b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn processes_with_arg(&self, arg: &str) -> io::Result<Vec<(u32, Vec<String>)>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc")? {
            let Some(pid) = entry?
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            // Gone since the listing, or a zombie: not at work any more.
            if let Ok(Some(cmd)) = self.command_line(pid) {
                if cmd.iter().skip(1).any(|a| a == arg) {
                    found.push((pid, cmd));
                }
            }
        }
        Ok(found)
    }

    fn postgres_identity(&self) -> io::Result<Option<RunAs>> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        let user = nix::unistd::User::from_name("postgres")
            .map_err(io::Error::from)?
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "running as root, but there is no 'postgres' OS user to run Postgres as; create one (useradd postgres) or run compute_ctl as a non-root user",
                )
            })?;
        Ok(Some(RunAs {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }))
    }

    /// With the cargo feature `failpoints` (test builds only) and
    /// `COMPUTE_CTL_FAILPOINT=<phase>[,<phase>...]`, the process stops
    /// itself (SIGSTOP) as it enters each phase named; the test that set it
    /// resumes or kills it.
    #[cfg(feature = "failpoints")]
    fn failpoint(&self, phase: &'static str) {
        static WANTED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let wanted = WANTED.get_or_init(|| {
            std::env::var("COMPUTE_CTL_FAILPOINT")
                .map(|v| v.split(',').map(str::to_string).collect())
                .unwrap_or_default()
        });
        if wanted.iter().any(|w| w == phase) {
            tracing::warn!(phase, "failpoint reached: stopping (SIGSTOP) until resumed");
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
        }
    }
}

/// The process group of a program run to completion ([`Processes::output`]):
/// SIGKILL to whatever is left in it when the program has exited or its
/// caller stopped waiting (a timeout). A program that exits normally has
/// waited for what it forked, so then nothing is left to hit.
struct ToolGroup(Option<u32>);

impl Drop for ToolGroup {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Everything a pipe yields until it closes.
async fn read_all(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_end(&mut buf).await;
    }
    buf
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// [`Fs::write_atomic`]: temp file, full write, checked close, rename; no
/// fsync (see the trait).
fn write_atomic_blocking(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let tmp = temp_path(path);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        // ext4, xfs and tmpfs reserve the blocks at write(): a full disk
        // fails here, before anything is renamed.
        f.write_all(data)?;
        // File systems that allocate at writeback (NFS, quotas on some)
        // report ENOSPC or EDQUOT at close, which `File`'s drop would ignore.
        nix::unistd::close(f).map_err(io::Error::from)
    });
    if let Err(e) = written {
        // A full disk must not keep the half-written copy: it holds the
        // space the next attempt needs.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Keep the owner of the file we replace (Postgres must still read it).
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::MetadataExt;
        let _ = nix::unistd::chown(
            &tmp,
            Some(nix::unistd::Uid::from_raw(meta.uid())),
            Some(nix::unistd::Gid::from_raw(meta.gid())),
        );
    }
    std::fs::rename(&tmp, path)
}

/// Runs `f`, a few system calls on a small file (no fsync), on this
/// thread when the runtime has several (`block_in_place` hands this
/// worker's other tasks to another thread, and nothing waits for a thread
/// to wake), else on the blocking pool. A trip to the blocking pool is two
/// thread wake-ups, each of which waits for a CPU on a loaded machine: a
/// notify made four of them (two reads, a write) for a few microseconds of
/// work (`just bench`, `notify_stages`).
async fn small_file_io<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(f)
    } else {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| io::Error::other(format!("the file operation did not finish: {e}")))?
    }
}

impl Fs for TokioEnv {
    async fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let path = path.to_path_buf();
        small_file_io(move || std::fs::read(&path)).await
    }

    async fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let (path, data) = (path.to_path_buf(), data.to_vec());
        small_file_io(move || write_atomic_blocking(&path, &data)).await
    }

    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        match tokio::fs::remove_dir_all(path).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    async fn create_dir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        tokio::fs::create_dir_all(path).await?;
        tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).await
    }

    async fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).await
    }

    async fn chown_recursive(&self, path: &Path, who: RunAs) -> io::Result<()> {
        let mut stack = vec![path.to_path_buf()];
        while let Some(p) = stack.pop() {
            nix::unistd::chown(
                &p,
                Some(nix::unistd::Uid::from_raw(who.uid)),
                Some(nix::unistd::Gid::from_raw(who.gid)),
            )
            .map_err(|e| io::Error::other(format!("chown {}: {e}", p.display())))?;
            if tokio::fs::symlink_metadata(&p).await?.is_dir() {
                let mut rd = tokio::fs::read_dir(&p).await?;
                while let Some(entry) = rd.next_entry().await? {
                    stack.push(entry.path());
                }
            }
        }
        Ok(())
    }

    async fn exists(&self, path: &Path) -> bool {
        tokio::fs::try_exists(path).await.unwrap_or(false)
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        match tokio::fs::remove_file(path).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    async fn dir_size(&self, path: &Path) -> io::Result<u64> {
        // One walk on one thread: a tokio::fs call per entry hopped to the
        // blocking pool and back for each of the ~1,000 entries of a fresh
        // base backup, on the start's critical path.
        let root = path.to_path_buf();
        small_file_io(move || {
            let mut total = 0u64;
            let mut stack = vec![root];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir)? {
                    let entry = entry?;
                    let meta = entry.metadata()?;
                    if meta.is_dir() {
                        stack.push(entry.path());
                    } else if meta.is_file() {
                        total += meta.len();
                    }
                }
            }
            Ok(total)
        })
        .await
    }

    async fn stamp(&self, path: &Path) -> io::Result<FileStamp> {
        let owned = path.to_path_buf();
        let meta = small_file_io(move || std::fs::metadata(owned)).await?;
        let modified = meta.modified()?;
        let since_epoch = modified
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| {
                io::Error::other(format!("{} is dated before 1970: {e}", path.display()))
            })?;
        Ok(FileStamp {
            len: meta.len(),
            modified_ns: u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX),
        })
    }
}

impl Rng for TokioEnv {
    fn next_u64(&self) -> u64 {
        self.rng.lock().map(|mut r| r.next_u64()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_lines_are_decimal_with_a_newline() {
        let mut buf = [0u8; 12];
        assert_eq!(pid_line(0, &mut buf), b"0\n");
        assert_eq!(pid_line(7, &mut buf), b"7\n");
        assert_eq!(pid_line(40213, &mut buf), b"40213\n");
        assert_eq!(pid_line(u32::MAX, &mut buf), b"4294967295\n");
    }

    #[tokio::test]
    async fn write_atomic_replaces_the_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("postgresql.conf");
        let env = TokioEnv::new();
        env.write_atomic(&path, b"a = 1\n").await.unwrap();
        env.write_atomic(&path, b"a = 2\n").await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"a = 2\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["postgresql.conf"]);
        // A directory that is not there: an error, and nothing written.
        let missing = dir.path().join("gone").join("postgresql.conf");
        let e = env.write_atomic(&missing, b"x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(!missing.parent().unwrap().exists());
    }
}
