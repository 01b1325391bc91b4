//! The storage rows: how long after a notify's answer a replica streams
//! from its new source (held to ≤ 1 s, with the restarts counted: 0), and
//! what syncing 3 safekeepers costs against one
//! `pg_current_wal_flush_lsn()` round trip.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use compute_ctl::env::TokioEnv;
use serde_json::json;

use crate::cases::{Plan, ports};
use crate::compute::{Compute, SUPERUSER};
use crate::postgres::{self, ByHand, Scratch, session, tool};
use crate::stats::{CaseResult, Summary};

const START_LIMIT: Duration = Duration::from_secs(120);
const STREAM_LIMIT: Duration = Duration::from_secs(10);

fn connstr(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user={SUPERUSER} dbname=postgres")
}

/// A storage cluster made by hand: a primary, or a standby of `of`.
struct Storage {
    port: u16,
    _by_hand: Option<ByHand>,
    standby: Option<(Scratch, std::path::PathBuf)>,
}

impl Storage {
    fn primary(port: u16) -> anyhow::Result<Self> {
        let (mut pg, _) = ByHand::initdb(port, SUPERUSER)?;
        pg.configure("wal_keep_size = '256MB'\nfsync = off")?;
        pg.start()?;
        Ok(Self {
            port,
            _by_hand: Some(pg),
            standby: None,
        })
    }

    fn standby_of(primary: &Storage, port: u16) -> anyhow::Result<Self> {
        let scratch = Scratch::new("standby")?;
        let pgdata = scratch.path("pgdata");
        let mut c = tool("pg_basebackup");
        c.arg("-D").arg(&pgdata).args([
            "-d",
            &connstr(primary.port),
            "-R",
            "--checkpoint=fast",
            "--no-sync",
        ]);
        postgres::run(c)?;
        let conf = pgdata.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)?;
        text.push_str(&format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\n"
        ));
        std::fs::write(&conf, text)?;
        let mut c = tool("pg_ctl");
        c.arg("-D")
            .arg(&pgdata)
            .args(["-w", "-l"])
            .arg(pgdata.join("log"))
            .arg("start")
            .stdout(Stdio::null());
        postgres::run(c)?;
        Ok(Self {
            port,
            _by_hand: None,
            standby: Some((scratch, pgdata)),
        })
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some((_, pgdata)) = &self.standby {
            let mut c = tool("pg_ctl");
            c.arg("-D")
                .arg(pgdata)
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = c.status();
        }
    }
}

/// Polls the replica until its WAL receiver streams from `port`.
async fn wait_streaming_from(client: &tokio_postgres::Client, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + STREAM_LIMIT;
    loop {
        let rows = client
            .simple_query("SELECT status, sender_port FROM pg_stat_wal_receiver")
            .await?;
        let streaming = rows.iter().any(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                r.get(0) == Some("streaming") && r.get(1) == Some(port.to_string().as_str())
            }
            _ => false,
        });
        if streaming {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the replica does not stream from port {port} after {STREAM_LIMIT:?}");
        }
        tokio::task::yield_now().await;
    }
}

/// Notify → streaming from the new source, and 3-safekeeper sync vs one round trip.
pub async fn storage(plan: Plan) -> anyhow::Result<Vec<CaseResult>> {
    let (a_port, _) = ports();
    let (b_port, _) = ports();
    let a = Storage::primary(a_port).context("storage A")?;
    let b = Storage::standby_of(&a, b_port).context("storage B")?;
    let (pg_port, http_port) = ports();
    let mut spec = crate::specs::sized(plan.notify_roles[0], 1, 0, "storage-start");
    spec["mode"] = json!("Replica");
    spec["pageserver_connstring"] = json!(connstr(a.port));
    let mut compute = Compute::spawn(&spec, pg_port, http_port)?;
    compute.wait_running(START_LIMIT).await?;
    let replica = session(pg_port, SUPERUSER, "postgres").await?;
    wait_streaming_from(&replica, a.port).await?;
    let pid0 = postgres::postmaster_pid(&compute.pgdata)?;

    let mut samples = Vec::new();
    let reps = plan.reps.max(2) * 2;
    for i in 0..reps {
        let to = if i % 2 == 0 { b.port } else { a.port };
        let mut notify = spec.clone();
        notify["operation_uuid"] = json!(format!("storage-move-{i}"));
        notify["skip_pg_catalog_updates"] = json!(true);
        notify["pageserver_connstring"] = json!(connstr(to));
        let body = Compute::configure_body(&notify)?;
        let (code, answer) = compute.configure_raw(body).await?;
        let answered = Instant::now();
        if code != 200 {
            bail!("move {i}: {code} {answer}");
        }
        wait_streaming_from(&replica, to).await?;
        samples.push(answered.elapsed().as_secs_f64() * 1000.0);
    }
    let restarts = u32::from(postgres::postmaster_pid(&compute.pgdata)? != pid0);
    let ours = Summary::of(&samples);
    let max_ms = samples.iter().copied().fold(0.0, f64::max);
    let mut move_row = CaseResult::new("storage", "notify -> streams from new source", ours, None)
        .with_extra(json!({"moves": reps, "max_ms": max_ms, "postmaster_restarts": restarts}));
    move_row.target = "<= 1000 ms, 0 restarts";
    move_row.met = Some(max_ms <= 1000.0 && restarts == 0);

    // Sync of 3 safekeepers (A, B, A again: three sessions) vs one round trip.
    let env = TokioEnv::new();
    let sks = vec![connstr(a.port), connstr(b.port), connstr(a.port)];
    let mut ours = Vec::new();
    let mut floor = Vec::new();
    for _ in 0..plan.reps.max(3) * 3 {
        let t = Instant::now();
        let (client, conn) =
            tokio_postgres::connect(&connstr(a.port), tokio_postgres::NoTls).await?;
        let c = tokio::spawn(conn);
        client
            .simple_query("SELECT pg_current_wal_flush_lsn()")
            .await?;
        drop(client);
        let _ = c.await;
        floor.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let out =
            compute_ctl::storage::sync_safekeepers(&env, &sks, SUPERUSER, Duration::from_secs(5))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        ours.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(out.commit_lsn);
    }
    let sync_row = CaseResult::new(
        "storage",
        "sync 3 safekeepers",
        Summary::of(&ours),
        Some(Summary::of(&floor)),
    )
    .ratio_target("<= 2x one flush-LSN round trip", 2.0);
    drop(compute);
    drop(b);
    drop(a);
    Ok(vec![move_row, sync_row])
}
