//! Storage, for vanilla Postgres 15 with Neon's field names:
//!
//! - `pageserver_connstring` is the source the compute's data comes from:
//!   the base backup at start and, for a replica, the upstream it streams
//!   WAL from (`primary_conninfo`);
//! - `safekeeper_connstrings` are the WAL servers; their agreed position is
//!   the commit LSN ([`sync_safekeepers`]), which the source must have
//!   reached before the base backup ([`wait_for_lsn`]);
//! - [`read_replication`] says what a replica's WAL receiver is doing.
//!
//! Every server here is a Postgres server reached through the Env seam
//! ([`Endpoint`], parsed in `spec/`). This module sits below `compute/` and
//! uses `pg/` (the session's application name), `spec/` and `params.rs` only.

mod announce;
mod catchup;
mod empty_branch;
mod endpoint;
mod newer_timeline;
mod quorum;
mod replication;
mod safekeepers;
mod sync_rep;
mod timeline_claim;
mod wait;

pub use crate::spec::{Lsn, LsnParseError};
pub use announce::{ABSENT_SQL, AnnounceError, announce, conninfo_for, explain_absent};
pub use catchup::{
    CatchUpPlan, IN_RECOVERY_SQL, NEWEST_TIMELINE_SQL, PromoteError, Promoted,
    RECOVERY_AND_TIMELINE_SQL, plan_catch_up, prepare_catch_up, promote, promote_on,
    reset_catch_up,
};
pub use empty_branch::{
    branch_to_join, checkpoint_past_fork, empty_timelines, fill_empty_timelines, join_branch,
    parse_history, restart_past_fork, timeline_at, walfile_name_sql,
};
pub use endpoint::{Endpoint, EndpointError, OpenSession, SessionError, column};
pub use newer_timeline::{NewerTimeline, TimelineSurvey, survey_timelines};
pub use quorum::{
    QuorumStatus, STAT_REPLICATION_SQL, Safekeeper, SafekeeperStatus, Sender, parse_senders,
    safekeeper_name, safekeepers, states_from_senders, synchronous_standby_names,
};
pub use replication::{
    REPLICATION_SQL, ReadReplication, ReplicationStatus, SOURCE_TIMEOUT, SourceTrail,
    read_replication,
};
pub use safekeepers::{
    NoQuorum, POSITION_SQL, SafekeeperAnswer, StartSync, SyncOutcome, WalPosition, commit_lsn,
    majority, sync_for_start, sync_safekeepers, wal_position,
};
pub use sync_rep::{QuorumNotInForce, await_quorum_in_force};
pub use timeline_claim::{
    CLAIM_LOOK_SQL, CLAIM_SETTING, ClaimError, claim_timeline, history_file_name, next_timeline,
    reserve_below,
};
pub use wait::{Polling, WaitError, wait_for_lsn, wait_for_lsn_held};
