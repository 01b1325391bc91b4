//! The catch-up of a new primary with safekeepers, before it takes writes:
//! its data must hold every WAL record any reachable safekeeper flushed,
//! or an acknowledged commit would be lost.
//!
//! The base backup comes from `pageserver_connstring` when it answers, else
//! from the most advanced safekeeper. Either may be behind that safekeeper
//! (and a backup of a standby ends at its `minRecoveryPoint`, which can lag
//! what it replayed), so the compute does not rely on the backup's end: it
//! starts as a standby of the most advanced safekeeper (`standby.signal`,
//! `primary_conninfo` in `postgresql.auto.conf`: cascading replication
//! sends what the safekeeper received), waits until it has replayed that
//! safekeeper's flushed LSN, and only then promotes onto a new timeline
//! ([`promote`]). No reachable safekeeper then has WAL past the fork point.

use std::path::Path;
use std::time::Duration;

use super::endpoint::{OpenSession, column, first_row_of};
use super::safekeepers::position_of;
use super::{
    Endpoint, Lsn, POSITION_SQL, Safekeeper, SafekeeperAnswer, SessionError, SyncOutcome,
    WalPosition, wal_position,
};
use crate::env::Env;

/// How long the source may take to answer whether it is up.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the new primary's data comes from and up to where it must replay.
#[derive(Debug, Clone)]
pub struct CatchUpPlan {
    /// `pg_basebackup -d` (libpq; may carry a password: never log it).
    pub backup_source: String,
    /// The backup source for messages, redacted.
    pub backup_shown: String,
    /// The backup source's Postgres major when the sync's session to it
    /// said (the source is a safekeeper that answered); `None` when not
    /// known, to be asked.
    pub backup_major: Option<u32>,
    /// `primary_conninfo` of the catch-up: the most advanced safekeeper.
    pub stream_from: String,
    /// That safekeeper for messages, redacted.
    pub stream_shown: String,
    /// The highest LSN a reachable safekeeper flushed.
    pub target: Lsn,
    /// The timeline it promotes onto: past every one a majority knows of
    /// ([`super::next_timeline`]), claimed on them before the promotion.
    pub timeline: u32,
    /// The lowest timeline a safekeeper that answered holds WAL of (1 when
    /// none said): at or below the one the new primary's recovery targets
    /// once caught up, the floor of [`super::reserve_below`].
    pub lowest_timeline: u32,
    /// What each safekeeper of the sync said it knows (`None`: it did not
    /// say; the claim skips it).
    pub known: Vec<Option<u32>>,
    /// The empty branch the new primary joins, `(timeline, history)`
    /// ([`super::empty_branch`]).
    pub branch: Option<(u32, String)>,
    /// The empty timelines that joining `branch` puts in the new primary's
    /// history ([`super::empty_timelines`]): each gets a segment file once
    /// it promoted ([`super::fill_empty_timelines`]).
    pub empty_timelines: Vec<u32>,
}

