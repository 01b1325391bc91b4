//! The Env seam: every effect the supervisor has goes through these traits.
//!
//! The supervisor core is generic over [`Env`] (static dispatch). Production
//! wires [`TokioEnv`]: tokio time, TCP, `tokio::process`, the real file system.
//! The simulator (`sim/`) wires turmoil time and TCP, a simulated Postgres
//! process, an in-memory file system and a seeded RNG. Nothing outside this
//! module may call the clock, the OS or randomness directly (`clippy.toml`).

mod pace;
mod tokio_env;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

pub use pace::Pace;
pub use tokio_env::TokioEnv;

/// Monotonic and wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic now (tokio's clock, which the simulator drives).
    fn now(&self) -> Instant;
    /// Wall-clock time, for timestamps shown to users.
    fn wall_clock(&self) -> SystemTime;
    /// Completes after `d`.
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send;
}

/// TCP: outgoing connections and listeners.
pub trait Net: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    type Listener: axum::serve::Listener;
    /// Connects to `host:port`.
    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Listens on `addr`.
    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// The addresses `host` resolves to now (an IP address is itself).
    fn resolve(&self, host: &str) -> impl Future<Output = io::Result<Vec<IpAddr>>> + Send;
}

/// An OS identity to run a child process as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// A program to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub run_as: Option<RunAs>,
    pub current_dir: Option<PathBuf>,
    /// Standard input to feed (for `output`); `None` means no stdin.
    pub stdin: Option<Vec<u8>>,
    /// For `spawn`: a cgroup's `cgroup.procs`; the child is placed in that
    /// cgroup (its pid written there) before it execs.
    pub cgroup_procs: Option<PathBuf>,
}

impl CommandSpec {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            ..Self::default()
        }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn run_as(mut self, who: Option<RunAs>) -> Self {
        self.run_as = who;
        self
    }

    /// The command line for messages (program and arguments).
    pub fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitInfo {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => write!(f, "killed by signal {s}"),
            (None, None) => f.write_str("unknown exit status"),
        }
    }
}

/// The result of running a program to completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessOutput {
    pub status: ExitInfo,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Signals the supervisor sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Reload configuration.
    Hup,
    /// Fast shutdown.
    Int,
    /// Immediate shutdown.
    Quit,
    /// Smart shutdown.
    Term,
    Kill,
}

/// Completes once a streamed program has exited: its exit status and its
/// standard error.
pub type StreamingDone =
    std::pin::Pin<Box<dyn Future<Output = io::Result<(ExitInfo, Vec<u8>)>> + Send>>;

/// A running program whose standard output is read as it is produced
/// (`pg_dump` streamed to an HTTP client).
pub struct StreamingChild {
    pub stdout: std::pin::Pin<Box<dyn AsyncRead + Send>>,
    /// Completes once the program has exited, with its exit status and its
    /// standard error. Dropping it (and `stdout`) kills the program.
    pub done: StreamingDone,
}

/// A spawned long-running process (the postmaster).
pub trait Child: Send + 'static {
    fn pid(&self) -> u32;
    /// Waits until the process exits.
    fn wait(&mut self) -> impl Future<Output = io::Result<ExitInfo>> + Send;
    /// The last lines the process printed (stdout and stderr interleaved),
    /// oldest first, so that an unexpected exit can say why. Complete once
    /// `wait` has returned. Implementations that keep no output return none.
    fn recent_output(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Starting, signalling and running programs.
pub trait Processes: Send + Sync + 'static {
    type Child: Child;
    /// Starts a program; its stdout and stderr go to the log.
    fn spawn(&self, cmd: &CommandSpec) -> io::Result<Self::Child>;
    /// Runs a program to completion and collects its output.
    fn output(&self, cmd: &CommandSpec) -> impl Future<Output = io::Result<ProcessOutput>> + Send;
    /// Starts a program whose standard output the caller reads as it
    /// comes. Environments that cannot run it say so (the simulator runs no
    /// `pg_dump`).
    fn spawn_streaming(&self, cmd: &CommandSpec) -> io::Result<StreamingChild> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("cannot stream the output of {} here", cmd.display()),
        ))
    }
    /// Sends a signal to a process.
    fn signal(&self, pid: u32, sig: Signal) -> io::Result<()>;

    /// The arguments of live process `pid` (program first); `None` when no
    /// such process runs (or it is a zombie).
    fn command_line(&self, pid: u32) -> io::Result<Option<Vec<String>>>;
    /// Live processes other than this one with `arg` as one of their
    /// arguments, with their command lines: what an earlier run left working
    /// on a PGDATA names it so (`pg_basebackup -D <pgdata>` and the WAL
    /// streamer it forked).
    fn processes_with_arg(&self, arg: &str) -> io::Result<Vec<(u32, Vec<String>)>>;

    /// The identity Postgres must run as: `Some` when we are root (Postgres
    /// refuses to run as root), `None` to run as ourselves.
    fn postgres_identity(&self) -> io::Result<Option<RunAs>>;

    /// The supervisor enters `phase` (`start.prepare_pgdata`,
    /// `reconfigure.reload`, ...). A no-op except in a test build of the real
    /// environment (cargo feature `failpoints`), where the crash campaign
    /// (tests/it/crash_phases.rs) can have the process stop itself there, so
    /// that it kills at a known point of a known phase.
    fn failpoint(&self, _phase: &'static str) {}
}

