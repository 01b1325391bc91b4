//! The apply right after a dry run sends exactly the catalog statements
//! the dry run predicted (as multisets: databases run concurrently).

use super::Checker;
use super::dry_run::{Write, as_planned};
use super::window::{Log, supervisor};
use crate::events::Event;

#[derive(Default)]
pub struct PlanMatchesApply {
    /// Every catalog write of the supervisor (the window of an apply is
    /// known only once it is answered).
    writes: Log<Write>,
}

impl Checker for PlanMatchesApply {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        match ev {
            Event::Statement {
                app, kind, db, sql, ..
            } if supervisor(app) && *kind == crate::pgmodel::StmtKind::CatalogWrite => {
                self.writes.push(t_us, (db.clone(), sql.clone()));
            }
            Event::PlanApplied {
                window_us: (t0, t1),
                predicted,
            } => {
                let mut sent: Vec<(String, String)> = self
                    .writes
                    .window(*t0, *t1)
                    .map(|(db, sql)| (db.to_string(), as_planned(db, sql)))
                    .collect();
                let mut want = predicted.clone();
                sent.sort();
                want.sort();
                if sent != want {
                    let missing: Vec<_> =
                        want.iter().filter(|w| !sent.contains(w)).take(2).collect();
                    let extra: Vec<_> = sent.iter().filter(|s| !want.contains(s)).take(2).collect();
                    out.push(format!(
                        "the apply sent {} catalog statement(s), the dry run predicted {}: predicted but not sent {missing:?}, sent but not predicted {extra:?}",
                        sent.len(),
                        want.len()
                    ));
                }
            }
            _ => {}
        }
    }
}
