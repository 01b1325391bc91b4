//! A base backup only starts on the major it was taken from: a source of
//! another major is refused, naming both versions, asked while the copy
//! runs and stopping it (without this the copy runs to the end and Postgres
//! then refuses the data directory).

use super::{Compute, FailReason};
use crate::env::Env;
use crate::spec::ComputeSpec;
use crate::storage::Endpoint;

/// How long the source may take to say its version.
const VERSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a source of `source` major cannot feed a binary of `local` major.
pub fn source_major_mismatch(source: u32, local: u32, shown: &str, pgbin: &str) -> Option<String> {
    (source != local).then(|| {
        format!(
            "the base backup source {shown} runs PostgreSQL {source}, but this compute's binary ({pgbin}) is PostgreSQL {local}: a base backup starts only on the major it was taken from; point pageserver_connstring at a PostgreSQL {local} source, or run compute_ctl with PostgreSQL {source}'s binaries (-b)"
        )
    })
}

/// The major of `server_version_num` (e.g. `170011` -> 17).
pub fn major_of_version_num(v: &str) -> Option<u32> {
    v.trim().parse::<u32>().ok().map(|n| n / 10_000)
}

impl<E: Env> Compute<E> {
    /// Beside the copy of a start: reads the binary's settings catalogue
    /// (so its major is known from the start on), then refuses a base
    /// backup source of another major. Nothing to check without a source;
    /// when the source or the binary cannot say its version, the copy
    /// itself will tell (logged).
    ///
    /// A primary with safekeepers takes its backup from its plan's source
    /// (`backup_source`: `pageserver_connstring` when it answered the plan,
    /// else a safekeeper), and that is the source asked: a pageserver that
    /// did not answer is not waited for a second time.
    ///
    /// `backup_source` comes with its major when the sync's session to it
    /// said (`server_version` at startup): then nothing is asked.
    pub(super) async fn check_source_major(
        &self,
        spec: &ComputeSpec,
        backup_source: Option<(&str, Option<u32>)>,
    ) -> Result<(), FailReason> {
        let local = self.settings_catalogue().await.map(|c| c.major);
        let known = backup_source.and_then(|(_, m)| m);
        let backup_source = backup_source.map(|(c, _)| c);
        let Some(connstr) = backup_source.or(spec
            .pageserver_connstring
            .as_deref()
            .filter(|c| !c.trim().is_empty()))
        else {
            return Ok(());
        };
        let Some(local) = local else {
            return Ok(());
        };
        let ep = Endpoint::parse(connstr, &self.params.conn.user)
            .map_err(|e| FailReason::Connstr(format!("pageserver_connstring: {e}")))?;
        let source = match known {
            Some(major) => Some(major),
            None => self.ask_major(&ep).await,
        };
        let Some(source) = source else {
            return Ok(());
        };
        match source_major_mismatch(
            source,
            local,
            &ep.shown,
            &self.params.pgbin.display().to_string(),
        ) {
            Some(why) => Err(FailReason::SourceMajor(why)),
            None => Ok(()),
        }
    }

    /// The major `ep` says it runs, on a new session; `None` (logged)
    /// when it cannot say.
    async fn ask_major(&self, ep: &Endpoint) -> Option<u32> {
        let row = match ep
            .query_row(&self.env, "SHOW server_version_num", VERSION_TIMEOUT)
            .await
        {
            Ok(row) => row,
            Err(e) => {
                tracing::warn!(storage = %ep.shown, error = %e, "cannot read the source's version before the base backup");
                return None;
            }
        };
        row.first()
            .cloned()
            .flatten()
            .as_deref()
            .and_then(major_of_version_num)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_versions_are_named_and_the_same_major_passes() {
        assert_eq!(major_of_version_num("170011"), Some(17));
        assert_eq!(major_of_version_num("150014\n"), Some(15));
        assert_eq!(major_of_version_num("x"), None);
        assert!(source_major_mismatch(17, 17, "host=a", "/pg/bin/postgres").is_none());
        let why = source_major_mismatch(15, 17, "host=a", "/pg/bin/postgres").unwrap();
        assert!(why.contains("runs PostgreSQL 15"), "{why}");
        assert!(why.contains("is PostgreSQL 17"), "{why}");
    }
}