/// The file system.
pub trait Fs: Send + Sync + 'static {
    fn read(&self, path: &Path) -> impl Future<Output = io::Result<Vec<u8>>> + Send;
    /// Replaces `path` atomically: a temp file beside it, written in full
    /// and closed with both checked (a full disk, a quota or a read-only
    /// file system fails here, and the temp file is removed), then renamed
    /// over `path`. Readers see the old file or the new one, never a part.
    ///
    /// Not durable: neither the file nor its directory is fsynced, so an OS
    /// crash may lose the write. Every caller writes into PGDATA, which each
    /// start recreates (ARCHITECTURE.md, "Durable writes"); an fsync there
    /// made every notify wait for the file system's journal, whose commit
    /// any neighbour writing to the same disk can hold up for milliseconds.
    fn write_atomic(&self, path: &Path, data: &[u8])
    -> impl Future<Output = io::Result<()>> + Send;
    /// Removes a directory tree; a missing one is fine.
    fn remove_dir_all(&self, path: &Path) -> impl Future<Output = io::Result<()>> + Send;
    /// Creates a directory (and parents) and sets its mode.
    fn create_dir_all(&self, path: &Path, mode: u32)
    -> impl Future<Output = io::Result<()>> + Send;
    /// Sets the permission bits of a file (e.g. 0o600 for a private key).
    fn set_mode(&self, path: &Path, mode: u32) -> impl Future<Output = io::Result<()>> + Send;
    /// Changes the owner of `path` and everything below it.
    fn chown_recursive(
        &self,
        path: &Path,
        who: RunAs,
    ) -> impl Future<Output = io::Result<()>> + Send;
    fn exists(&self, path: &Path) -> impl Future<Output = bool> + Send;
    /// Removes a file; a missing one is fine.
    fn remove_file(&self, path: &Path) -> impl Future<Output = io::Result<()>> + Send;
    /// The bytes of the regular files below `path` (symlinks not followed):
    /// what a base backup wrote.
    fn dir_size(&self, path: &Path) -> impl Future<Output = io::Result<u64>> + Send;
    /// The size and modification time of the file at `path` (symlinks
    /// followed): what tells one build of a program from another without
    /// reading it.
    fn stamp(&self, path: &Path) -> impl Future<Output = io::Result<FileStamp>> + Send;
}

/// A file's size and modification time, as `make` and cargo compare them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    pub len: u64,
    /// Nanoseconds since the Unix epoch.
    pub modified_ns: u64,
}

/// Randomness, seeded in the simulator.
pub trait Rng: Send + Sync + 'static {
    fn next_u64(&self) -> u64;
}

/// The bundle the supervisor is generic over.
pub trait Env: Clock + Net + Processes + Fs + Rng + Clone {}

impl<T: Clock + Net + Processes + Fs + Rng + Clone> Env for T {}

/// Milliseconds of a duration, saturating.
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs `fut` with a deadline on the Env clock.
pub async fn timeout<E: Clock, F: Future>(
    env: &E,
    d: Duration,
    fut: F,
) -> Result<F::Output, Elapsed> {
    tokio::select! {
        biased;
        out = fut => Ok(out),
        () = env.sleep(d) => Err(Elapsed(d)),
    }
}

/// A deadline passed. Callers that know what they waited for say so in
/// their own error (as `CatalogError::Timeout` and `PgError::CommandTimeout`
/// do); this text is for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "no answer within {0:?}: the other side (Postgres, a program compute_ctl runs, or the control plane) is overloaded, stuck or unreachable; retry once it answers"
)]
pub struct Elapsed(pub Duration);
