//! Simulated programs behind `Processes`: the postmaster (long-running, see
//! [`crate::world::pg::postmaster`]) and the run-to-completion tools `initdb`,
//! `pg_basebackup` (a real turmoil TCP round trip to the `storage` host, so
//! "storage down" is a real network fault) and `postgres --describe-config`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use compute_ctl::env::{Clock, CommandSpec, ExitInfo, ProcessOutput, Signal};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::names::STORAGE_PORT;
use crate::world::env::{SimChild, SimEnv};

/// Running simulated processes by pid.
#[derive(Default)]
pub struct ProcTable {
    next_pid: u32,
    signals: BTreeMap<u32, mpsc::UnboundedSender<Signal>>,
    /// The command line each running process was started with.
    commands: BTreeMap<u32, Vec<String>>,
}

impl ProcTable {
    /// Registers a process and returns its pid and signal inbox.
    pub fn register(&mut self) -> (u32, mpsc::UnboundedReceiver<Signal>) {
        self.next_pid += 1;
        let pid = 4000 + self.next_pid;
        let (tx, rx) = mpsc::unbounded_channel();
        self.signals.insert(pid, tx);
        (pid, rx)
    }

    /// Forgets an exited process.
    pub fn exited(&mut self, pid: u32) {
        self.signals.remove(&pid);
        self.commands.remove(&pid);
    }

    /// The command line of a running process.
    pub fn command_line(&self, pid: u32) -> Option<Vec<String>> {
        self.signals
            .contains_key(&pid)
            .then(|| self.commands.get(&pid).cloned().unwrap_or_default())
    }

    /// Running processes with `arg` among their arguments, by pid, with
    /// their command lines.
    pub fn with_arg(&self, arg: &str) -> Vec<(u32, Vec<String>)> {
        self.commands
            .iter()
            .filter(|(pid, cmd)| self.signals.contains_key(pid) && cmd.iter().any(|a| a == arg))
            .map(|(&pid, cmd)| (pid, cmd.clone()))
            .collect()
    }

    pub fn signal(&self, pid: u32, sig: Signal) -> io::Result<()> {
        match self.signals.get(&pid) {
            Some(tx) if tx.send(sig).is_ok() => Ok(()),
            _ => Err(io::Error::other(format!("kill({pid}): No such process"))),
        }
    }
}

fn program(cmd: &CommandSpec) -> String {
    cmd.program
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The value of a `-X value`, `-Xvalue` or `--long=value` argument.
pub fn arg_value(args: &[String], short: &str, long: &str) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == short || a == long {
            return it.next().cloned();
        }
        if let Some(v) = a.strip_prefix(&format!("{long}=")) {
            return Some(v.to_string());
        }
        if short.len() == 2 && a.len() > 2 && a.starts_with(short) && !a.starts_with("--") {
            return Some(a[2..].to_string());
        }
    }
    None
}

/// Starts a long-running program.
pub fn spawn(env: &SimEnv, cmd: &CommandSpec) -> io::Result<SimChild> {
    let child = match program(cmd).as_str() {
        "postgres" => crate::world::pg::postmaster::spawn(env, cmd)?,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("cannot start {other}: not a simulated program"),
            ));
        }
    };
    let mut line = vec![cmd.program.display().to_string()];
    line.extend(cmd.args.iter().cloned());
    let pid = compute_ctl::env::Child::pid(&child);
    env.procs().commands.insert(pid, line);
    Ok(child)
}

fn exited(code: i32, stdout: impl Into<Vec<u8>>, stderr: impl Into<Vec<u8>>) -> ProcessOutput {
    ProcessOutput {
        status: ExitInfo {
            code: Some(code),
            signal: None,
        },
        stdout: stdout.into(),
        stderr: stderr.into(),
    }
}

/// What the simulated `postgres --version` prints.
pub const POSTGRES_VERSION: &str = "postgres (PostgreSQL) 15.8\n";

