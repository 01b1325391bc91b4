//! Harness for integration tests of the real `compute_ctl` binary on real
//! Postgres 15: ports from this suite's range, a throw-away PGDATA reachable
//! by the `postgres` user, the process's log kept for assertions and failure
//! messages, kill on drop (compute_ctl and every Postgres process of its
//! PGDATA), and polling helpers with deadlines.
//!
//! Status is observed through the supervisor's log (`status change ...
//! to=running`) and by connecting to Postgres. When the HTTP API lands,
//! [`Compute::http_url`] is where `GET /status` lives; `wait_status` can poll
//! it instead of the log without changing the tests.
// Tests may use the OS clock and sleep between polls (clippy.toml is for the library).
#![allow(clippy::disallowed_methods)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The Postgres 15 server binary.
pub const PGBIN: &str = "/usr/lib/postgresql/15/bin/postgres";
/// The superuser compute_ctl connects as.
pub const SUPERUSER: &str = "cloud_admin";

static NEXT_PG_PORT: AtomicU16 = AtomicU16::new(0);
static NEXT_HTTP_PORT: AtomicU16 = AtomicU16::new(0);

/// A free port from `lo..=hi`, handed out once per process (atomic counter)
/// and checked by binding it.
fn alloc_port(counter: &AtomicU16, lo: u16, hi: u16) -> u16 {
    let n = hi - lo + 1;
    for _ in 0..n {
        let p = lo + counter.fetch_add(1, Ordering::Relaxed) % n;
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port left in {lo}..={hi}");
}

/// A free Postgres port of this suite's range (56000-56199).
pub fn pg_port() -> u16 {
    alloc_port(&NEXT_PG_PORT, 56000, 56199)
}

/// A free HTTP port of this suite's range (38000-38099).
pub fn http_port() -> u16 {
    alloc_port(&NEXT_HTTP_PORT, 38000, 38099)
}

/// A temp directory under /tmp that the `postgres` user can traverse.
pub fn temp_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("cc-lifecycle-")
        .tempdir_in("/tmp")
        .expect("create temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod temp dir");
    dir
}

/// Polls `cond` until it yields `Some`, failing with `what` and `context()` at the deadline.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `fixtures/NAME` as JSON.
pub fn fixture(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("read fixture");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// `fixtures/spec.json` with catalog updates skipped (until the catalog lands).
pub fn quickstart_spec() -> serde_json::Value {
    let mut spec = fixture("spec.json");
    spec["skip_pg_catalog_updates"] = true.into();
    spec
}

/// How to start compute_ctl.
#[derive(Debug, Clone)]
pub struct ComputeOpts {
    /// Given with `--spec-json`; `None` starts without a spec.
    pub spec: Option<serde_json::Value>,
    pub pgbin: PathBuf,
    pub pg_port: Option<u16>,
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Run as PID 1 of a new PID namespace (`unshare --pid --fork`).
    pub pid1: bool,
}

impl ComputeOpts {
    pub fn with_spec(spec: serde_json::Value) -> Self {
        Self {
            spec: Some(spec),
            ..Self::without_spec()
        }
    }

    /// No spec: it comes later (control plane, `POST /configure`).
    pub fn without_spec() -> Self {
        Self {
            spec: None,
            pgbin: PGBIN.into(),
            pg_port: None,
            args: Vec::new(),
            pid1: false,
        }
    }
}

/// The process's output lines, ANSI colours removed.
type Log = Arc<Mutex<Vec<String>>>;

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn collect_lines<R: AsyncRead + Unpin + Send + 'static>(pipe: R, log: Log) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log.lock().unwrap().push(strip_ansi(&line));
        }
    });
}

/// A running compute_ctl with its own PGDATA and ports.
pub struct Compute {
    child: tokio::process::Child,
    pub pid: u32,
    pub pg_port: u16,
    pub http_port: u16,
    pub pgdata: PathBuf,
    pub dir: tempfile::TempDir,
    log: Log,
    exit: Option<ExitStatus>,
}

impl Compute {
    /// Starts compute_ctl as `opts` says.
    pub fn start(opts: ComputeOpts) -> Self {
        let dir = temp_dir();
        let pgdata = dir.path().join("pgdata");
        let pg_port = opts.pg_port.unwrap_or_else(pg_port);
        let http_port = http_port();
        let bin = env!("CARGO_BIN_EXE_compute_ctl");
        let mut cmd = if opts.pid1 {
            let mut c = tokio::process::Command::new("unshare");
            c.args(["--pid", "--fork", "--kill-child", bin]);
            c
        } else {
            tokio::process::Command::new(bin)
        };
        cmd.arg("-D")
            .arg(&pgdata)
            .arg("-C")
            .arg(format!(
                "postgresql://{SUPERUSER}@127.0.0.1:{pg_port}/postgres"
            ))
            .arg("-b")
            .arg(&opts.pgbin)
            .args(["--http-host", "127.0.0.1", "--http-port"])
            .arg(http_port.to_string())
            .args([
                "--ready-timeout-secs",
                "60",
                "--shutdown-timeout-secs",
                "10",
            ])
            .args(&opts.args)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(spec) = &opts.spec {
            cmd.arg("--spec-json").arg(spec.to_string());
        }
        let mut child = cmd.spawn().expect("spawn compute_ctl");
        let log = Log::default();
        collect_lines(child.stdout.take().unwrap(), log.clone());
        collect_lines(child.stderr.take().unwrap(), log.clone());
        let pid = child.id().expect("pid");
        Self {
            child,
            pid,
            pg_port,
            http_port,
            pgdata,
            dir,
            log,
            exit: None,
        }
    }

