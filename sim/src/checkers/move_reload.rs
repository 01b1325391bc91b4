//! A safekeeper move is a notify (issue 21): answered 200, it issued no
//! catalog statement and no SQL reload while in flight; refused (409, a
//! stale `safekeepers_generation`), it did not reload Postgres at all. A
//! move the scenario kills the host under is not judged: the statements
//! around a kill belong to the boots on either side of it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Checker;
use super::window::{Log, supervisor};
use crate::events::{Event, ReloadVia};

#[derive(Default)]
pub struct MoveIsANotify {
    /// The supervisor's catalog statements and SQL reloads.
    forbidden: Log<Arc<str>>,
    /// SIGHUPs Postgres took so far.
    reloads: usize,
    /// Moves in flight, by op: when sent and the reloads then.
    open: BTreeMap<u64, (u64, usize)>,
}

impl Checker for MoveIsANotify {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        match ev {
            Event::Statement { app, kind, sql, .. }
                if supervisor(app) && kind.is_notify_forbidden() =>
            {
                let horizon = self.open.values().map(|(t, _)| *t).min();
                self.forbidden.forget_before(horizon.unwrap_or(t_us));
                if horizon.is_some() {
                    self.forbidden.push(t_us, sql.clone());
                }
            }
            Event::Reload {
                via: ReloadVia::Signal,
                ok: true,
                ..
            } => self.reloads += 1,
            Event::SafekeeperMoveSent {
                op, killed: false, ..
            } => {
                self.open.insert(*op, (t_us, self.reloads));
            }
            Event::SafekeeperMoveAnswered { op, status, .. } => {
                let Some((t0, reloads)) = self.open.remove(op) else {
                    return;
                };
                match status {
                    Some(200) => {
                        let stmts: Vec<_> = self.forbidden.window(t0, t_us).collect();
                        if let Some(first) = stmts.first() {
                            out.push(format!(
                                "the safekeeper move (op {op}) issued {} catalog/reload statement(s); first: {first}",
                                stmts.len()
                            ));
                        }
                    }
                    Some(409) if self.reloads != reloads => out.push(format!(
                        "a notify with a stale safekeepers_generation (op {op}) reloaded Postgres ({} reload(s))",
                        self.reloads - reloads
                    )),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgmodel::StmtKind;

    fn sent(op: u64, killed: bool) -> Event {
        Event::SafekeeperMoveSent {
            boot: 0,
            op,
            from: vec!["sk1".into()],
            to: vec!["sk2".into()],
            generation: Some(2),
            killed,
        }
    }

    fn answered(op: u64, status: u16) -> Event {
        Event::SafekeeperMoveAnswered {
            boot: 0,
            op,
            status: Some(status),
        }
    }

    fn grant() -> Event {
        Event::Statement {
            app: compute_ctl::pg::APPLICATION_NAME.into(),
            db: "postgres".into(),
            kind: StmtKind::CatalogWrite,
            sql: "GRANT x TO y".into(),
            ok: true,
        }
    }

    fn sighup() -> Event {
        Event::Reload {
            via: ReloadVia::Signal,
            ok: true,
            error: None,
        }
    }

    #[test]
    fn catalog_work_inside_an_answered_move_is_reported() {
        let mut c = MoveIsANotify::default();
        let mut out = Vec::new();
        // Before the move: not its doing.
        c.on_event(0, &grant(), &mut out);
        c.on_event(1, &sent(3, false), &mut out);
        c.on_event(2, &sighup(), &mut out);
        c.on_event(3, &answered(3, 200), &mut out);
        assert!(out.is_empty(), "{out:?}");
        c.on_event(4, &sent(4, false), &mut out);
        c.on_event(5, &grant(), &mut out);
        c.on_event(6, &answered(4, 200), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("op 4") && out[0].contains("GRANT x TO y"));
    }

    #[test]
    fn a_refused_move_that_reloads_is_reported_and_a_killed_one_is_not_judged() {
        let mut c = MoveIsANotify::default();
        let mut out = Vec::new();
        c.on_event(1, &sent(5, true), &mut out);
        c.on_event(2, &grant(), &mut out);
        c.on_event(3, &answered(5, 200), &mut out);
        assert!(out.is_empty(), "{out:?}");
        c.on_event(4, &sent(6, false), &mut out);
        c.on_event(5, &sighup(), &mut out);
        c.on_event(6, &answered(6, 409), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("stale safekeepers_generation (op 6)"));
    }
}