/// Runs a program to completion.
pub async fn output(env: &SimEnv, cmd: &CommandSpec) -> io::Result<ProcessOutput> {
    env.shared()
        .event("exec", serde_json::json!({"cmd": cmd.display()}));
    match program(cmd).as_str() {
        "initdb" => Ok(initdb(env, cmd).await),
        "pg_basebackup" => Ok(basebackup(env, cmd).await),
        "postgres" if cmd.args.iter().any(|a| a == "--describe-config") => {
            Ok(exited(0, crate::pgmodel::guc::describe_config(), ""))
        }
        "postgres" if cmd.args.iter().any(|a| a == "--version" || a == "-V") => {
            Ok(exited(0, POSTGRES_VERSION, ""))
        }
        other => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("cannot run {other}: not a simulated program"),
        )),
    }
}

/// Lays out a fresh data directory.
fn lay_out_pgdata(env: &SimEnv, pgdata: &Path) -> io::Result<()> {
    let mut fs = env.fs();
    fs.create_dir_all(pgdata)?;
    fs.create_dir_all(&pgdata.join("pg_wal"))?;
    fs.write(&pgdata.join("PG_VERSION"), b"15\n")?;
    fs.write(&pgdata.join("postgresql.conf"), b"# initdb defaults\n")?;
    fs.write(&pgdata.join("pg_hba.conf"), b"local all all trust\n")?;
    Ok(())
}

fn pgdata_arg(cmd: &CommandSpec) -> Option<PathBuf> {
    arg_value(&cmd.args, "-D", "--pgdata").map(PathBuf::from)
}

async fn initdb(env: &SimEnv, cmd: &CommandSpec) -> ProcessOutput {
    let Some(pgdata) = pgdata_arg(cmd) else {
        return exited(1, "", "initdb: error: no data directory specified\n");
    };
    if env.fs().exists(&pgdata.join("PG_VERSION")) {
        return exited(
            1,
            "",
            format!(
                "initdb: error: directory \"{}\" exists but is not empty\n",
                pgdata.display()
            ),
        );
    }
    env.sleep(env.jitter(30, 120)).await;
    if let Err(e) = lay_out_pgdata(env, &pgdata) {
        return exited(1, "", format!("initdb: error: {e}\n"));
    }
    let superuser = arg_value(&cmd.args, "-U", "--username").unwrap_or_else(|| "postgres".into());
    {
        let mut sh = env.shared().lock();
        sh.catalog.reset(&superuser);
        sh.wal.compute = crate::wal::ComputeWal::default();
    }
    exited(0, "Success.\n", "")
}

/// Where `pg_basebackup -d CONNSTR` (or `-h/-p`) points.
fn basebackup_source(cmd: &CommandSpec) -> (String, u16) {
    let mut host = arg_value(&cmd.args, "-h", "--host");
    let mut port = arg_value(&cmd.args, "-p", "--port").and_then(|p| p.parse().ok());
    if let Some(connstr) = arg_value(&cmd.args, "-d", "--dbname") {
        if let Ok(cfg) = connstr.parse::<tokio_postgres::Config>() {
            if let Some(tokio_postgres::config::Host::Tcp(h)) = cfg.get_hosts().first() {
                host = Some(h.clone());
            }
            if let Some(p) = cfg.get_ports().first() {
                port = Some(*p);
            }
        }
    }
    (
        host.unwrap_or_else(|| "storage".into()),
        port.unwrap_or(STORAGE_PORT),
    )
}

/// How long the simulated TCP keeps retransmitting an unanswered request
/// (a stand-in for the kernel's retransmission timeout).
const RETRANSMIT_FOR: std::time::Duration = std::time::Duration::from_secs(60);
const RETRANSMIT_EVERY: std::time::Duration = std::time::Duration::from_millis(300);