/// Picks the backup source and the safekeeper to catch up from, and the
/// timeline to claim, given the sync's answers (in the order of
/// `safekeepers`).
pub async fn plan_catch_up<E: Env>(
    env: &E,
    pageserver: Option<&str>,
    safekeepers: &[Safekeeper],
    synced: &SyncOutcome,
    user: &str,
    application_name: &str,
) -> Result<CatchUpPlan, String> {
    let (answers, timelines, known) = (&synced.answers, &synced.timelines, &synced.known);
    let timeline = super::next_timeline(known).map_err(|e| e.to_string())?;
    // Each answering safekeeper's newest timeline, asked in parallel, and
    // whether the base backup source answers, at the same time.
    let source = match pageserver.filter(|c| !c.trim().is_empty()) {
        None => None,
        Some(c) => match Endpoint::parse(c, user) {
            Err(e) => return Err(format!("pageserver_connstring: {e}")),
            Ok(ep) => Some(ep),
        },
    };
    // The sync's session asked each safekeeper's timeline too. A source
    // that is one of the safekeepers that answered needs no probe.
    let answered_sk = |ep: &Endpoint| {
        safekeepers.iter().zip(answers).position(|(sk, a)| {
            a.flush_lsn.is_some() && sk.endpoint.host == ep.host && sk.endpoint.port == ep.port
        })
    };
    let major_of = |i: usize| synced.majors.get(i).copied().flatten();
    let source_answer = match &source {
        Some(ep) => match answered_sk(ep) {
            Some(j) => Some(Ok(major_of(j))),
            None => Some(wal_position(env, ep, PROBE_TIMEOUT).await.map(|_| None)),
        },
        None => None,
    };
    let behind = crate::planted::active(crate::planted::Bug::BackupBehindSafekeepers);
    let Some((i, target)) = most_advanced(answers, timelines, behind) else {
        return Err("no safekeeper answered with a WAL position".into());
    };
    let Some(sk) = safekeepers.get(i) else {
        return Err("the sync answered for an unknown safekeeper".into());
    };
    let stream_from = sk.endpoint.conninfo(Some(application_name));
    let from_sk = (
        sk.endpoint.conninfo(None),
        sk.endpoint.shown.clone(),
        major_of(i),
    );
    let (backup_source, backup_shown, backup_major) = match (&source, source_answer) {
        (Some(ep), Some(Ok(major))) => (ep.conninfo(None), ep.shown.clone(), major),
        (Some(ep), Some(Err(e))) => {
            tracing::warn!(pageserver = %ep.shown, error = %e, safekeeper = %sk.endpoint.shown, "the base backup source does not answer; taking the backup from the most advanced safekeeper");
            from_sk
        }
        _ => from_sk,
    };
    let replaying = timelines.get(i).copied().unwrap_or(0);
    let branch = super::branch_to_join(&synced.histories, replaying, target);
    let empty_timelines = branch
        .as_ref()
        .map(|b| super::empty_timelines(b, replaying))
        .unwrap_or_default();
    Ok(CatchUpPlan {
        backup_source,
        backup_shown,
        backup_major,
        stream_from,
        stream_shown: sk.endpoint.shown.clone(),
        target,
        timeline,
        lowest_timeline: timelines
            .iter()
            .copied()
            .filter(|t| *t > 0)
            .min()
            .unwrap_or(1),
        known: known.to_vec(),
        branch,
        empty_timelines,
    })
}

/// The newest timeline a server holds WAL of (the first 8 hex digits of
/// the segment names in `pg_wal`, column 0): what its WAL follows. Its WAL
/// receiver's `received_tli` is gone once the primary it followed died,
/// which is exactly when a start asks. History files do not count there: a
/// standby's WAL receiver fetches every history file of the primary it
/// connects to, also when it cannot follow that timeline (its WAL is past
/// the fork), so a diverged safekeeper holds the newest history file too.
///
/// Columns 1 and 2 are the newest timeline it knows of otherwise: its
/// newest history file, and the timeline a start claimed on it
/// ([`super::timeline_claim`], from `postgresql.auto.conf`). A new
/// primary's timeline must be past all three on a majority. Column 3 is
/// that history file's content ([`super::empty_branch`]).
pub const NEWEST_TIMELINE_SQL: &str = concat!(
    "SELECT \
     max(substr(f, 1, 8)) FILTER (WHERE f ~ '^[0-9A-F]{24}$'), \
     max(substr(f, 1, 8)) FILTER (WHERE f ~ '^[0-9A-F]{8}\\.history$'), ",
    super::timeline_claim::claim_in_auto_conf!(),
    ", (SELECT pg_read_file('pg_wal/' || max(h)) FROM pg_ls_dir('pg_wal') h \
     WHERE h ~ '^[0-9A-F]{8}\\.history$') \
     FROM pg_ls_dir('pg_wal') f"
);

