//! Storage clusters for the storage tests: a throwaway primary
//! ([`TestPostgres::start`]) and a streaming standby of it, made the way a
//! second storage is made (`pg_basebackup -R`), with the WAL helpers the
//! tests poll on.

use std::process::Command;
use std::time::Duration;

use super::os::{create_postgres_dir, postgres_user, temp_dir};
use super::postgres::TestPostgres;
use super::{pg_tool, query_value, wait_for};
use std::os::unix::process::CommandExt;

/// Settings of a storage cluster that replicas stream from: WAL kept long
/// enough for a replica that was away, and quick WAL receiver retries on a
/// standby.
pub const STORAGE_SETTINGS: &[(&str, &str)] = &[
    ("wal_keep_size", "256MB"),
    ("wal_retrieve_retry_interval", "200ms"),
    ("max_wal_senders", "10"),
];

impl TestPostgres {
    /// A primary storage cluster.
    pub async fn storage() -> TestPostgres {
        TestPostgres::start(STORAGE_SETTINGS).await
    }

    /// A streaming standby of `primary` (a second storage with the same data).
    pub async fn standby_of(primary: &TestPostgres) -> TestPostgres {
        let dir = temp_dir();
        let data = dir.path().join("data");
        create_postgres_dir(&data);
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod 0700 the standby's data directory");
        let (uid, gid) = postgres_user();
        let out = Command::new(pg_tool("pg_basebackup"))
            .args(["-D", data.to_str().unwrap(), "-d", &primary.connstr()])
            .args([
                "-R",
                "--wal-method=stream",
                "--checkpoint=fast",
                "--no-sync",
            ])
            .uid(uid)
            .gid(gid)
            .current_dir(dir.path())
            .output()
            .expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup of the standby failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let standby = TestPostgres::launch(dir, STORAGE_SETTINGS).await;
        assert_eq!(standby.value("SELECT pg_is_in_recovery()").await, "t");
        standby
    }

    /// The first column of a one-row query, as text.
    pub async fn value(&self, sql: &str) -> String {
        query_value(&self.client("postgres").await, sql)
            .await
            .unwrap_or_else(|| panic!("no row from {sql}"))
    }

    /// Runs statements as the superuser.
    pub async fn exec(&self, sql: &str) {
        self.client("postgres")
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Where this server's WAL is: flushed on a primary, replayed on a standby.
    pub async fn wal_lsn(&self) -> String {
        self.value(
            "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_flush_lsn() END",
        )
        .await
    }

    /// Promotes a standby and waits until it accepts writes.
    pub async fn promote(&self) {
        assert_eq!(self.value("SELECT pg_promote(true, 60)").await, "t");
        wait_for(
            Duration::from_secs(30),
            "the promoted storage to accept writes",
            || async { (self.value("SELECT pg_is_in_recovery()").await == "f").then_some(()) },
        )
        .await;
    }
}
