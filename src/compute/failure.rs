//! Why a start, a reconfigure or a promote failed: [`FailReason`], one
//! variant per thing the supervisor can fail on. Its `Display` is the text
//! `/status.error` shows (what failed and what to do); [`FailReason::kind`]
//! is a stable name for it (`/status.failure_kind`), so a client or the
//! simulator can tell failures apart without reading the text.
//! [`Compute::fail`](super::Compute::fail) is the one place that turns a
//! reason into the `failed` status.

use crate::storage::Lsn;

/// Why the compute failed. The strings are the detail of the underlying
/// error, already worded for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailReason {
    /// A connection string the operation cannot use
    /// (`pageserver_connstring`, `safekeeper_connstrings`, the `-C` target).
    #[error("{0}")]
    Connstr(String),
    /// The safekeepers did not say, a majority of them, how far their WAL is.
    #[error("{0}")]
    SafekeeperSync(String),
    /// The base backup's source did not reach the commit LSN, or none
    /// could be chosen.
    #[error("{0}")]
    BackupSource(String),
    /// The base backup's source runs another major.
    #[error("{0}")]
    SourceMajor(String),
    /// initdb, or making PGDATA for it, failed.
    #[error("preparing PGDATA failed: {0}")]
    Initdb(String),
    /// pg_basebackup, or making PGDATA for it, failed.
    #[error("preparing PGDATA failed: {0}")]
    BaseBackup(String),
    /// A static compute's LSN is not after the end of its base backup.
    #[error(
        "the static LSN {target} is not after the end of the base backup ({end}): vanilla Postgres can only stop recovery after the point where its base backup becomes consistent; ask for an LSN after {end}"
    )]
    StaticLsn { target: Lsn, end: Lsn },
    /// `postgresql.conf` or `pg_hba.conf` could not be written.
    #[error("{0}")]
    WriteConfig(String),
    /// Postgres' TLS pair cannot be used.
    #[error("{0}")]
    Tls(String),
    /// The postmaster could not be spawned.
    #[error("starting Postgres failed: {0}")]
    PostgresStart(String),
    /// The postmaster runs but does not let the supervisor in.
    #[error("Postgres did not become ready: {0}")]
    PostgresNotReady(String),
    /// The postmaster exited (its last lines quoted).
    #[error("{0}")]
    PostgresExited(String),
    /// There is no postmaster to reload.
    #[error("Postgres is not running; cannot reload")]
    PostgresNotRunning,
    /// A primary with safekeepers did not replay up to the most advanced
    /// safekeeper, or its catch-up could not be set up.
    #[error("{0}")]
    CatchUp(String),
    /// A replica did not replay up to a promote's `wal_flush_lsn`.
    #[error("{0}")]
    LsnWait(String),
    /// `pg_promote()` failed.
    #[error("{0}")]
    Promote(String),
    /// No quorum of safekeepers streams (or the quorum is not in force).
    #[error("{0}")]
    Quorum(String),
    /// A move to another safekeeper set failed (the old set's config was put
    /// back, or not: the text says).
    #[error("{0}")]
    SafekeeperMove(String),
    /// The reload (SIGHUP) failed, or whether Postgres took it is unknown.
    #[error("{0}")]
    Reload(String),
    /// Postgres refused the new config (its own words).
    #[error("{0}")]
    ConfigRefused(String),
    /// The binary refuses settings of the spec being started (a launch
    /// spec: one sent over HTTP got its 400 instead).
    #[error(
        "the spec's settings are refused by this Postgres binary, so Postgres was not started: {0}; fix the spec (or use a binary of the major it was written for)"
    )]
    SpecSettings(String),
    /// The catalog apply failed.
    #[error("applying the spec to the catalog failed: {0}")]
    Catalog(String),
    /// The spec or the key set from the control plane.
    #[error("{0}")]
    SpecSource(String),
    /// `--pg-init-timeout` passed before Postgres ran.
    #[error("{0}")]
    InitTimeout(String),
    /// The supervisor stopped with the spec still pending.
    #[error("the supervisor stopped before it could apply the spec")]
    Abandoned,
    /// A promote accepted without its spec.
    #[error("a promote was accepted without its spec; send it again")]
    PromoteWithoutSpec,
    /// A promote that moved Postgres out of recovery, then failed.
    #[error(
        "promoted onto timeline {timeline}, but {cause}{}",
        promoted_suffix(cause)
    )]
    AfterPromotion {
        timeline: u32,
        cause: Box<FailReason>,
    },
    /// A failed promote whose replica config could not be put back.
    #[error("{cause}; putting the replica's config back failed ({error}): check Postgres")]
    NotPutBack {
        cause: Box<FailReason>,
        error: String,
    },
}

fn promoted_suffix(cause: &FailReason) -> &'static str {
    match cause {
        FailReason::Quorum(_) => "; its commits wait until a quorum streams",
        _ => "",
    }
}