/// The timeline in `ep`'s answer to [`NEWEST_TIMELINE_SQL`]; 0 when it
/// gave none or failed (said in a warning).
pub(super) fn timeline_of(
    ep: &Endpoint,
    answer: &Result<Vec<Option<String>>, SessionError>,
) -> u32 {
    match answer {
        Ok(row) => hex_timeline(row, 0).unwrap_or(0),
        Err(e) => {
            tracing::warn!(safekeeper = %ep.shown, error = %e, "cannot read a safekeeper's timeline; ranking it by its LSN alone");
            0
        }
    }
}

/// The newest timeline an answer to [`NEWEST_TIMELINE_SQL`] knows of: its
/// WAL's, its newest history file's or the one claimed on it, whichever is
/// highest (at least 1, the first timeline); `None` when it failed.
pub(super) fn known_of(answer: &Result<Vec<Option<String>>, SessionError>) -> Option<u32> {
    let row = answer.as_ref().ok()?;
    let claimed = column(row, 2).and_then(|v| v.trim().parse::<u32>().ok());
    [hex_timeline(row, 0), hex_timeline(row, 1), claimed]
        .into_iter()
        .flatten()
        .max()
        .map(|t| t.max(1))
        .or(Some(1))
}

/// The newest history file in an answer to [`NEWEST_TIMELINE_SQL`]:
/// `(timeline, content)`.
pub(super) fn history_of(
    answer: &Result<Vec<Option<String>>, SessionError>,
) -> Option<(u32, String)> {
    let row = answer.as_ref().ok()?;
    Some((hex_timeline(row, 1)?, column(row, 3)?.to_string()))
}

fn hex_timeline(row: &[Option<String>], i: usize) -> Option<u32> {
    column(row, i).and_then(|h| u32::from_str_radix(h, 16).ok())
}

/// The safekeeper to catch up from: the newest timeline first, then the
/// highest flushed LSN on it. By LSN alone, a safekeeper that stayed on an
/// older timeline with WAL past a later fork (diverged: it was down when a
/// primary forked, then came back) would win over the ones that hold the
/// newer timeline's acknowledged commits, and the new primary would follow
/// the old history and lose them. `behind`: the planted bug that picks the
/// lowest LSN. `(index, flushed LSN)`; `None` if none answered.
fn most_advanced(
    answers: &[SafekeeperAnswer],
    timelines: &[u32],
    behind: bool,
) -> Option<(usize, Lsn)> {
    let mut best: Option<(usize, u32, Lsn)> = None;
    for (i, a) in answers.iter().enumerate() {
        let Some(l) = a.flush_lsn else { continue };
        // The planted bug ranks by LSN alone, as before timelines counted.
        let tli = if behind {
            0
        } else {
            timelines.get(i).copied().unwrap_or(0)
        };
        let better = |(_, bt, bl): (usize, u32, Lsn)| {
            if behind {
                (tli, l) < (bt, bl)
            } else {
                (tli, l) > (bt, bl)
            }
        };
        if best.is_none_or(better) {
            best = Some((i, tli, l));
        }
    }
    best.map(|(i, _, l)| (i, l))
}

/// Makes the fresh PGDATA a standby of the most advanced safekeeper: the
/// signal file and `primary_conninfo` in `postgresql.auto.conf` (which the
/// base backup left empty), reset at promotion.
pub async fn prepare_catch_up<E: Env>(
    env: &E,
    pgdata: &Path,
    plan: &CatchUpPlan,
) -> std::io::Result<()> {
    let conninfo = crate::pg::quote_conf_value(&plan.stream_from);
    let auto = format!(
        "# Written by compute_ctl: this new primary first replays the WAL of the most\n\
         # advanced safekeeper, then promotes; reset at promotion.\n\
         primary_conninfo = {conninfo}\n\
         wal_retrieve_retry_interval = '200ms'\n"
    );
    env.write_atomic(&pgdata.join("postgresql.auto.conf"), auto.as_bytes())
        .await?;
    if let Some(branch) = &plan.branch {
        super::join_branch(env, pgdata, branch).await?;
    }
    if crate::planted::active(crate::planted::Bug::SkipTimelineSwitch) {
        return Ok(());
    }
    env.write_atomic(&pgdata.join(crate::pg::STANDBY_SIGNAL), b"")
        .await
}

