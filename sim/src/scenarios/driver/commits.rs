//! The durable scenarios' client, through its [`Driver`]: a load that
//! writes one commit per transaction and logs each acknowledged one
//! ([`Event::CommitAcked`]), and the readback of what a primary holds
//! ([`Event::Readback`], or [`Event::ReadbackFailed`] when it gets none),
//! for the checkers to compare.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Driver, Shared};
use crate::events::Event;
use crate::names::{COMPUTE, PG_PORT, SUPERUSER};
use crate::pgmodel::durable::{READ_ACKED_SQL, commit_sql};

/// Stops the commit load when dropped.
pub struct Commits(Arc<AtomicBool>);

impl Drop for Commits {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How long the client waits for one commit (it may wait for a quorum).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(3);
/// How many times the client tries a read-back before it gives up.
const READBACK_TRIES: u32 = 5;

async fn connect(host: &str) -> Option<tokio_postgres::Client> {
    let stream = super::connect(host, PG_PORT).await?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.user(SUPERUSER)
        .dbname("postgres")
        .application_name(crate::names::LOAD_APPLICATION);
    let (client, conn) = cfg.connect_raw(stream, tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(client)
}

fn first_value(msgs: &[tokio_postgres::SimpleQueryMessage]) -> Option<String> {
    msgs.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

impl Driver {
    /// `clients` sessions, each committing one row per transaction, until
    /// the returned [`Commits`] is dropped.
    pub fn start_commits(&self, clients: usize) -> Commits {
        self.start_commits_on(clients, COMPUTE)
    }

    /// [`Driver::start_commits`] to the primary on `host`.
    pub fn start_commits_on(&self, clients: usize, host: &'static str) -> Commits {
        let stop = Arc::new(AtomicBool::new(false));
        for i in 0..clients {
            let (stop, shared) = (stop.clone(), self.shared.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(client) = connect(host).await {
                        commit_loop(&shared, &client, &stop, i).await;
                    }
                    super::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        Commits(stop)
    }

    /// Reads back what the running primary holds (a few tries).
    pub async fn readback(&self) {
        self.readback_on(COMPUTE).await;
    }

    /// [`Driver::readback`] from the primary on `host`; giving up on it is
    /// logged ([`Event::ReadbackFailed`]), for `checkers/readback_running.rs`.
    pub async fn readback_on(&self, host: &str) {
        if !self.try_readback_on(host).await {
            self.emit(Event::ReadbackFailed {
                host: host.to_string(),
                tries: READBACK_TRIES,
            });
        }
    }

    /// A read-back from the primary on `host` ([`READBACK_TRIES`] tries);
    /// whether it got one.
    pub async fn try_readback_on(&self, host: &str) -> bool {
        for _ in 0..READBACK_TRIES {
            if let Some(client) = connect(host).await {
                let boot = self.boot();
                self.emit(Event::ReadbackSent { boot });
                let answer =
                    super::timeout(Duration::from_secs(2), client.simple_query(READ_ACKED_SQL))
                        .await;
                if let Ok(Ok(msgs)) = answer {
                    let ids = first_value(&msgs)
                        .unwrap_or_default()
                        .split(',')
                        .filter_map(|v| v.parse().ok())
                        .collect();
                    self.emit(Event::Readback { boot, ids });
                    return true;
                }
            }
            super::sleep(Duration::from_millis(200)).await;
        }
        false
    }
}

/// One session's commits on `client` until it fails or `stop`.
async fn commit_loop(
    shared: &Shared,
    client: &tokio_postgres::Client,
    stop: &AtomicBool,
    i: usize,
) {
    while !stop.load(Ordering::Relaxed) {
        let id = {
            let mut sh = shared.lock();
            sh.wal.next_commit += 1;
            sh.wal.next_commit
        };
        let sql = commit_sql(id);
        let answer = super::timeout(COMMIT_TIMEOUT, client.simple_query(&sql)).await;
        let Ok(Ok(msgs)) = answer else {
            // Unknown outcome: not acknowledged.
            return;
        };
        let lsn = first_value(&msgs)
            .and_then(|l| l.parse::<compute_ctl::storage::Lsn>().ok())
            .map_or(0, |l| l.0);
        shared.emit(Event::CommitAcked { id, lsn });
        super::sleep(Duration::from_millis(20 + 10 * (i as u64 % 3))).await;
    }
}
