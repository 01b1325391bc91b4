//! What the simulated Postgres of a primary with safekeepers answers: the
//! statements compute_ctl's durable start sends its own Postgres
//! (`POSITION_SQL` while it catches up, `pg_promote()`, `ALTER SYSTEM
//! RESET ALL`, the timeline read, `STAT_REPLICATION_SQL`) and the client
//! load's commits and read-back (parsed by `crate::pgmodel::durable`), over
//! the WAL model of [`crate::wal`].
//!
//! A commit (`INSERT INTO acked VALUES (id) RETURNING lsn`) writes a record
//! and returns only once [`crate::wal::commit_acknowledged`] holds for the
//! loaded `synchronous_commit` / `synchronous_standby_names`, as a backend
//! waits in `SyncRepWaitForLSN`; a read-only (recovering) server refuses it.

use std::path::Path;
use std::time::Duration;

use compute_ctl::env::Clock;
use compute_ctl::storage::Lsn;

use super::exec::Reply;
use crate::pgmodel::catalog::PgErr;
use crate::pgmodel::durable::Durable;
use crate::world::env::SimEnv;

fn row(cols: &[&str], vals: Vec<Option<String>>) -> Reply {
    Reply::Rows {
        columns: cols.iter().map(|c| c.to_string()).collect(),
        rows: vec![vals],
        tag: "SELECT 1".into(),
    }
}

fn lsn(v: u64) -> Option<String> {
    Some(Lsn(v).to_string())
}

/// How often a waiting commit looks at its WAL senders again.
const SYNC_POLL: Duration = Duration::from_millis(5);

pub async fn run(env: &SimEnv, pgdata: &Path, d: Durable) -> Result<Reply, PgErr> {
    let shared = env.shared();
    match d {
        Durable::Position => {
            let sh = shared.lock();
            let c = &sh.wal.compute;
            let end = c.wal.end();
            let r = if c.in_recovery { "t" } else { "f" };
            Ok(row(
                &["pg_is_in_recovery", "flushed", "replayed"],
                vec![Some(r.into()), lsn(end), lsn(end)],
            ))
        }
        Durable::NewestTimeline => {
            let (cols, vals) =
                crate::world::safekeeper::newest_timeline_row(&shared.lock().wal.compute.wal, None);
            Ok(row(&cols, vals))
        }
        Durable::Promote => {
            let (tli, fork) = {
                let mut sh = shared.lock();
                let c = &mut sh.wal.compute;
                if !c.in_recovery {
                    return Err(PgErr::new("55000", "recovery is not in progress"));
                }
                c.in_recovery = false;
                // pg_promote() takes the number after the newest history
                // file of an unbroken run in pg_wal (`findNewestTimeLine`).
                let mut reserved = c.wal.tli;
                let fs = env.fs();
                while fs.exists(
                    &pgdata
                        .join("pg_wal")
                        .join(compute_ctl::storage::history_file_name(reserved + 1)),
                ) {
                    reserved += 1;
                }
                drop(fs);
                sh.wal.promotions += 1;
                let salt = sh.wal.promotions;
                let boot = sh.boot;
                let c = &mut sh.wal.compute;
                let (tli, fork) = c.wal.promote_past(reserved, salt);
                c.primary_since = Some(fork);
                c.promoted_boot = Some(boot);
                (tli, fork)
            };
            shared.event(
                "pg_promoted",
                serde_json::json!({"timeline": tli, "fork_lsn": Lsn(fork).to_string()}),
            );
            Ok(row(&["pg_promote"], vec![Some("t".into())]))
        }
        Durable::ResetAll => {
            env.fs()
                .write(&pgdata.join("postgresql.auto.conf"), b"")
                .map_err(|e| {
                    PgErr::new(
                        "58030",
                        format!("could not write postgresql.auto.conf: {e}"),
                    )
                })?;
            Ok(Reply::Command {
                tag: "ALTER SYSTEM".into(),
                write: false,
            })
        }
        Durable::InRecovery => {
            let r = shared.lock().wal.compute.in_recovery;
            Ok(row(
                &["pg_is_in_recovery"],
                vec![Some(if r { "t" } else { "f" }.into())],
            ))
        }
        Durable::Timeline => {
            let sh = shared.lock();
            let c = &sh.wal.compute;
            // Timeline 1 has no history file.
            let history = (!c.wal.history.is_empty()).then(|| c.wal.history_file());
            Ok(row(
                &["pg_is_in_recovery", "t", "pg_read_file"],
                vec![
                    Some(if c.in_recovery { "t" } else { "f" }.into()),
                    Some(format!("{:08X}", c.wal.tli)),
                    history,
                ],
            ))
        }
        Durable::WalfileName(lsn) => {
            // 16 MB segments; the segment of the byte before `lsn`.
            let tli = shared.lock().wal.compute.wal.tli;
            let segment = lsn.saturating_sub(1) >> 24;
            Ok(row(
                &["pg_walfile_name"],
                vec![Some(format!(
                    "{tli:08X}{:08X}{:08X}",
                    segment >> 8,
                    segment & 0xFF
                ))],
            ))
        }
        Durable::StatReplication => {
            let sh = shared.lock();
            let senders: Vec<serde_json::Value> = sh
                .wal
                .compute
                .senders
                .iter()
                .map(|(name, s)| {
                    let l = Lsn(s.flush).to_string();
                    serde_json::json!({"name": name, "state": "streaming", "flush": l, "replay": l})
                })
                .collect();
            Ok(row(
                &["coalesce"],
                vec![Some(serde_json::Value::Array(senders).to_string())],
            ))
        }
        Durable::ShowStandbyNames => {
            let sh = shared.lock();
            let conf = crate::pgmodel::guc::parse_conf(sh.loaded_config.as_deref().unwrap_or(""));
            let v = conf
                .get("synchronous_standby_names")
                .cloned()
                .unwrap_or_default();
            Ok(row(&["synchronous_standby_names"], vec![Some(v)]))
        }
        Durable::FlushLsn => {
            let sh = shared.lock();
            let c = &sh.wal.compute;
            if c.in_recovery {
                return Err(PgErr::new(
                    "55000",
                    "recovery is in progress: WAL control functions cannot be executed during recovery",
                ));
            }
            Ok(row(&["pg_current_wal_flush_lsn"], vec![lsn(c.wal.end())]))
        }
        Durable::Checkpoint => Ok(Reply::Command {
            tag: "CHECKPOINT".into(),
            write: false,
        }),
        Durable::ReadAcked => {
            let ids = shared.lock().wal.compute.wal.ids();
            let joined: Vec<String> = ids.iter().map(u64::to_string).collect();
            Ok(row(&["string_agg"], vec![Some(joined.join(","))]))
        }
        Durable::Commit(id) => {
            let at = {
                let mut sh = shared.lock();
                if sh.wal.compute.in_recovery {
                    return Err(PgErr::new(
                        "25006",
                        "cannot execute INSERT in a read-only transaction",
                    ));
                }
                if sh.wal.compute.shutting_down {
                    return Err(PgErr::new(
                        "57P01",
                        "terminating connection due to administrator command",
                    ));
                }
                sh.wal.compute.wal.append(id).lsn
            };
            loop {
                let acked = {
                    let sh = shared.lock();
                    let conf =
                        crate::pgmodel::guc::parse_conf(sh.loaded_config.as_deref().unwrap_or(""));
                    crate::wal::commit_acknowledged(&conf, &sh.wal.compute.senders, at)
                };
                if acked {
                    return Ok(row(&["lsn"], vec![lsn(at)]));
                }
                env.sleep(SYNC_POLL).await;
            }
        }
    }
}
