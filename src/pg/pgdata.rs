//! PGDATA: every start is a fresh start. The data directory is removed and
//! re-created (mode 0700, owned by the Postgres OS user when we are root),
//! then filled from one of two sources:
//!
//! - **initdb** when the spec has no `pageserver_connstring`: superuser named
//!   after the `-C` user, UTF8, locale C (always available, even in minimal
//!   images), trust auth (pg_hba.conf is replaced by ours right after),
//!   data checksums on. initdb turns them on by default only from 18; the
//!   flag is explicit so that a fresh PGDATA is the same on every major (a
//!   torn or corrupted page is an error, not silently wrong data). A base
//!   backup keeps its source's setting: checksums are fixed per cluster.
//! - **base backup** with `pg_basebackup` from the spec's
//!   `pageserver_connstring` (a libpq connection string; our stand-in for
//!   "get a base backup from storage"). The source must know the `-C`
//!   superuser, as Neon's storage knows `cloud_admin`. Its
//!   `postgresql.auto.conf` is emptied: the spec is the only source of
//!   settings (an `ALTER SYSTEM SET port` on the source would otherwise
//!   override ours).
//!
//! A replica or static compute (`mode` `Replica` or `{"Static": lsn}`) gets
//! `standby.signal` beside the base backup: Postgres then starts as a hot
//! standby that streams from `primary_conninfo` (see `conf.rs`).
//! `pg_basebackup --verbose` prints where the backup's WAL ends; that LSN and
//! the bytes written are reported ([`BaseBackup`]).
//!
//! Both run with `--no-sync`: PGDATA is never reused (the next start deletes
//! it), so flushing the fresh files to disk buys nothing and costs hundreds of
//! milliseconds per start. Postgres itself fsyncs what it writes afterwards.
//! The commands run as the Postgres OS user, with a bounded run time, and
//! fail with the command line (password redacted) and its stderr.

use std::path::Path;
use std::time::Duration;

use super::PgError;
use super::error::stderr_tail;
use crate::env::{CommandSpec, Env, RunAs, timeout};
use crate::params::ComputeParams;
use crate::spec::{ComputeMode, ComputeSpec};

/// initdb of an empty cluster takes about a second; this is generous.
const INITDB_TIMEOUT: Duration = Duration::from_secs(300);
/// A base backup copies the whole source; bounded so a stuck source cannot
/// hang the start forever.
const BASEBACKUP_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long removing the old PGDATA is retried while something still writes
/// into it (see [`remove_pgdata`]).
const REMOVE_RETRY: Duration = Duration::from_secs(10);
/// libpq's connect timeout for pg_basebackup (PGCONNECT_TIMEOUT), seconds.
const BASEBACKUP_CONNECT_TIMEOUT_SECS: &str = "10";

/// Where PGDATA came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgdataSource {
    Initdb,
    BaseBackup,
}

impl std::fmt::Display for PgdataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Initdb => "initdb",
            Self::BaseBackup => "pg_basebackup",
        })
    }
}

/// What a base backup brought.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseBackup {
    /// Bytes of the files it wrote into PGDATA.
    pub bytes: u64,
    /// `X/Y`: where its WAL ends (the first LSN a standby started from it
    /// can stop at), as `pg_basebackup --verbose` prints it.
    pub end_lsn: Option<String>,
}

/// A prepared PGDATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub source: PgdataSource,
    /// Set when PGDATA came from a base backup.
    pub basebackup: Option<BaseBackup>,
}

/// The file that makes Postgres start as a standby.
pub const STANDBY_SIGNAL: &str = "standby.signal";

/// Stops what an earlier run left working on PGDATA: its postmaster
/// (compute_ctl killed alone leaves it running, a primary still taking
/// commits), then any initdb, pg_basebackup or postgres naming it.
pub async fn stop_leftovers<E: Env>(env: &E, params: &ComputeParams) -> Result<(), PgError> {
    checked_pgdata(params)?;
    super::stop_stale_postmaster(env, &params.pgdata, params.shutdown_timeout).await?;
    super::stop_stale_tools(env, &params.pgdata, params.shutdown_timeout).await?;
    Ok(())
}

