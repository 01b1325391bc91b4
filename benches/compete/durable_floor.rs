//! The durable primary by hand, with the stock tools: clusters made with
//! initdb and `pg_basebackup -R`, started and stopped with `pg_ctl`, and
//! the start sequence a person would run to resume a primary from its
//! safekeepers (ask each how far it flushed, `pg_basebackup` from the most
//! advanced, start as its standby, `pg_promote(false)` and a poll of
//! `pg_is_in_recovery()`, re-point every
//! safekeeper with `ALTER SYSTEM SET primary_conninfo` + reload, until a
//! quorum streams and has flushed WAL of the new timeline, as compute_ctl
//! waits for). SQL goes over tokio-postgres sessions (one round trip
//! each, cheaper than a psql process: a stricter floor).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use compute_ctl::storage::Lsn;

use crate::compute::SUPERUSER;
use crate::postgres::{self, Scratch, session, tool};

/// Settings of every cluster of the durable suite (bootstrap, safekeepers,
/// the by-hand primaries and standbys): the spec's (`specs::sized`) plus
/// what streaming standbys need. The same on both sides of every pair.
pub const SETTINGS: &str = "max_connections = 200\nshared_buffers = '128MB'\nfsync = off\n\
work_mem = '4MB'\nwal_keep_size = '256MB'\nwal_retrieve_retry_interval = '200ms'\n\
max_wal_senders = 10\n";

/// How often a wait polls (ours and the floor alike).
pub const POLL: Duration = Duration::from_millis(5);

pub fn connstr(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user={SUPERUSER} dbname=postgres")
}

/// The `application_name` a safekeeper streams under (compute_ctl's name
/// for `127.0.0.1:port`; the by-hand side uses the same names).
pub fn sk_name(port: u16) -> String {
    format!("sk_127_0_0_1_{port}")
}

/// `ANY 2 (names)`: the quorum of three.
pub fn any_2_of(ports: &[u16]) -> String {
    let names: Vec<String> = ports
        .iter()
        .map(|p| format!("\"{}\"", sk_name(*p)))
        .collect();
    format!("ANY {} ({})", ports.len() / 2 + 1, names.join(", "))
}

/// A Postgres cluster on its own PGDATA, stopped (immediate) on drop.
pub struct Cluster {
    pub port: u16,
    pub pgdata: PathBuf,
    _scratch: Scratch,
    running: bool,
}

impl Cluster {
    /// initdb + the suite's settings, started.
    pub fn primary(port: u16) -> anyhow::Result<Self> {
        let scratch = Scratch::new("durable")?;
        let pgdata = scratch.path("pgdata");
        let mut c = tool("initdb");
        c.arg("-D").arg(&pgdata).args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]);
        c.stdout(Stdio::null());
        postgres::run(c)?;
        let mut me = Self {
            port,
            pgdata,
            _scratch: scratch,
            running: false,
        };
        me.append_conf(SETTINGS)?;
        me.start()?;
        Ok(me)
    }

    /// `pg_basebackup -R` of `source` into a new PGDATA (not started); the
    /// standby streams from `source` under `app`.
    pub fn base_backup(source: u16, port: u16, app: &str) -> anyhow::Result<Self> {
        let scratch = Scratch::new("durable")?;
        let pgdata = scratch.path("pgdata");
        let mut c = tool("pg_basebackup");
        c.arg("-D").arg(&pgdata).args([
            "-d",
            &format!("{} application_name={app}", connstr(source)),
            "-R",
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-sync",
            "--no-manifest",
        ]);
        postgres::run(c)?;
        Ok(Self {
            port,
            pgdata,
            _scratch: scratch,
            running: false,
        })
    }

    /// A started standby of `source`, streaming under `app`.
    pub fn standby_of(source: u16, port: u16, app: &str) -> anyhow::Result<Self> {
        let mut me = Self::base_backup(source, port, app)?;
        me.append_conf("")?;
        me.start()?;
        Ok(me)
    }

    /// Appends to postgresql.conf, with this cluster's port.
    pub fn append_conf(&self, extra: &str) -> anyhow::Result<()> {
        postgres::append_conf(&self.pgdata, self.port, extra)
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        self.pg_ctl_start(&["-w", "-t", "120"])
    }

    /// `pg_ctl start` without `-w`: the by-hand start then polls for a
    /// session every [`POLL`] as ours does, instead of `pg_ctl -w`'s checks
    /// every 100 ms, which would pad the floor's start by up to 100 ms.
    pub fn start_no_wait(&mut self) -> anyhow::Result<()> {
        self.pg_ctl_start(&["-W"])
    }

    fn pg_ctl_start(&mut self, wait: &[&str]) -> anyhow::Result<()> {
        let mut c = tool("pg_ctl");
        c.arg("-D")
            .arg(&self.pgdata)
            .args(wait)
            .arg("-l")
            .arg(self.pgdata.join("log"))
            .arg("start")
            .stdout(Stdio::null());
        postgres::run(c)?;
        self.running = true;
        Ok(())
    }

    /// `pg_ctl stop` in `mode` (fast waits for the WAL senders).
    pub fn stop(&mut self, mode: &str) -> anyhow::Result<()> {
        if !self.running {
            return Ok(());
        }
        let mut c = tool("pg_ctl");
        c.arg("-D")
            .arg(&self.pgdata)
            .args(["-m", mode, "-w", "stop"])
            .stdout(Stdio::null());
        postgres::run(c)?;
        self.running = false;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop("immediate");
    }
}

