//! The last WAL position of a stopped Postgres, for `/terminate`'s `lsn`.
//!
//! Once Postgres has stopped there is no server to ask
//! `pg_current_wal_flush_lsn()`; its control file is the truth. After a
//! clean (fast) shutdown, `pg_controldata` shows `Database cluster state:
//! shut down` and `Latest checkpoint location:` is the shutdown checkpoint,
//! the last WAL record written and flushed: nothing follows it, and a
//! restart resumes from exactly there. After an immediate stop (or a crash)
//! WAL may go on past the last checkpoint, so no position is claimed and the
//! answer is `None` (Neon's `lsn: null`).

use std::time::Duration;

use super::PgError;
use crate::env::{CommandSpec, Env};
use crate::params::ComputeParams;

/// pg_controldata reads one 8 KiB file.
const CONTROLDATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The shutdown checkpoint's LSN (e.g. `0/1A2B3C8`) when PGDATA was shut
/// down cleanly, `None` otherwise.
pub async fn shutdown_checkpoint_lsn<E: Env>(
    env: &E,
    params: &ComputeParams,
) -> Result<Option<String>, PgError> {
    let who = env.postgres_identity().map_err(PgError::Identity)?;
    let cmd = CommandSpec::new(params.pg_tool("pg_controldata"))
        .arg("-D")
        .arg(params.pgdata.display().to_string())
        // The labels parsed below are the untranslated ones.
        .env("LC_ALL", "C")
        .run_as(who);
    let shown = cmd.display();
    let out = super::pgdata::run(env, &cmd, shown, CONTROLDATA_TIMEOUT).await?;
    Ok(parse_shutdown_lsn(&String::from_utf8_lossy(&out.stdout)))
}

/// The checkpoint location of `pg_controldata` output, if the cluster state
/// is `shut down`.
pub fn parse_shutdown_lsn(text: &str) -> Option<String> {
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim_start_matches(':').trim().to_string())
    };
    if field("Database cluster state").as_deref() != Some("shut down") {
        return None;
    }
    field("Latest checkpoint location").filter(|lsn| is_lsn(lsn))
}

/// `X/Y` with hexadecimal halves.
fn is_lsn(s: &str) -> bool {
    s.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && a.chars().chain(b.chars()).all(|c| c.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: &str = "pg_control version number:            1300\n\
        Database cluster state:               shut down\n\
        pg_control last modified:             Wed 02 Dec 2026 14:00:00 UTC\n\
        Latest checkpoint location:           0/1A2B3C8\n\
        Latest checkpoint's REDO location:    0/1A2B3C8\n";

    #[test]
    fn a_clean_shutdown_gives_its_checkpoint() {
        assert_eq!(parse_shutdown_lsn(CLEAN).as_deref(), Some("0/1A2B3C8"));
    }

    #[test]
    fn no_lsn_is_claimed_after_an_unclean_stop_or_from_garbage() {
        let crashed = CLEAN.replace("shut down", "in production");
        assert_eq!(parse_shutdown_lsn(&crashed), None);
        let garbled = CLEAN.replace("0/1A2B3C8\n", "soon\n");
        assert_eq!(parse_shutdown_lsn(&garbled), None);
        assert_eq!(parse_shutdown_lsn(""), None);
    }
}