/// Removes the old PGDATA and makes it again, empty, mode 0700, owned by
/// the Postgres OS user when we are root (after [`stop_leftovers`]).
pub async fn clear_pgdata<E: Env>(env: &E, params: &ComputeParams) -> Result<(), PgError> {
    let pgdata = checked_pgdata(params)?;
    let who = env.postgres_identity().map_err(PgError::Identity)?;
    let io = |what| io_error(what, pgdata);
    remove_pgdata(env, pgdata)
        .await
        .map_err(io("cannot remove the old PGDATA"))?;
    env.create_dir_all(pgdata, 0o700)
        .await
        .map_err(io("cannot create PGDATA"))?;
    if let Some(who) = who {
        env.chown_recursive(pgdata, who)
            .await
            .map_err(io("cannot hand PGDATA to the postgres user"))?;
    }
    Ok(())
}

/// A failed file operation `what` on `path`, for `map_err`.
fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PgError {
    move |source| PgError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// PGDATA, refused when it is a root or empty path (it is removed on every
/// start).
fn checked_pgdata(params: &ComputeParams) -> Result<&Path, PgError> {
    let pgdata = &params.pgdata;
    if pgdata.parent().is_none() || pgdata.as_os_str().is_empty() {
        return Err(PgError::Config(format!(
            "refusing to use {:?} as PGDATA (it is removed on every start); pass a dedicated directory with -D",
            pgdata.display()
        )));
    }
    Ok(pgdata)
}

/// Fills a PGDATA that [`clear_pgdata`] made: a base backup of `source` (a
/// primary with safekeepers takes it from a safekeeper), else of
/// `pageserver_connstring`, or initdb when there is neither; plus
/// `standby.signal` for a replica or static compute.
pub async fn fill_pgdata<E: Env>(
    env: &E,
    params: &ComputeParams,
    spec: &ComputeSpec,
    source: Option<&str>,
) -> Result<Prepared, PgError> {
    let pgdata = &params.pgdata;
    let who = env.postgres_identity().map_err(PgError::Identity)?;
    let io = |what| io_error(what, pgdata);
    match source.or(spec
        .pageserver_connstring
        .as_deref()
        .filter(|c| !c.trim().is_empty()))
    {
        Some(source) => {
            let end_lsn = base_backup(env, params, source, who).await?;
            let bytes = env
                .dir_size(pgdata)
                .await
                .map_err(io("cannot measure the base backup in"))?;
            if spec.mode != ComputeMode::Primary {
                let signal = pgdata.join(STANDBY_SIGNAL);
                env.write_atomic(&signal, b"")
                    .await
                    .map_err(|source| PgError::Io {
                        what: "cannot write",
                        path: signal,
                        source,
                    })?;
            } else {
                // A backup of a standby carries its signal files; a primary
                // must not come up in recovery.
                for name in [STANDBY_SIGNAL, "recovery.signal"] {
                    let signal = pgdata.join(name);
                    env.remove_file(&signal)
                        .await
                        .map_err(|source| PgError::Io {
                            what: "cannot remove",
                            path: signal,
                            source,
                        })?;
                }
            }
            Ok(Prepared {
                source: PgdataSource::BaseBackup,
                basebackup: Some(BaseBackup { bytes, end_lsn }),
            })
        }
        None => {
            initdb(env, params, who).await?;
            Ok(Prepared {
                source: PgdataSource::Initdb,
                basebackup: None,
            })
        }
    }
}

/// The WAL end point `pg_basebackup --verbose` printed.
fn wal_end_point(stderr: &[u8]) -> Option<String> {
    String::from_utf8_lossy(stderr).lines().find_map(|l| {
        l.split_once("write-ahead log end point: ")
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| v.contains('/'))
    })
}

