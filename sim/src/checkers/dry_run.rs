//! A dry run changes nothing: no catalog write and no reload while it is
//! in flight, and the same catalog and compute state (status, generation,
//! applied generation) after it as before, on the same boot of the host.

use std::sync::Arc;

use compute_ctl::state::ComputeStatus;

use super::Checker;
use super::window::{InFlight, Log, supervisor};
use crate::events::{Event, ReloadVia, Request, Seen};

/// A catalog write of the supervisor: (database, statement).
pub type Write = (Arc<str>, Arc<str>);

/// `sql` sent to `db` as a plan shows it (passwords redacted).
pub fn as_planned(db: &str, sql: &str) -> String {
    match crate::pgmodel::sql::parse_op(sql, db) {
        Ok(Some(op)) => compute_ctl::catalog::render_redacted(&op),
        _ => sql.to_string(),
    }
}

#[derive(Default)]
pub struct DryRunChangesNothing {
    writes: Log<Write>,
    reloads: usize,
    /// Dry runs in flight: the host before, and the reloads until then.
    sent: InFlight<(Option<Box<Seen>>, usize)>,
}

fn state(seen: &Seen) -> Option<(ComputeStatus, u64, u64)> {
    seen.state
        .as_ref()
        .map(|s| (s.status, s.generation, s.applied_generation))
}

impl Checker for DryRunChangesNothing {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        match ev {
            Event::Statement {
                app, kind, db, sql, ..
            } if supervisor(app) && *kind == crate::pgmodel::StmtKind::CatalogWrite => {
                self.writes.forget_before(self.sent.horizon(t_us));
                self.writes.push(t_us, (db.clone(), sql.clone()));
            }
            Event::Reload {
                via: ReloadVia::Signal,
                ok: true,
                ..
            } => self.reloads += 1,
            Event::RequestSent {
                req,
                kind: Request::DryRun,
                seen,
                ..
            } => self.sent.sent(*req, t_us, (seen.clone(), self.reloads)),
            Event::Answered {
                req,
                kind: Request::DryRun,
                seen,
                ..
            } => {
                let Some((t0, (Some(before), reloads))) = self.sent.answered(*req) else {
                    return;
                };
                let Some(after) = seen.as_deref() else {
                    return;
                };
                if after.boot != before.boot {
                    return;
                }
                if let Some((db, sql)) = self.writes.window(t0, t_us).next() {
                    out.push(format!(
                        "a dry run issued catalog writes; first: {}",
                        as_planned(db, sql).chars().take(80).collect::<String>()
                    ));
                }
                if self.reloads != reloads {
                    out.push("a dry run reloaded Postgres".into());
                }
                let catalog = |s: &Seen| s.catalog.as_ref().map(|c| c.0.clone());
                if catalog(after) != catalog(&before) {
                    out.push("the catalog changed during a dry run".into());
                }
                if state(after) != state(&before) {
                    out.push(format!(
                        "a dry run changed the compute's state: {:?} -> {:?}",
                        state(&before),
                        state(after)
                    ));
                }
            }
            _ => {}
        }
    }
}