/// Where a promotion left the new primary. `/status.safekeepers.quorum`
/// shows the timeline and the fork.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Promoted {
    /// Its new timeline.
    pub timeline: u32,
    /// What it had replayed when promoted: where its timeline forks.
    pub fork_lsn: Lsn,
    /// Where each ancestor timeline ended, from its history file: a
    /// standby on one of them holds this compute's WAL only up to there.
    #[serde(skip)]
    pub ancestors: Vec<(u32, Lsn)>,
}

impl Promoted {
    /// A promotion whose ancestors are not known: a standby on an older
    /// timeline is taken to hold our WAL up to `fork_lsn`.
    pub fn at(timeline: u32, fork_lsn: Lsn) -> Self {
        Self {
            timeline,
            fork_lsn,
            ancestors: Vec::new(),
        }
    }

    /// How far WAL on timeline `tli` (a standby's, older than ours) is
    /// also this compute's: to where `tli` ended in our history. A
    /// timeline not in it (a sibling branch) left our history no later
    /// than where ours forked, so `fork_lsn` is the most it can share:
    /// WAL past it surely diverged, and WAL below it is given the benefit
    /// of the doubt (its branch point is not known here).
    pub fn shared_up_to(&self, tli: u32) -> Lsn {
        self.ancestors
            .iter()
            .find(|(t, _)| *t == tli)
            .map_or(self.fork_lsn, |(_, end)| (*end).min(self.fork_lsn))
    }
}

/// Why a catch-up or a promotion failed.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("asking the new primary failed: {0}")]
    Session(#[from] super::SessionError),
    #[error(
        "recovery did not end within {0:?} of pg_promote() on the new primary (see its log for why)"
    )]
    NotPromoted(Duration),
    #[error(
        "pg_promote(false) on the new primary answered {0:?}: the promotion was not signalled (the postmaster could not be signalled or its promote file written; see the new primary's log)"
    )]
    NotSignalled(String),
    #[error("after pg_promote() the new primary answered something unexpected: {0}")]
    Unexpected(String),
}

/// Whether the server is in recovery (a standby cannot be asked its WAL
/// position: `pg_current_wal_lsn()` fails during recovery).
pub const IN_RECOVERY_SQL: &str = "SELECT pg_is_in_recovery()";

/// Whether the server is in recovery, the timeline of its WAL, and that
/// timeline's history file (where each ancestor ended; NULL on timeline 1).
/// The four-argument `pg_read_file`: Postgres 15 has no (file, missing_ok).
pub const RECOVERY_AND_TIMELINE_SQL: &str = "SELECT pg_is_in_recovery(), t, \
     pg_read_file('pg_wal/' || t || '.history', 0, 16777216, true) \
     FROM substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) t";

/// Promotes our own Postgres (`own`) onto a new timeline and resets the
/// catch-up's `primary_conninfo`.
///
/// `pg_promote(false)` signals the promotion and returns; recovery's end is
/// then polled on the same session (as our own Postgres is:
/// [`super::Polling::Own`], as the quorum wait and the by-hand floor poll).
/// `pg_promote(true)` (as `pg_ctl promote`) checks only every 100 ms, so a
/// promotion done in 10 ms cost a start 100.
pub async fn promote<E: Env>(
    env: &E,
    own: &Endpoint,
    within: Duration,
) -> Result<Promoted, PromoteError> {
    let session = own.open(env, within).await?;
    let row = session.first_row(env, POSITION_SQL, within).await?;
    let before = position_of(&row, session.addr())?;
    let promoted = promote_on(env, &session, before, within).await?;
    reset_catch_up(env, &session, within).await?;
    Ok(promoted)
}

