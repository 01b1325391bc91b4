//! No acknowledged commit is ever lost: every commit the client load saw
//! acknowledged is among those a primary holds when the client reads them
//! back after a (re)start or a move.

use std::collections::BTreeSet;

use super::Checker;
use crate::events::Event;

#[derive(Default)]
pub struct AckedNeverLost {
    acked: BTreeSet<u64>,
    /// What was acknowledged when the read-back was sent (a commit
    /// acknowledged while it is in flight may come after its snapshot).
    at_send: BTreeSet<u64>,
}

impl Checker for AckedNeverLost {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        match ev {
            Event::CommitAcked { id, .. } => {
                self.acked.insert(*id);
            }
            Event::ReadbackSent { .. } => self.at_send = self.acked.clone(),
            Event::Readback { boot, ids } => {
                let have: BTreeSet<u64> = ids.iter().copied().collect();
                let lost: Vec<u64> = self.at_send.difference(&have).copied().collect();
                if let Some(first) = lost.first() {
                    out.push(format!(
                        "acknowledged commits lost: {} of {} acknowledged commits are missing on the primary of boot {boot} (first: commit {first})",
                        lost.len(),
                        self.at_send.len()
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

    #[test]
    fn a_missing_acknowledged_commit_is_reported() {
        let mut c = AckedNeverLost::default();
        let mut out = Vec::new();
        for id in [1, 2, 3] {
            c.on_event(0, &Event::CommitAcked { id, lsn: id }, &mut out);
        }
        c.on_event(1, &Event::ReadbackSent { boot: 1 }, &mut out);
        c.on_event(1, &Event::CommitAcked { id: 9, lsn: 9 }, &mut out);
        c.on_event(
            1,
            &Event::Readback {
                boot: 1,
                ids: vec![1, 2, 3, 4],
            },
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        c.on_event(2, &Event::ReadbackSent { boot: 2 }, &mut out);
        c.on_event(
            2,
            &Event::Readback {
                boot: 2,
                ids: vec![1, 3, 9],
            },
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert!(
            out[0].contains("1 of 4 acknowledged commits are missing"),
            "{out:?}"
        );
    }
}
