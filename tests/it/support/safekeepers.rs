//! Safekeepers for the durable-primary tests: a bootstrap cluster with the
//! table the tests write, three streaming standbys of it (the safekeepers),
//! then the bootstrap cluster stopped, so that the compute is the only
//! primary they ever follow again.

use std::time::Duration;

use super::postgres::TestPostgres;
use super::storage::STORAGE_SETTINGS;
use super::wait_for;

/// Three safekeepers that hold the table `acked (id int primary key)`.
pub struct Safekeepers {
    pub members: Vec<TestPostgres>,
}

impl Safekeepers {
    pub async fn start() -> Self {
        let bootstrap = TestPostgres::storage().await;
        bootstrap
            .exec("CREATE TABLE acked (id int PRIMARY KEY); CHECKPOINT")
            .await;
        let mut members = Vec::new();
        for _ in 0..3 {
            members.push(TestPostgres::standby_of(&bootstrap).await);
        }
        let end = bootstrap.wal_lsn().await;
        for sk in &members {
            wait_for(
                Duration::from_secs(30),
                "a safekeeper to replay the bootstrap cluster",
                || async {
                    (sk.value(&format!("SELECT pg_last_wal_replay_lsn() >= '{end}'"))
                        .await
                        == "t")
                        .then_some(())
                },
            )
            .await;
        }
        drop(bootstrap);
        Self { members }
    }

    /// `127.0.0.1:port` of each (Neon's safekeeper form).
    pub fn connstrings(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect()
    }

    /// Kills safekeeper `i` (every process, SIGKILL).
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill_all();
    }

    /// Starts safekeeper `i` again on its data (crash recovery): it follows
    /// whatever `primary_conninfo` it was last given.
    pub async fn restart(&mut self, i: usize) {
        self.members[i].restart(STORAGE_SETTINGS).await;
    }
}
