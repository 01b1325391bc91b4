//! `SimEnv`: the Env seam wired to the simulation.
//!
//! - Clock: tokio time, which turmoil drives; wall clock = the world's fixed
//!   epoch plus `turmoil::since_epoch()`.
//! - Net: turmoil TCP (a newtype listener implementing `axum::serve::Listener`).
//! - Processes: `postgres` starts the simulated postmaster on this host;
//!   `initdb`, `pg_basebackup` and `postgres --describe-config` are simulated
//!   (see [`crate::world::procs`]); signals go to the simulated postmaster.
//! - Fs: an in-memory tree ([`crate::world::fs::SimFs`]).
//! - Rng: seeded.
#![allow(clippy::disallowed_methods)]

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use compute_ctl::env::{
    Child, Clock, CommandSpec, ExitInfo, FileStamp, Fs, Net, ProcessOutput, Processes, Rng, RunAs,
    Signal,
};
use rand::{RngCore, SeedableRng, rngs::SmallRng};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::world::fs::SimFs;
use crate::world::procs::ProcTable;
use crate::world::shared::Shared;

/// The simulated environment of one boot of the compute host.
#[derive(Clone)]
pub struct SimEnv {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Shared,
    fs: Mutex<SimFs>,
    procs: Mutex<ProcTable>,
    rng: Mutex<SmallRng>,
    /// The world's wall clock at simulated time zero.
    epoch: SystemTime,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimEnv {
    pub fn new(shared: Shared, seed: u64, epoch: SystemTime) -> Self {
        // The host's image has the Postgres binary (a file to stamp, for
        // the settings cache; `procs.rs` answers for the program itself).
        let mut fs = SimFs::new();
        let pgbin = super::params().pgbin;
        if let Some(dir) = pgbin.parent() {
            let installed = fs
                .create_dir_all(dir)
                .and_then(|()| fs.write(&pgbin, b"simulated postgres 15"));
            debug_assert!(installed.is_ok(), "{installed:?}");
        }
        Self {
            inner: Arc::new(Inner {
                shared,
                fs: Mutex::new(fs),
                procs: Mutex::new(ProcTable::default()),
                rng: Mutex::new(SmallRng::seed_from_u64(seed)),
                epoch,
            }),
        }
    }

    pub fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    pub fn fs(&self) -> MutexGuard<'_, SimFs> {
        lock(&self.inner.fs)
    }

    pub fn procs(&self) -> MutexGuard<'_, ProcTable> {
        lock(&self.inner.procs)
    }

    /// A seeded draw in `[lo, hi]` milliseconds.
    pub fn jitter(&self, lo_ms: u64, hi_ms: u64) -> Duration {
        let span = hi_ms.saturating_sub(lo_ms) + 1;
        Duration::from_millis(lo_ms + self.next_u64() % span)
    }
}

impl Clock for SimEnv {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall_clock(&self) -> SystemTime {
        match turmoil::since_epoch() {
            Some(d) => UNIX_EPOCH + d,
            None => self.inner.epoch,
        }
    }

    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await
    }
}

/// A turmoil listener that axum can serve on.
pub struct SimListener(pub turmoil::net::TcpListener);

impl axum::serve::Listener for SimListener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(pair) => return pair,
                // Accept errors are transient in turmoil; back off a tick.
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Net for SimEnv {
    type Stream = turmoil::net::TcpStream;
    type Listener = SimListener;

    async fn connect(&self, host: &str, port: u16) -> io::Result<Self::Stream> {
        turmoil::net::TcpStream::connect((host, port)).await
    }

    async fn bind(&self, addr: SocketAddr) -> io::Result<SimListener> {
        turmoil::net::TcpListener::bind(addr).await.map(SimListener)
    }

    async fn resolve(&self, host: &str) -> io::Result<Vec<std::net::IpAddr>> {
        Ok(vec![turmoil::lookup(host)])
    }
}

