//! No commit is acknowledged without a majority flush: when the client
//! sees commit `id` acknowledged, a majority of the safekeepers has
//! flushed a record holding it.

use std::collections::{BTreeMap, BTreeSet};

use super::Checker;
use crate::events::Event;

pub struct AckNeedsMajority {
    /// Safekeepers of the primary (from its start; the world's three before).
    total: usize,
    flushed: BTreeMap<String, BTreeSet<u64>>,
}

impl Default for AckNeedsMajority {
    fn default() -> Self {
        Self {
            total: crate::world::SAFEKEEPERS.len(),
            flushed: BTreeMap::new(),
        }
    }
}

impl Checker for AckNeedsMajority {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        match ev {
            Event::ComputeStarted { safekeepers, .. } => self.total = *safekeepers,
            Event::SafekeeperFlushed { name, ids, .. } => {
                self.flushed
                    .entry(name.clone())
                    .or_default()
                    .extend(ids.iter().copied());
            }
            Event::SafekeeperRecloned { name, ids, .. } => {
                self.flushed
                    .insert(name.clone(), ids.iter().copied().collect());
            }
            Event::CommitAcked { id, lsn } => {
                let holders: Vec<&str> = self
                    .flushed
                    .iter()
                    .filter(|(_, ids)| ids.contains(id))
                    .map(|(n, _)| n.as_str())
                    .collect();
                let need = compute_ctl::storage::majority(self.total);
                if holders.len() < need {
                    out.push(format!(
                        "commit {id} at {} was acknowledged without a majority flush: {} of {} safekeepers flushed it ({holders:?}), {need} needed",
                        compute_ctl::storage::Lsn(*lsn),
                        holders.len(),
                        self.total
                    ));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flushed(name: &str, ids: Vec<u64>) -> Event {
        Event::SafekeeperFlushed {
            name: name.into(),
            lsn: 0,
            tli: 1,
            prev: 0,
            chain: 0,
            ids,
        }
    }

    #[test]
    fn an_ack_before_the_second_flush_is_reported() {
        let mut c = AckNeedsMajority::default();
        let mut out = Vec::new();
        c.on_event(0, &flushed("sk1", vec![7]), &mut out);
        c.on_event(1, &Event::CommitAcked { id: 7, lsn: 1 }, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("without a majority flush: 1 of 3"));
        c.on_event(2, &flushed("sk2", vec![7]), &mut out);
        c.on_event(3, &Event::CommitAcked { id: 7, lsn: 1 }, &mut out);
        assert_eq!(out.len(), 1);
    }
}
