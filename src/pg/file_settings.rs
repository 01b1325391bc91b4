//! Before a reload: will Postgres take the config file? One query of
//! `pg_file_settings`, which parses the files on disk as the postmaster does
//! on SIGHUP and says, per line, what it refuses; the same answer before the
//! SIGHUP as after it, so compute_ctl asks before and signals only a file
//! Postgres takes.
//!
//! Postgres refuses a whole file when one name is unknown ("contains errors;
//! no changes were applied"), and applies the rest when a value is bad
//! ("unaffected changes were applied"). Either way the row of the culprit
//! has an `error`. `setting could not be applied` is also what a changed
//! `postmaster`-context setting says before the restart: that is a pending
//! restart (reported as such), not a refusal, so those rows are left out,
//! with the name-less row Postgres adds for each of them (`parameter "x"
//! cannot be changed without restarting the server`).

use std::time::Duration;

use serde::Serialize;

use super::SettingContexts;
use super::held_session::{HeldSession, HeldSessionError};
use crate::env::Env;
use crate::params::ComputeParams;

/// The statement timeout of the check's session.
const CHECK_STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the check may wait for its session.
const CHECK_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The one query of the check; `seqno` keeps the file's order.
pub const FILE_SETTINGS_QUERY: &str = "SELECT sourcefile, sourceline, name, setting, error \
     FROM pg_catalog.pg_file_settings WHERE error IS NOT NULL ORDER BY seqno";

/// The error text of a line Postgres parsed but did not apply.
const NOT_APPLIED: &str = "setting could not be applied";
/// The end of the name-less row Postgres adds beside a changed
/// `postmaster`-context setting (`parameter "x" cannot be changed ...`).
const NEEDS_RESTART: &str = "cannot be changed without restarting the server";

/// One line of a config file that Postgres refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedLine {
    pub file: Option<String>,
    pub line: Option<i32>,
    pub name: Option<String>,
    pub value: Option<String>,
    /// Postgres' own words (`unrecognized configuration parameter`, ...).
    pub error: String,
}

impl std::fmt::Display for RefusedLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.file.as_deref().unwrap_or("?");
        match self.line {
            Some(l) => write!(f, "{file} line {l}: ")?,
            None => write!(f, "{file}: ")?,
        }
        match (&self.name, &self.value) {
            (Some(n), Some(v)) => write!(f, "{n} = '{v}': ")?,
            (Some(n), None) => write!(f, "{n}: ")?,
            _ => {}
        }
        f.write_str(&self.error)
    }
}

/// Why the check could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FileSettingsError {
    #[error("reading pg_file_settings failed: {0}")]
    Session(#[from] HeldSessionError),
}

/// Keeps the refusals: every row with an error, except a changed setting
/// that only a restart applies (`contexts` says which).
pub fn refusals(rows: Vec<RefusedLine>, contexts: Option<&SettingContexts>) -> Vec<RefusedLine> {
    rows.into_iter()
        .filter(|r| {
            let restart_only = r.error == NOT_APPLIED
                && match (&r.name, contexts) {
                    (Some(n), Some(c)) => c.needs_restart(n),
                    _ => false,
                };
            let restart_note = r.name.is_none() && r.error.ends_with(NEEDS_RESTART);
            !restart_only && !restart_note
        })
        .collect()
}

/// How long the statement that takes pending reloads may take, connect
/// included; past that the check itself pays for them.
const ABSORB_WITHIN: Duration = Duration::from_secs(1);

/// Sends `SELECT 1` on the check's session, so that its backend takes the
/// reloads signalled since its last statement now (a backend reloads only
/// when its next statement comes; an idle one holds every SIGHUP of the
/// postmaster pending), not inside the check. Sent as the config is being
/// written, that reload runs beside the write instead of on the notify's
/// path (on PG 15 with a compute's small config, timed by hand: a check
/// took 860 µs with a reload pending, 210 µs without). A failure is left
/// to the check, which opens a new session and says what failed. Without
/// an open session there is nothing to absorb (a new session starts with
/// the config of its start), and none is opened here: it would keep this
/// statement's short timeout as the check's (a seed of the simulator had
/// its check cancelled after 1 s under slow queries).
pub async fn absorb_pending_reloads<E: Env>(env: &E, session: &HeldSession) {
    if let Some(Err(e)) = session
        .query_value_if_open(env, "SELECT 1", ABSORB_WITHIN)
        .await
    {
        tracing::debug!(error = %e, "the check's session did not answer before the check; the check opens a new one");
    }
}

/// Reads what Postgres refuses of its config files now: one session, one
/// query. Empty when it takes everything.
pub async fn refused_settings<E: Env>(
    env: &E,
    params: &ComputeParams,
    session: &HeldSession,
    contexts: Option<&SettingContexts>,
) -> Result<Vec<RefusedLine>, FileSettingsError> {
    let messages = session
        .simple_query(
            env,
            &params.conn,
            FILE_SETTINGS_QUERY,
            CHECK_STATEMENT_TIMEOUT,
            CHECK_CONNECT_TIMEOUT,
        )
        .await?;
    let lines = messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(RefusedLine {
                file: r.get(0).map(str::to_string),
                line: r.get(1).and_then(|l| l.parse().ok()),
                name: r.get(2).map(str::to_string),
                value: r.get(3).map(str::to_string),
                error: r.get(4).unwrap_or_default().to_string(),
            }),
            _ => None,
        })
        .collect();
    Ok(refusals(lines, contexts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, error: &str) -> RefusedLine {
        RefusedLine {
            file: Some("/pgdata/postgresql.conf".into()),
            line: Some(12),
            name: Some(name.into()),
            value: Some("x".into()),
            error: error.into(),
        }
    }

    #[test]
    fn a_pending_restart_is_not_a_refusal() {
        let contexts = SettingContexts::builtin();
        let kept = refusals(
            vec![
                row("shared_buffers", NOT_APPLIED),
                RefusedLine {
                    file: None,
                    line: None,
                    name: None,
                    value: None,
                    error: format!("parameter \"shared_buffers\" {NEEDS_RESTART}"),
                },
                row("work_mem", NOT_APPLIED),
                row(
                    "old_snapshot_threshold",
                    "unrecognized configuration parameter",
                ),
            ],
            Some(&contexts),
        );
        let names: Vec<_> = kept.iter().map(|r| r.name.as_deref().unwrap()).collect();
        assert_eq!(names, ["work_mem", "old_snapshot_threshold"]);
    }

    #[test]
    fn a_refused_line_names_file_line_setting_and_postgres_words() {
        assert_eq!(
            row(
                "old_snapshot_threshold",
                "unrecognized configuration parameter"
            )
            .to_string(),
            "/pgdata/postgresql.conf line 12: old_snapshot_threshold = 'x': unrecognized configuration parameter"
        );
    }
}