impl FailReason {
    /// A stable name of what failed (`/status.failure_kind`); a reason that
    /// wraps another (after a promotion) has the kind of its cause.
    pub fn kind(&self) -> &'static str {
        match self {
            FailReason::Connstr(_) => "connstr",
            FailReason::SafekeeperSync(_) => "safekeeper_sync",
            FailReason::BackupSource(_) => "backup_source",
            FailReason::SourceMajor(_) => "source_major",
            FailReason::Initdb(_) => "initdb",
            FailReason::BaseBackup(_) => "base_backup",
            FailReason::StaticLsn { .. } => "static_lsn",
            FailReason::WriteConfig(_) => "write_config",
            FailReason::Tls(_) => "tls",
            FailReason::PostgresStart(_) => "postgres_start",
            FailReason::PostgresNotReady(_) => "postgres_not_ready",
            FailReason::PostgresExited(_) => "postgres_exited",
            FailReason::PostgresNotRunning => "postgres_not_running",
            FailReason::CatchUp(_) => "catch_up",
            FailReason::LsnWait(_) => "lsn_wait",
            FailReason::Promote(_) => "promote",
            FailReason::Quorum(_) => "quorum",
            FailReason::SafekeeperMove(_) => "safekeeper_move",
            FailReason::Reload(_) => "reload",
            FailReason::ConfigRefused(_) => "config_refused",
            FailReason::SpecSettings(_) => "spec_settings",
            FailReason::Catalog(_) => "catalog",
            FailReason::SpecSource(_) => "spec_source",
            FailReason::InitTimeout(_) => "init_timeout",
            FailReason::Abandoned => "abandoned",
            FailReason::PromoteWithoutSpec => "promote_without_spec",
            FailReason::AfterPromotion { cause, .. } | FailReason::NotPutBack { cause, .. } => {
                cause.kind()
            }
        }
    }

    /// Every kind [`FailReason::kind`] can return (`openapi.yaml` lists them).
    pub const KINDS: &[&str] = &[
        "connstr",
        "safekeeper_sync",
        "backup_source",
        "source_major",
        "initdb",
        "base_backup",
        "static_lsn",
        "write_config",
        "tls",
        "postgres_start",
        "postgres_not_ready",
        "postgres_exited",
        "postgres_not_running",
        "catch_up",
        "lsn_wait",
        "promote",
        "quorum",
        "safekeeper_move",
        "reload",
        "config_refused",
        "spec_settings",
        "catalog",
        "spec_source",
        "init_timeout",
        "abandoned",
        "promote_without_spec",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once() {
        let s = || String::from("x");
        let lsn = Lsn(1);
        let all = [
            FailReason::Connstr(s()),
            FailReason::SafekeeperSync(s()),
            FailReason::BackupSource(s()),
            FailReason::SourceMajor(s()),
            FailReason::Initdb(s()),
            FailReason::BaseBackup(s()),
            FailReason::StaticLsn {
                target: lsn,
                end: lsn,
            },
            FailReason::WriteConfig(s()),
            FailReason::Tls(s()),
            FailReason::PostgresStart(s()),
            FailReason::PostgresNotReady(s()),
            FailReason::PostgresExited(s()),
            FailReason::PostgresNotRunning,
            FailReason::CatchUp(s()),
            FailReason::LsnWait(s()),
            FailReason::Promote(s()),
            FailReason::Quorum(s()),
            FailReason::SafekeeperMove(s()),
            FailReason::Reload(s()),
            FailReason::ConfigRefused(s()),
            FailReason::SpecSettings(s()),
            FailReason::Catalog(s()),
            FailReason::SpecSource(s()),
            FailReason::InitTimeout(s()),
            FailReason::Abandoned,
            FailReason::PromoteWithoutSpec,
        ];
        let kinds: Vec<&str> = all.iter().map(FailReason::kind).collect();
        assert_eq!(kinds, FailReason::KINDS);
        for r in &all {
            assert!(!r.to_string().is_empty(), "{r:?} says nothing");
        }
    }

    #[test]
    fn a_promotion_wraps_its_cause_in_words_and_keeps_its_kind() {
        let quorum = FailReason::Quorum("no quorum within 30s".into());
        let r = FailReason::AfterPromotion {
            timeline: 3,
            cause: Box::new(quorum),
        };
        assert_eq!(
            r.to_string(),
            "promoted onto timeline 3, but no quorum within 30s; its commits wait until a quorum streams"
        );
        assert_eq!(r.kind(), "quorum");
        let r = FailReason::AfterPromotion {
            timeline: 3,
            cause: Box::new(FailReason::Catalog("boom".into())),
        };
        assert_eq!(
            r.to_string(),
            "promoted onto timeline 3, but applying the spec to the catalog failed: boom"
        );
        assert!(FailReason::KINDS.contains(&r.kind()));
    }
}
