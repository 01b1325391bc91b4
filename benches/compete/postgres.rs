//! Postgres by hand: the floors are what a person would do with the stock
//! tools (initdb, pg_ctl, psql, kill -HUP), measured on this machine in the
//! same run as compute_ctl.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub const PGBIN: &str = "/usr/lib/postgresql/15/bin";

/// The uid/gid Postgres must run as when we are root.
pub fn postgres_identity() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let u = nix::unistd::User::from_name("postgres").ok().flatten()?;
    Some((u.uid.as_raw(), u.gid.as_raw()))
}

/// A stock Postgres tool, run as the postgres user when we are root.
pub fn tool(name: &str) -> Command {
    let mut c = Command::new(Path::new(PGBIN).join(name));
    if let Some((uid, gid)) = postgres_identity() {
        c.uid(uid).gid(gid);
    }
    c.stdin(Stdio::null());
    c
}

pub fn run(mut c: Command) -> anyhow::Result<()> {
    let out = c.output().with_context(|| format!("running {c:?}"))?;
    if !out.status.success() {
        bail!("{c:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A scratch directory the postgres user can use; removed on drop.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        Self::new_in("/tmp", tag)
    }

    /// A scratch directory under `parent` (e.g. tmpfs, where fsync is free).
    pub fn new_in(parent: &str, tag: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("compute_ctl-bench-{tag}-"))
            .tempdir_in(parent)?;
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )?;
        Ok(Self { dir })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A Postgres cluster made by hand with initdb and pg_ctl.
pub struct ByHand {
    pub pgdata: PathBuf,
    pub port: u16,
    _scratch: Scratch,
    started: bool,
}

impl ByHand {
    /// `initdb` with the flags compute_ctl uses, timed.
    pub fn initdb(port: u16, superuser: &str) -> anyhow::Result<(Self, Duration)> {
        let scratch = Scratch::new("floor")?;
        let pgdata = scratch.path("pgdata");
        let t = Instant::now();
        let mut c = tool("initdb");
        c.arg("-D").arg(&pgdata).args([
            "-U",
            superuser,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--data-checksums",
            "--no-sync",
        ]);
        c.stdout(Stdio::null());
        run(c)?;
        Ok((
            Self {
                pgdata,
                port,
                _scratch: scratch,
                started: false,
            },
            t.elapsed(),
        ))
    }

    /// Appends settings to postgresql.conf (as compute_ctl would write them).
    pub fn configure(&self, extra: &str) -> anyhow::Result<()> {
        append_conf(&self.pgdata, self.port, extra)
    }

    /// `pg_ctl start -w`, timed.
    pub fn start(&mut self) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let mut c = tool("pg_ctl");
        c.arg("-D")
            .arg(&self.pgdata)
            .args(["-w", "-l"])
            .arg(self.pgdata.join("log"))
            .arg("start");
        c.stdout(Stdio::null());
        run(c)?;
        self.started = true;
        Ok(t.elapsed())
    }
}

impl Drop for ByHand {
    fn drop(&mut self) {
        if self.started {
            let mut c = tool("pg_ctl");
            c.arg("-D")
                .arg(&self.pgdata)
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = c.status();
        }
    }
}

/// The postmaster's pid, from postmaster.pid.
pub fn postmaster_pid(pgdata: &Path) -> anyhow::Result<i32> {
    let text =
        std::fs::read_to_string(pgdata.join("postmaster.pid")).context("reading postmaster.pid")?;
    Ok(text.lines().next().unwrap_or_default().trim().parse()?)
}

/// How a by-hand reload writes `postgresql.conf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Temp file, rename: what compute_ctl does (PGDATA never outlives a crash).
    Atomic,
    /// Temp file, fsync, rename, fsync of the directory: what compute_ctl
    /// did before (kept as a column: the price of durability).
    Durable,
}

/// Where the time of a by-hand reload went, in ms.
#[derive(Debug, Clone, Copy)]
pub struct ReloadSplit {
    /// Read, edit and write of the file, up to and with the rename.
    pub write_ms: f64,
    /// The kill(2) of SIGHUP.
    pub signal_ms: f64,
}

/// Rewrites `name = ...` in postgresql.conf and signals the postmaster: the
/// by-hand reload.
pub fn set_and_reload(
    pgdata: &Path,
    name: &str,
    value: &str,
    how: Write,
) -> anyhow::Result<ReloadSplit> {
    let t = Instant::now();
    let conf = pgdata.join("postgresql.conf");
    let text = std::fs::read_to_string(&conf)?;
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        if !line.trim_start().starts_with(&format!("{name} "))
            && !line.trim_start().starts_with(&format!("{name}="))
        {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!("{name} = '{value}'\n"));
    let tmp = conf.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut f, out.as_bytes())?;
    if how == Write::Durable {
        f.sync_all()?;
    }
    drop(f);
    std::fs::rename(&tmp, &conf)?;
    if how == Write::Durable {
        std::fs::File::open(pgdata)?.sync_all()?;
    }
    let pid = postmaster_pid(pgdata)?;
    let written = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )?;
    Ok(ReloadSplit {
        write_ms: (written - t).as_secs_f64() * 1000.0,
        signal_ms: written.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Connects a fresh session.
pub async fn session(port: u16, user: &str, db: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user={user} dbname={db}"),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(conn);
    Ok(client)
}

/// The value `SHOW name` returns in `client`'s session.
async fn show(client: &tokio_postgres::Client, name: &str) -> anyhow::Result<Option<String>> {
    let rows = client.simple_query(&format!("SHOW {name}")).await?;
    Ok(rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    }))
}

/// A session held open, as a pooled client of the compute holds one: it
/// sees a reload at its next statement (a backend re-reads the config
/// files when it takes the next command after the postmaster's SIGHUP).
pub struct Watcher {
    client: tokio_postgres::Client,
}

impl Watcher {
    pub async fn connect(port: u16, user: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: session(port, user, "postgres").await?,
        })
    }

    /// Polls `SHOW name` in this session until it returns `value`; fails
    /// after `limit`.
    pub async fn wait_visible(
        &self,
        name: &str,
        value: &str,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let seen = show(&self.client, name).await?;
            if seen.as_deref() == Some(value) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{name} still {seen:?}, not {value:?}, after {limit:?} (persistent session)");
            }
        }
    }
}

/// Polls fresh sessions until `SHOW name` returns `value`; fails after
/// `limit`. Each poll pays a backend fork and an authentication: the
/// fresh-session column of the notify suite, not its floor.
pub async fn wait_visible_fresh(
    port: u16,
    user: &str,
    name: &str,
    value: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let c = session(port, user, "postgres").await?;
        let seen = show(&c, name).await?;
        if seen.as_deref() == Some(value) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name} still {seen:?}, not {value:?}, after {limit:?}");
        }
    }
}

/// Appends `extra` to `pgdata`'s postgresql.conf, with `port` and loopback
/// as the listen address.
pub fn append_conf(pgdata: &std::path::Path, port: u16, extra: &str) -> anyhow::Result<()> {
    let conf = pgdata.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf)?;
    text.push_str(&format!(
        "\nport = {port}\nlisten_addresses = '127.0.0.1'\n{extra}\n"
    ));
    std::fs::write(&conf, text)?;
    Ok(())
}
