//! The statements a primary with safekeepers is sent, as data: those of
//! compute_ctl's durable start (`POSITION_SQL`, `pg_promote()`, `ALTER
//! SYSTEM RESET ALL`, the timeline reads, `STAT_REPLICATION_SQL`) and the
//! client load's commits and read-back, which the load writes and the
//! world's Postgres (`world::pg::durable`) parses back and answers.

use compute_ctl::storage::{
    IN_RECOVERY_SQL, NEWEST_TIMELINE_SQL, POSITION_SQL, RECOVERY_AND_TIMELINE_SQL,
    STAT_REPLICATION_SQL,
};

/// The statements of a primary with safekeepers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durable {
    Position,
    Promote,
    ResetAll,
    Timeline,
    /// `IN_RECOVERY_SQL` (a promotion's poll for the end of recovery).
    InRecovery,
    /// `NEWEST_TIMELINE_SQL` (a promote asks its own Postgres what
    /// timeline its WAL follows, as the safekeepers are asked).
    NewestTimeline,
    StatReplication,
    /// A client commit with its id.
    Commit(u64),
    /// The client's read-back of every commit it holds.
    ReadAcked,
    /// `SHOW synchronous_standby_names`: the value the last (re)load took,
    /// which the commits wait by (a safekeeper move checks its joint
    /// quorum is in force; a promote, the primary's quorum).
    ShowStandbyNames,
    /// `SELECT pg_current_wal_flush_lsn()::text` (a safekeeper move's target).
    FlushLsn,
    /// `CHECKPOINT` (a restartpoint on a standby): the simulated server
    /// reads a reload at once, so it only answers.
    Checkpoint,
    /// `SELECT pg_walfile_name('<lsn>')` (the segment a new primary copies
    /// for an empty timeline it joined; the simulated `pg_wal` holds no
    /// segment files, so the copy finds none).
    WalfileName(u64),
}

/// The client's commit statement for `id`.
pub fn commit_sql(id: u64) -> String {
    format!("INSERT INTO acked VALUES ({id}) RETURNING lsn")
}

/// The client's read-back.
pub const READ_ACKED_SQL: &str = "SELECT string_agg(id::text, ',') FROM acked";

pub fn parse(sql: &str) -> Option<Durable> {
    if sql == POSITION_SQL {
        return Some(Durable::Position);
    }
    if sql == STAT_REPLICATION_SQL {
        return Some(Durable::StatReplication);
    }
    if sql == IN_RECOVERY_SQL {
        return Some(Durable::InRecovery);
    }
    if sql == RECOVERY_AND_TIMELINE_SQL {
        return Some(Durable::Timeline);
    }
    if sql == NEWEST_TIMELINE_SQL {
        return Some(Durable::NewestTimeline);
    }
    if sql == READ_ACKED_SQL {
        return Some(Durable::ReadAcked);
    }
    if sql.eq_ignore_ascii_case("ALTER SYSTEM RESET ALL") {
        return Some(Durable::ResetAll);
    }
    if sql.eq_ignore_ascii_case("SHOW synchronous_standby_names") {
        return Some(Durable::ShowStandbyNames);
    }
    if sql == "SELECT pg_current_wal_flush_lsn()::text" {
        return Some(Durable::FlushLsn);
    }
    if sql.eq_ignore_ascii_case("CHECKPOINT") {
        return Some(Durable::Checkpoint);
    }
    if let Some(lsn) = sql
        .strip_prefix("SELECT pg_walfile_name('")
        .and_then(|r| r.strip_suffix("')"))
    {
        return lsn
            .parse::<compute_ctl::spec::Lsn>()
            .ok()
            .map(|l| Durable::WalfileName(l.0));
    }
    if sql.starts_with("SELECT pg_promote(") {
        return Some(Durable::Promote);
    }
    let id = sql
        .strip_prefix("INSERT INTO acked VALUES (")?
        .strip_suffix(") RETURNING lsn")?;
    id.parse().ok().map(Durable::Commit)
}
