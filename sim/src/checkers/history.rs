//! A safekeeper's WAL is one history: every batch it flushes extends the
//! chain its WAL ended with (`crate::wal`). A batch of another history
//! appended after its own (what a new primary that kept the old timeline
//! streams to a safekeeper holding WAL past its fork) mixes two histories.
//! A re-clone by the storage starts the safekeeper on its donor's history.

use std::collections::BTreeMap;

use super::Checker;
use crate::events::Event;
use compute_ctl::storage::Lsn;

#[derive(Default)]
pub struct OneHistoryPerSafekeeper {
    /// Each safekeeper's chain at the end of its WAL.
    chains: BTreeMap<String, u64>,
}

impl Checker for OneHistoryPerSafekeeper {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        if let Event::SafekeeperRecloned { name, chain, .. } = ev {
            self.chains.insert(name.clone(), *chain);
            return;
        }
        let Event::SafekeeperFlushed {
            name,
            lsn,
            tli,
            prev,
            chain,
            ..
        } = ev
        else {
            return;
        };
        let have = self
            .chains
            .get(name)
            .copied()
            .unwrap_or(crate::wal::GENESIS);
        if *prev != have {
            out.push(format!(
                "two WAL histories mixed on safekeeper {name}: it appended WAL of timeline {tli} (up to {}) that does not continue its own",
                Lsn(*lsn)
            ));
        }
        self.chains.insert(name.clone(), *chain);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_that_does_not_continue_the_chain_is_reported() {
        let mut c = OneHistoryPerSafekeeper::default();
        let mut out = Vec::new();
        let f = |prev, chain| Event::SafekeeperFlushed {
            name: "sk1".into(),
            lsn: 1,
            tli: 1,
            prev,
            chain,
            ids: vec![],
        };
        c.on_event(0, &f(crate::wal::GENESIS, 5), &mut out);
        c.on_event(1, &f(5, 6), &mut out);
        assert!(out.is_empty());
        c.on_event(2, &f(5, 7), &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].contains("two WAL histories mixed on safekeeper sk1"));
    }
}