/// The first column of the first row of `sql`, as text.
pub async fn value(client: &tokio_postgres::Client, sql: &str) -> anyhow::Result<String> {
    let rows = client.simple_query(sql).await?;
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .with_context(|| format!("no row from {sql}"))
}

/// How many of `names` stream from the primary behind `client` in quorum
/// (or sync) state, with flush at or past `lsn` (any, without one).
pub async fn in_quorum(
    client: &tokio_postgres::Client,
    names: &[String],
    lsn: Option<&str>,
) -> anyhow::Result<usize> {
    let list: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    let past = lsn
        .map(|l| format!(" AND flush_lsn >= '{l}'"))
        .unwrap_or_default();
    let sql = format!(
        "SELECT count(*) FROM pg_stat_replication WHERE application_name IN ({}) \
         AND state = 'streaming' AND sync_state IN ('quorum', 'sync'){past}",
        list.join(", ")
    );
    Ok(value(client, &sql).await?.parse()?)
}

/// Polls until `need` of `names` stream in quorum state; fails after `limit`.
pub async fn wait_quorum(
    client: &tokio_postgres::Client,
    names: &[String],
    need: usize,
    lsn: Option<&str>,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if in_quorum(client, names, lsn).await? >= need {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{need} of {names:?} not streaming in quorum after {limit:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The by-hand start of a primary from its safekeepers, timed from its
/// first step to a quorum streaming. Returns the running primary and the
/// time of each step, ms: sync, basebackup, start, catch_up, promote,
/// announce, quorum.
pub async fn start_by_hand(
    sks: &[u16],
    port: u16,
    limit: Duration,
) -> anyhow::Result<(Cluster, [f64; 7])> {
    let mut steps = [0.0; 7];
    let mut t = Instant::now();
    let mut lap = |i: usize, t: &mut Instant| {
        steps[i] = t.elapsed().as_secs_f64() * 1000.0;
        *t = Instant::now();
    };
    // 1. Ask each safekeeper how far its WAL is; the most advanced wins.
    let mut best: Option<(u16, String)> = None;
    for &sk in sks {
        let c = session(sk, SUPERUSER, "postgres").await?;
        let lsn = value(
            &c,
            "SELECT greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())",
        )
        .await?;
        let ahead = match &best {
            None => true,
            Some((_, b)) => {
                value(&c, &format!("SELECT '{lsn}'::pg_lsn > '{b}'::pg_lsn")).await? == "t"
            }
        };
        if ahead {
            best = Some((sk, lsn));
        }
    }
    let (source, target) = best.context("no safekeeper")?;
    lap(0, &mut t);
    // 2. The base backup from it, as its standby.
    let mut pg = Cluster::base_backup(source, port, "by_hand_primary")?;
    pg.append_conf(&format!("synchronous_standby_names = '{}'", any_2_of(sks)))?;
    lap(1, &mut t);
    // 3. Start as a standby, and connect as soon as it lets us in.
    pg.start_no_wait()?;
    let deadline = Instant::now() + limit;
    let client = loop {
        match session(port, SUPERUSER, "postgres").await {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => {
                bail!("the by-hand primary let no session in within {limit:?}: {e}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    };
    lap(2, &mut t);
    // 4. Replay up to the most advanced safekeeper's WAL; where it stopped
    // is where the new timeline starts.
    let target: Lsn = target.parse()?;
    let deadline = Instant::now() + limit;
    let fork = loop {
        // NULL (nothing replayed yet) reads as 0/0: not there yet.
        let replayed: Lsn = value(
            &client,
            "SELECT COALESCE(pg_last_wal_replay_lsn(), '0/0')::text",
        )
        .await?
        .parse()?;
        if replayed >= target {
            break replayed;
        }
        if Instant::now() > deadline {
            bail!("the by-hand primary did not replay to {target} within {limit:?}");
        }
        tokio::time::sleep(POLL).await;
    };
    lap(3, &mut t);
    // 5. Promote onto a new timeline: signal it, then poll every POLL
    // until recovery ends (`pg_promote(true)` and `pg_ctl promote` look
    // only every 100 ms, a wait that would pad both sides).
    if value(&client, "SELECT pg_promote(false)").await? != "t" {
        bail!("pg_promote() of the by-hand primary failed");
    }
    let deadline = Instant::now() + limit;
    while value(&client, "SELECT pg_is_in_recovery()").await? != "f" {
        if Instant::now() > deadline {
            bail!("the by-hand primary did not leave recovery within {limit:?}");
        }
        tokio::time::sleep(POLL).await;
    }
    lap(4, &mut t);
    // 6. Re-point every safekeeper at it, all at once.
    let mut tasks = Vec::new();
    for &sk in sks {
        tasks.push(tokio::spawn(async move {
            let c = session(sk, SUPERUSER, "postgres").await?;
            c.batch_execute(&format!(
                "ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port={port} user={SUPERUSER} application_name={}'",
                sk_name(sk)
            ))
            .await?;
            c.simple_query("SELECT pg_reload_conf()").await?;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    lap(5, &mut t);
    // 7. Until a quorum streams and has flushed past the fork: a sender
    // reads `streaming` while it sends a safekeeper the old timeline's tail,
    // before the safekeeper switches to ours and could acknowledge a commit
    // (compute_ctl waits for the same, `storage/quorum.rs`).
    let names: Vec<String> = sks.iter().map(|p| sk_name(*p)).collect();
    let past = Lsn(fork.0 + 1).to_string();
    wait_quorum(&client, &names, sks.len() / 2 + 1, Some(&past), limit).await?;
    lap(6, &mut t);
    Ok((pg, steps))
}