/// Removes the old PGDATA. A run that was killed may have left a process
/// writing into it: initdb dies with compute_ctl (PDEATHSIG), but its
/// bootstrap backend (`postgres --boot`, a grandchild) finishes the file it
/// is writing and exits only at the end of its input. While files keep
/// appearing, removal fails with ENOTEMPTY: retry for a bounded time.
pub async fn remove_pgdata<E: Env>(env: &E, pgdata: &Path) -> std::io::Result<()> {
    let deadline = env.now() + REMOVE_RETRY;
    loop {
        match env.remove_dir_all(pgdata).await {
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && env.now() < deadline => {
                tracing::warn!(pgdata = %pgdata.display(), "old PGDATA still being written (a process of a killed run?); retrying its removal");
                env.sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// A command run as the Postgres user from `/` (root's working directory may
/// be unreadable for that user).
fn pg_command(params: &ComputeParams, tool: &str, who: Option<RunAs>) -> CommandSpec {
    let mut cmd = CommandSpec::new(params.pg_tool(tool)).run_as(who);
    cmd.current_dir = Some(Path::new("/").to_path_buf());
    cmd
}

/// The initdb of a fresh PGDATA; `--data-checksums` on every major (the
/// default only from 18).
fn initdb_command(params: &ComputeParams, who: Option<RunAs>) -> CommandSpec {
    pg_command(params, "initdb", who)
        .arg("-D")
        .arg(params.pgdata.display().to_string())
        .args(["-U", params.conn.user.as_str()])
        .args([
            "--encoding=UTF8",
            "--locale=C",
            "--auth=trust",
            "--data-checksums",
            "--no-sync",
            "--no-instructions",
        ])
}

async fn initdb<E: Env>(
    env: &E,
    params: &ComputeParams,
    who: Option<RunAs>,
) -> Result<(), PgError> {
    let cmd = initdb_command(params, who);
    run(env, &cmd, cmd.display(), INITDB_TIMEOUT).await?;
    Ok(())
}

async fn base_backup<E: Env>(
    env: &E,
    params: &ComputeParams,
    source: &str,
    who: Option<RunAs>,
) -> Result<Option<String>, PgError> {
    let cmd = pg_command(params, "pg_basebackup", who)
        .arg("-D")
        .arg(params.pgdata.display().to_string())
        .args(["-d", source])
        .args([
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-sync",
            "--no-manifest",
            "--no-password",
            "--verbose",
        ])
        .env("PGCONNECT_TIMEOUT", BASEBACKUP_CONNECT_TIMEOUT_SECS)
        .env("PGAPPNAME", "compute_ctl basebackup");
    let shown = cmd
        .display()
        .replace(source, &crate::spec::redact_connstr(source));
    let out = run(env, &cmd, shown, BASEBACKUP_TIMEOUT).await?;
    let end_lsn = wal_end_point(&out.stderr);
    let auto = params.pgdata.join("postgresql.auto.conf");
    env.write_atomic(
        &auto,
        b"# Emptied by compute_ctl after the base backup: the spec is the only source of settings.\n",
    )
    .await
    .map_err(|source| PgError::Io {
        what: "cannot reset",
        path: auto,
        source,
    })?;
    Ok(end_lsn)
}

/// Runs `cmd` to completion within `limit`; `shown` names it in errors
/// (also for `controldata.rs`).
pub(super) async fn run<E: Env>(
    env: &E,
    cmd: &CommandSpec,
    shown: String,
    limit: Duration,
) -> Result<crate::env::ProcessOutput, PgError> {
    let t0 = env.now();
    let out = match timeout(env, limit, env.output(cmd)).await {
        Err(_) => {
            return Err(PgError::CommandTimeout {
                command: shown,
                after: limit,
            });
        }
        Ok(Err(source)) => {
            return Err(PgError::Spawn {
                command: shown,
                source,
            });
        }
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        return Err(PgError::Command {
            command: shown,
            status: out.status,
            stderr: stderr_tail(&out.stderr),
        });
    }
    tracing::info!(command = %shown, elapsed_ms = crate::env::ms(env.now() - t0), "done");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initdb_turns_data_checksums_on_on_every_major() {
        let params = ComputeParams::unstartable();
        let cmd = initdb_command(&params, None);
        assert_eq!(cmd.program, Path::new("/nonexistent/initdb"));
        assert!(
            cmd.args.iter().any(|a| a == "--data-checksums"),
            "{}",
            cmd.display()
        );
        assert!(
            !cmd.args.iter().any(|a| a == "--no-data-checksums"),
            "{}",
            cmd.display()
        );
    }

    #[test]
    fn the_wal_end_point_is_read_from_verbose_output() {
        let err = b"pg_basebackup: initiating base backup, waiting for checkpoint to complete\n\
pg_basebackup: write-ahead log start point: 0/2000028 on timeline 1\n\
pg_basebackup: write-ahead log end point: 0/2000138\n\
pg_basebackup: base backup completed\n";
        assert_eq!(wal_end_point(err).as_deref(), Some("0/2000138"));
        assert_eq!(wal_end_point(b"nothing\n"), None);
    }
}
