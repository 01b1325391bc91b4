//! The commit LSN a replica's supervisor records is what a majority of the
//! safekeepers acknowledged: the highest LSN at least a majority reached,
//! from the last answer of each during the sync.

use std::collections::BTreeMap;

use compute_ctl::storage::Lsn;

use super::Checker;
use crate::events::Event;

#[derive(Default)]
pub struct CommitLsnIsMajority {
    /// The last flush LSN each safekeeper answered.
    last: BTreeMap<String, u64>,
}

impl Checker for CommitLsnIsMajority {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        match ev {
            Event::SafekeeperAcked { name, lsn } => {
                self.last.insert(name.clone(), *lsn);
            }
            Event::CommitLsnReported {
                commit,
                safekeepers,
            } => {
                let commit = Lsn(*commit);
                let reached: Vec<Lsn> = self.last.values().map(|l| Lsn(*l)).collect();
                match compute_ctl::storage::commit_lsn(*safekeepers, &reached) {
                    Some(majority) if commit < majority => out.push(format!(
                        "commit LSN {commit} is below {majority}, which a majority of the safekeepers acknowledged"
                    )),
                    Some(majority) if commit > majority => out.push(format!(
                        "commit LSN {commit} is above {majority}: no majority acknowledged it"
                    )),
                    None => out.push(format!("commit LSN {commit} without a quorum of answers")),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}
