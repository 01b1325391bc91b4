//! Storage invariants of every seed: the supervisor never restarts Postgres
//! within a boot (a notify is a reload), and the replay LSN it reports
//! never goes backwards within a boot.

use std::collections::BTreeMap;

use compute_ctl::storage::Lsn;

use super::Checker;
use crate::events::Event;

#[derive(Default)]
pub struct OnePostmasterPerBoot {
    spawns: BTreeMap<u64, u64>,
}

impl Checker for OnePostmasterPerBoot {
    fn on_event(&mut self, _t_us: u64, ev: &Event, _out: &mut Vec<String>) {
        if let Event::PostmasterSpawned { boot, .. } = ev {
            *self.spawns.entry(*boot).or_default() += 1;
        }
    }

    fn at_end(&mut self, out: &mut Vec<String>) {
        for (boot, n) in &self.spawns {
            if *n > 1 {
                out.push(format!(
                    "boot {boot} spawned {n} postmasters: Postgres was restarted"
                ));
            }
        }
    }
}

#[derive(Default)]
pub struct ReplayMonotonic {
    last: Option<(u64, u64)>,
}

impl Checker for ReplayMonotonic {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        let Event::ReplayReported { boot, lsn } = ev else {
            return;
        };
        if let Some((b0, l0)) = self.last {
            if b0 == *boot && *lsn < l0 {
                out.push(format!(
                    "the reported replay LSN went backwards: {} -> {}",
                    Lsn(l0),
                    Lsn(*lsn)
                ));
            }
        }
        self.last = Some((*boot, *lsn));
    }
}