/// [`promote`] on a session already open to our own Postgres, whose
/// position was `before` (a catch-up's last answer: the wait and the
/// promotion then share one session, as a person at psql would), without
/// [`reset_catch_up`], which the caller runs (a durable start: beside the
/// announce, since nothing a primary does reads those settings).
pub async fn promote_on<E: Env>(
    env: &E,
    session: &OpenSession,
    before: WalPosition,
    within: Duration,
) -> Result<Promoted, PromoteError> {
    // The planted SkipTimelineSwitch takes a primary (no standby.signal) as promoted.
    let skip =
        crate::planted::active(crate::planted::Bug::SkipTimelineSwitch) && !before.in_recovery;
    let (client, addr) = (session.client(), session.addr());
    let work = async {
        if !skip {
            let signalled = first_row_of(client, addr, "SELECT pg_promote(false)").await?;
            let answer = column(&signalled, 0);
            if answer != Some("t") {
                return Err(PromoteError::NotSignalled(
                    answer.unwrap_or("NULL").to_string(),
                ));
            }
        }
        let t0 = env.now();
        let mut pace = super::Polling::Own.pace(t0);
        loop {
            let row = first_row_of(client, addr, IN_RECOVERY_SQL).await?;
            if column(&row, 0) == Some("f") {
                break;
            }
            let now = env.now();
            if now.saturating_duration_since(t0) >= within {
                return Err(PromoteError::NotPromoted(within));
            }
            env.sleep(pace.next(now)).await;
        }
        let row = first_row_of(client, addr, RECOVERY_AND_TIMELINE_SQL).await?;
        if column(&row, 0) != Some("f") {
            return Err(PromoteError::Unexpected("back in recovery".into()));
        }
        Ok(row)
    };
    let limit = within + Duration::from_secs(1);
    let row = match crate::env::timeout(env, limit, work).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(SessionError::Timeout {
                addr: addr.to_string(),
                after: limit,
            }
            .into());
        }
    };
    let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let timeline = u32::from_str_radix(&col(1), 16)
        .map_err(|e| PromoteError::Unexpected(format!("timeline {:?}: {e}", col(1))))?;
    let ancestors = row
        .get(2)
        .cloned()
        .flatten()
        .map(|h| super::parse_history(&h))
        .unwrap_or_default();
    Ok(Promoted {
        timeline,
        fork_lsn: before.replayed,
        ancestors,
    })
}

