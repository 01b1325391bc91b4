//! The replication watcher of a replica or static compute: samples what its
//! WAL receiver does ([`storage::read_replication`]) into the state, so that
//! `/status` answers from the watch channel at once. It samples every
//! [`SAMPLE_INTERVAL`] and right after every applied spec (a move), and ends
//! when the compute stops or is promoted. Under `--max-ready-lag` a
//! replica's source is asked each time too; the positions it was seen at ([`SourceTrail`]) live here, for
//! the lag in time, and start anew when the source changes.

use std::sync::Arc;
use std::time::Duration;

use super::Compute;
use crate::env::Env;
use crate::spec::ComputeMode;
use crate::storage::{self, Endpoint, ReadReplication, SourceTrail};

/// How often the replication state is read while nothing happens.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

impl<E: Env> Compute<E> {
    /// Starts the watcher task.
    pub(super) fn watch_replication(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move { this.replication_loop().await });
    }

    async fn replication_loop(self: Arc<Self>) {
        let mut rx = self.subscribe();
        let mut trail = SourceTrail::default();
        let mut trail_of: Option<String> = None;
        loop {
            let (spec, seen) = {
                let st = rx.borrow_and_update();
                if st.supervisor_exited || st.status.is_terminating() {
                    return;
                }
                (st.spec.clone(), st.applied_generation)
            };
            // A promoted replica (`POST /promote`) has no WAL receiver to watch.
            let Some(spec) = spec.filter(|s| s.mode != ComputeMode::Primary) else {
                return;
            };
            let upstream = spec
                .pageserver_connstring
                .as_deref()
                .and_then(|c| Endpoint::parse(c, &self.params.conn.user).ok());
            let mut sample = self.state().replication.unwrap_or_default();
            sample.upstream = spec
                .pageserver_connstring
                .as_deref()
                .map(crate::pg::redact_connstr);
            if trail_of != spec.pageserver_connstring {
                // A move: the old source's positions say nothing of the new one.
                trail = SourceTrail::default();
                trail_of.clone_from(&spec.pageserver_connstring);
                sample.source_lsn = None;
            }
            let what = ReadReplication {
                conn: &self.params.conn,
                upstream: upstream.as_ref(),
                ask_source: self.params.max_ready_lag.is_some(),
            };
            storage::read_replication(&self.env, &what, &mut sample, &mut trail).await;
            self.state.send_if_modified(|st| {
                let promoted = st
                    .spec
                    .as_ref()
                    .is_some_and(|s| s.mode == ComputeMode::Primary);
                if promoted || st.replication.as_ref() == Some(&sample) {
                    false
                } else {
                    st.replication = Some(sample);
                    true
                }
            });
            // Our own write marked the channel changed; only a new applied
            // spec or a stop should cut the pause short.
            rx.borrow_and_update();
            tokio::select! {
                biased;
                _ = rx.wait_for(|st| {
                    st.applied_generation != seen
                        || st.supervisor_exited
                        || st.status.is_terminating()
                }) => {}
                () = self.env.sleep(SAMPLE_INTERVAL) => {}
            }
        }
    }
}
