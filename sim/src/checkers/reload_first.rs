//! A reconfigure that moves storage and changes the catalog reloads
//! Postgres (by SIGHUP) before its first catalog write.

use super::Checker;
use super::window::{Log, ledger_sees};
use crate::events::{Event, ReloadVia};
use crate::ledger::FaultLedger;
use crate::pgmodel::StmtKind;

#[derive(Default)]
pub struct ReloadBeforeSql {
    ledger: FaultLedger,
    /// Catalog writes of any session.
    writes: Log<()>,
    reloads: Log<()>,
}

impl Checker for ReloadBeforeSql {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        ledger_sees(&mut self.ledger, ev);
        match ev {
            Event::Statement {
                kind: StmtKind::CatalogWrite,
                ..
            } => self.writes.push(t_us, ()),
            Event::Reload {
                via: ReloadVia::Signal,
                ok: true,
                ..
            } => self.reloads.push(t_us, ()),
            Event::StorageMoveApplied {
                window_us: (t0, t1),
            } => {
                let first_write = self.writes.first_in(*t0, *t1);
                let reload = self.reloads.first_in(*t0, *t1);
                match (reload, first_write) {
                    (None, _) if !self.ledger.excuses_stale_config() => {
                        out.push("storage move applied without a reload".into())
                    }
                    (Some(r), Some(w)) if w < r => out.push(format!(
                        "catalog SQL at {w} µs ran before the reload at {r} µs (storage move must reload first)"
                    )),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}