    /// The `-C` connection string.
    pub fn connstr(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={SUPERUSER} dbname=postgres",
            self.pg_port
        )
    }

    /// Base URL of the HTTP API (for `/status` once the API is merged).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Everything compute_ctl printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Connects to Postgres with the `-C` string.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) =
            tokio_postgres::connect(&self.connstr(), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Whether compute_ctl has exited (and its status, remembered).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait");
        }
        self.exit
    }

    /// Waits until the log shows the status `status` (snake_case);
    /// panics with the log if compute_ctl exits first or the deadline passes.
    pub async fn wait_status(&mut self, status: &str, within: Duration) {
        let needle = format!("to={status} ");
        let deadline = Instant::now() + within;
        loop {
            if self.log().contains(&needle) {
                return;
            }
            if let Some(exit) = self.try_exit() {
                panic!(
                    "compute_ctl exited ({exit}) before reaching {status}:\n{}",
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "compute_ctl did not reach {status} within {within:?}:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until Running and returns a session opened with the `-C` string.
    pub async fn wait_running(&mut self) -> tokio_postgres::Client {
        self.wait_status("running", Duration::from_secs(60)).await;
        match self.connect().await {
            Ok(c) => c,
            Err(e) => panic!("running, but cannot connect: {e}\n{}", self.log()),
        }
    }

    /// Waits until compute_ctl exits; panics with the log after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => {
                let status = status.expect("wait compute_ctl");
                self.exit = Some(status);
                // Let the log readers drain what is left in the pipes.
                let n = self.log.lock().unwrap().len();
                let _ = tokio::time::timeout(Duration::from_millis(200), async {
                    loop {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        if self.log.lock().unwrap().len() == n {
                            break;
                        }
                    }
                })
                .await;
                status
            }
            Err(_) => panic!(
                "compute_ctl did not exit within {within:?}:\n{}",
                self.log()
            ),
        }
    }

    /// Sends `sig` to compute_ctl.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), sig)
            .expect("signal compute_ctl");
    }

    /// The postmaster's pid, if one runs on this PGDATA.
    pub fn postmaster_pid(&self) -> Option<i32> {
        postmaster_of(&self.pgdata)
    }

    /// Every process working in this PGDATA (Postgres chdirs into it, and
    /// its children inherit that): the postmaster and all its children.
    pub fn postgres_processes(&self) -> Vec<i32> {
        processes_in(&self.pgdata)
    }
}

impl Drop for Compute {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        kill_postgres_in(&self.pgdata);
    }
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

/// Processes whose working directory is `dir` (and that are not zombies).
pub fn processes_in(dir: &Path) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|p| p == dir))
        .collect()
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

/// SIGKILLs every process working in `pgdata` (cleanup on drop).
pub fn kill_postgres_in(pgdata: &Path) {
    use nix::sys::signal::{Signal, kill};
    for pid in processes_in(pgdata) {
        let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// The `postgres` OS user's uid and gid.
pub fn postgres_user() -> (u32, u32) {
    let u = nix::unistd::User::from_name("postgres")
        .expect("look up postgres user")
        .expect("a postgres OS user exists");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// A plain Postgres outside compute_ctl: the source of a base backup.
pub struct SourcePostgres {
    child: tokio::process::Child,
    pub port: u16,
    pub pgdata: PathBuf,
    _dir: tempfile::TempDir,
}

impl SourcePostgres {
    /// initdb (superuser `cloud_admin`, trust) and start on a free port.
    pub async fn start() -> Self {
        let dir = temp_dir();
        let pgdata = dir.path().join("source");
        let port = pg_port();
        let (uid, gid) = postgres_user();
        std::fs::create_dir(&pgdata).expect("create source PGDATA");
        nix::unistd::chown(
            &pgdata,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .expect("chown source PGDATA");
        let bin = Path::new(PGBIN);
        let out = tokio::process::Command::new(bin.with_file_name("initdb"))
            .arg("-D")
            .arg(&pgdata)
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .uid(uid)
            .gid(gid)
            .current_dir("/")
            .output()
            .await
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let child = tokio::process::Command::new(bin)
            .arg("-D")
            .arg(&pgdata)
            .args([
                "-c",
                &format!("port={port}"),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .uid(uid)
            .gid(gid)
            .current_dir("/")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn source postgres");
        let me = Self {
            child,
            port,
            pgdata,
            _dir: dir,
        };
        wait_for(
            Duration::from_secs(30),
            "the source Postgres to accept connections",
            || async { me.connect().await.ok().map(|_| ()) },
        )
        .await;
        me
    }

    /// libpq key=value connection string.
    pub fn connstr(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={SUPERUSER} dbname=postgres",
            self.port
        )
    }

    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) =
            tokio_postgres::connect(&self.connstr(), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }
}

impl Drop for SourcePostgres {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        kill_postgres_in(&self.pgdata);
    }
}