/// Resets what the catch-up wrote into `postgresql.auto.conf`
/// (`primary_conninfo`, the retry interval: [`prepare_catch_up`]) on a
/// promoted Postgres, by `ALTER SYSTEM RESET ALL`, and reloads it. Only once the
/// promotion happened: a replica left running keeps its settings.
pub async fn reset_catch_up<E: Env>(
    env: &E,
    session: &OpenSession,
    within: Duration,
) -> Result<(), PromoteError> {
    session
        .first_row(env, "ALTER SYSTEM RESET ALL", within)
        .await?;
    session
        .first_row(env, "SELECT pg_reload_conf()", within)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The source's major comes from the sync's session to the safekeeper
    /// the backup is taken from, so the start asks it nothing more; a
    /// pageserver that is none of them is not known (the start asks it).
    #[tokio::test]
    async fn the_backup_source_major_is_the_one_its_sync_session_reported() {
        let conns: Vec<String> = (1..=3).map(|i| format!("127.0.0.1:5{i}00")).collect();
        let sks = super::super::safekeepers(&conns, "cloud_admin").unwrap();
        let synced = SyncOutcome {
            commit_lsn: Lsn(0x20),
            answers: [0x30, 0x20, 0x10].map(|l| answer(Some(l))).to_vec(),
            timelines: vec![1, 1, 1],
            known: vec![Some(1); 3],
            histories: vec![None; 3],
            majors: vec![Some(16), Some(15), None],
        };
        let env = crate::env::TokioEnv::new();
        let plan = |pageserver| plan_catch_up(&env, pageserver, &sks, &synced, "cloud_admin", "c");
        // No pageserver: the most advanced safekeeper, the first.
        assert_eq!(plan(None).await.unwrap().backup_major, Some(16));
        // The pageserver is the second safekeeper: its major.
        let second = plan(Some("host=127.0.0.1 port=5200")).await.unwrap();
        assert_eq!(
            (second.backup_major, second.backup_shown.contains("5200")),
            (Some(15), true)
        );
        // The third said none.
        assert_eq!(
            plan(Some("host=127.0.0.1 port=5300"))
                .await
                .unwrap()
                .backup_major,
            None
        );
    }

    fn answer(lsn: Option<u64>) -> SafekeeperAnswer {
        SafekeeperAnswer {
            safekeeper: "sk".into(),
            flush_lsn: lsn.map(Lsn),
            error: None,
        }
    }

    #[test]
    fn wal_on_an_older_timeline_is_ours_only_up_to_where_it_ended_in_our_history() {
        // Timeline 1 ended at 0/30, timeline 2 at 0/50; ours (3) forked at 0/50.
        let own = Promoted {
            timeline: 3,
            fork_lsn: Lsn(0x50),
            ancestors: crate::storage::parse_history(
                "1\t0/30\tno recovery target specified\n2\t0/50\tx\n",
            ),
        };
        assert_eq!(own.shared_up_to(2), Lsn(0x50));
        // A safekeeper on timeline 1 at 0/40 holds WAL a dead primary of
        // timeline 1 wrote after timeline 2 forked: below our fork, yet
        // not ours.
        assert_eq!(own.shared_up_to(1), Lsn(0x30));
        // A sibling branch (timeline 4 is not in our history): no more
        // than our fork.
        assert_eq!(own.shared_up_to(4), Lsn(0x50));
        // Unknown ancestors: the fork, as before they were read.
        assert_eq!(Promoted::at(3, Lsn(0x50)).shared_up_to(1), Lsn(0x50));
    }

    #[test]
    fn a_promotion_not_signalled_is_told_apart_from_recovery_not_ending() {
        let not_signalled = PromoteError::NotSignalled("f".into()).to_string();
        let not_ended = PromoteError::NotPromoted(Duration::from_secs(30)).to_string();
        assert!(
            not_signalled.contains("answered \"f\"") && not_signalled.contains("not signalled"),
            "{not_signalled}"
        );
        assert!(!not_ended.contains("not signalled"), "{not_ended}");
        assert!(not_ended.contains("did not end within 30s"), "{not_ended}");
    }

    #[test]
    fn a_diverged_safekeeper_further_on_an_older_timeline_is_not_the_source() {
        // sk0 stayed on timeline 2 up to 100; sk1 and sk2 hold timeline 3,
        // forked at 80, with acknowledged commits up to 90.
        let answers = [answer(Some(100)), answer(Some(90)), answer(Some(85))];
        assert_eq!(
            most_advanced(&answers, &[2, 3, 3], false),
            Some((1, Lsn(90)))
        );
        // By LSN alone (no timeline known) the old history would win.
        assert_eq!(
            most_advanced(&answers, &[0, 0, 0], false),
            Some((0, Lsn(100)))
        );
    }

    #[test]
    fn on_one_timeline_the_highest_lsn_wins_and_the_silent_are_skipped() {
        let answers = [answer(None), answer(Some(70)), answer(Some(75))];
        assert_eq!(
            most_advanced(&answers, &[0, 3, 3], false),
            Some((2, Lsn(75)))
        );
        assert_eq!(most_advanced(&[answer(None)], &[0], false), None);
    }
}