/// A simulated child process: its exit is published on a watch channel.
pub struct SimChild {
    pub pid: u32,
    pub exit: watch::Receiver<Option<ExitInfo>>,
}

impl Child for SimChild {
    fn pid(&self) -> u32 {
        self.pid
    }

    async fn wait(&mut self) -> io::Result<ExitInfo> {
        match self.exit.wait_for(Option::is_some).await {
            Ok(v) => Ok(v.unwrap_or(ExitInfo {
                code: None,
                signal: None,
            })),
            Err(_) => Err(io::Error::other("the simulated process vanished")),
        }
    }
}

impl Processes for SimEnv {
    type Child = SimChild;

    fn spawn(&self, cmd: &CommandSpec) -> io::Result<SimChild> {
        // As TokioEnv: cgroup.procs must open before the program starts,
        // and the child is in the cgroup before it runs.
        let procs = match &cmd.cgroup_procs {
            Some(p) => Some((p.clone(), self.fs().read(p)?)),
            None => None,
        };
        let child = crate::world::procs::spawn(self, cmd)?;
        if let Some((path, mut pids)) = procs {
            pids.extend_from_slice(format!("{}\n", child.pid()).as_bytes());
            self.fs().write(&path, &pids)?;
        }
        Ok(child)
    }

    async fn output(&self, cmd: &CommandSpec) -> io::Result<ProcessOutput> {
        crate::world::procs::output(self, cmd).await
    }

    fn signal(&self, pid: u32, sig: Signal) -> io::Result<()> {
        self.procs().signal(pid, sig)
    }

    fn command_line(&self, pid: u32) -> io::Result<Option<Vec<String>>> {
        Ok(self.procs().command_line(pid))
    }

    fn processes_with_arg(&self, arg: &str) -> io::Result<Vec<(u32, Vec<String>)>> {
        Ok(self.procs().with_arg(arg))
    }

    fn postgres_identity(&self) -> io::Result<Option<RunAs>> {
        Ok(None)
    }
}

impl Fs for SimEnv {
    async fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.fs().read(path)
    }

    async fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.fs().write(path, data)
    }

    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.fs().remove_dir_all(path);
        Ok(())
    }

    async fn create_dir_all(&self, path: &Path, _mode: u32) -> io::Result<()> {
        self.fs().create_dir_all(path)
    }

    /// The simulated file system keeps no permission bits.
    async fn set_mode(&self, path: &Path, _mode: u32) -> io::Result<()> {
        if self.fs().exists(path) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} does not exist", path.display()),
            ))
        }
    }

    async fn chown_recursive(&self, path: &Path, _who: RunAs) -> io::Result<()> {
        if self.fs().exists(path) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("chown {}: no such file or directory", path.display()),
            ))
        }
    }

    async fn exists(&self, path: &Path) -> bool {
        self.fs().exists(path)
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.fs().remove_file(path);
        Ok(())
    }

    async fn dir_size(&self, path: &Path) -> io::Result<u64> {
        self.fs().size_below(path)
    }

    /// The simulated file system keeps no times: every file is of the epoch.
    async fn stamp(&self, path: &Path) -> io::Result<FileStamp> {
        let len = self.fs().read(path)?.len() as u64;
        Ok(FileStamp {
            len,
            modified_ns: 0,
        })
    }
}

impl Rng for SimEnv {
    fn next_u64(&self) -> u64 {
        lock(&self.inner.rng).next_u64()
    }
}

/// The simulation clock alone, for hosts that have no `SimEnv` (the control
/// plane): `compute_ctl::env::timeout(&SimClock, d, fut)` works on it.
#[derive(Clone, Copy, Default)]
pub struct SimClock;

impl Clock for SimClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall_clock(&self) -> SystemTime {
        UNIX_EPOCH + turmoil::since_epoch().unwrap_or_default()
    }

    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await
    }
}