/// Asks storage for a base backup. turmoil loses the data of an established
/// stream sent into a partition for good (the stream never recovers), where
/// real TCP would retransmit once the partition heals; so an unanswered
/// exchange is retried on a fresh connection, for at most
/// [`RETRANSMIT_FOR`] (then "connection timed out", as TCP would).
async fn fetch_base_backup(host: &str, port: u16, connect_timeout: Option<u64>) -> io::Result<()> {
    use crate::world::env::SimClock;
    let mut waited = std::time::Duration::ZERO;
    loop {
        let s = connect(host, port, connect_timeout).await?;
        let (r, mut w) = s.into_split();
        let mut r = tokio::io::BufReader::new(r);
        let mut line = String::new();
        let exchange = async {
            w.write_all(b"BASEBACKUP\n").await?;
            tokio::io::AsyncBufReadExt::read_line(&mut r, &mut line).await
        };
        match compute_ctl::env::timeout(&SimClock, RETRANSMIT_EVERY, exchange).await {
            Ok(Ok(0)) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection unexpectedly",
                ));
            }
            Ok(Ok(_)) if line.starts_with("OK") => return Ok(()),
            Ok(Ok(_)) => return Err(io::Error::other("storage answered with garbage")),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                waited += RETRANSMIT_EVERY;
                if waited >= RETRANSMIT_FOR {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connection timed out",
                    ));
                }
            }
        }
    }
}

/// Connects as libpq does with `PGCONNECT_TIMEOUT`: turmoil loses a SYN
/// sent into a partition for good, where TCP would re-send it, so attempts
/// are repeated (each bounded) until the connect timeout (none: forever).
async fn connect(
    host: &str,
    port: u16,
    timeout_secs: Option<u64>,
) -> io::Result<turmoil::net::TcpStream> {
    use crate::world::env::SimClock;
    let limit = timeout_secs
        .filter(|s| *s > 0)
        .map(std::time::Duration::from_secs);
    let mut waited = std::time::Duration::ZERO;
    loop {
        let attempt = turmoil::net::TcpStream::connect((host, port));
        match compute_ctl::env::timeout(&SimClock, std::time::Duration::from_secs(1), attempt).await
        {
            Ok(r) => return r,
            Err(_) => {
                waited += std::time::Duration::from_secs(1);
                if limit.is_some_and(|l| waited >= l) {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "timeout expired"));
                }
            }
        }
    }
}

async fn basebackup(env: &SimEnv, cmd: &CommandSpec) -> ProcessOutput {
    let Some(pgdata) = pgdata_arg(cmd) else {
        return exited(
            1,
            "",
            "pg_basebackup: error: no target directory specified\n",
        );
    };
    let (host, port) = basebackup_source(cmd);
    let connect_timeout = cmd
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PGCONNECT_TIMEOUT")
        .and_then(|(_, v)| v.parse().ok());
    let fetched = fetch_base_backup(&host, port, connect_timeout).await;
    env.shared().event(
        "basebackup",
        serde_json::json!({"ok": fetched.is_ok(), "error": fetched.as_ref().err().map(|e| e.to_string())}),
    );
    if let Err(e) = fetched {
        return exited(
            1,
            "",
            format!(
                "pg_basebackup: error: could not connect to server at \"{host}\" port {port}: {e}\n"
            ),
        );
    }
    if let Err(e) = lay_out_pgdata(env, &pgdata) {
        return exited(1, "", format!("pg_basebackup: error: {e}\n"));
    }
    // The copy holds the source's WAL as it is now (`crate::wal`).
    {
        let world = env.shared().lock().storage_world.clone();
        let wal = match world {
            Some(w) => w
                .lock()
                .wal
                .source(&host)
                .map(crate::wal::Wal::replayed_view),
            None => env
                .shared()
                .lock()
                .wal
                .source(&host)
                .map(crate::wal::Wal::replayed_view),
        }
        .unwrap_or_default();
        let mut sh = env.shared().lock();
        sh.wal.compute = crate::wal::ComputeWal {
            wal,
            ..Default::default()
        };
    }
    exited(0, "", "")
}
