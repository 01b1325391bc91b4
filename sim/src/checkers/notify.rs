//! A skip-flag notify answered 200 issued no catalog statement and no SQL
//! reload, read `pg_file_settings` at most once (the check after its
//! reload, issue 24), reloaded Postgres by SIGHUP, reports no catalog
//! statement, and took at most [`NOTIFY_BOUND`] of simulated time
//! (whatever the number of roles) unless a fault held queries back.

use std::sync::Arc;
use std::time::Duration;

use super::Checker;
use super::window::{InFlight, Log, ledger_sees, supervisor};
use crate::events::{Event, ReloadVia, Request};
use crate::ledger::FaultLedger;

/// The bound on a skip-flag reconfigure (write config + SIGHUP), in
/// simulated time. It does not depend on the number of roles.
pub const NOTIFY_BOUND: Duration = Duration::from_millis(250);

#[derive(Default)]
pub struct SkipFlagNotify {
    ledger: FaultLedger,
    /// The supervisor's catalog statements and SQL reloads.
    forbidden: Log<Arc<str>>,
    /// The supervisor's `pg_file_settings` reads.
    file_settings: Log<()>,
    /// SIGHUPs Postgres took so far.
    reloads: usize,
    /// Notifies in flight, with the reload count at their send.
    sent: InFlight<usize>,
}

impl Checker for SkipFlagNotify {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        ledger_sees(&mut self.ledger, ev);
        match ev {
            Event::Statement { app, kind, sql, .. } if supervisor(app) => {
                let horizon = self.sent.horizon(t_us);
                if kind.is_notify_forbidden() {
                    self.forbidden.forget_before(horizon);
                    self.forbidden.push(t_us, sql.clone());
                }
                if **sql == *compute_ctl::pg::FILE_SETTINGS_QUERY {
                    self.file_settings.forget_before(horizon);
                    self.file_settings.push(t_us, ());
                }
            }
            Event::Reload {
                via: ReloadVia::Signal,
                ok: true,
                ..
            } => self.reloads += 1,
            Event::RequestSent {
                req,
                kind: Request::Notify,
                ..
            } => self.sent.sent(*req, t_us, self.reloads),
            Event::Answered {
                req,
                kind: Request::Notify,
                op,
                code,
                seen,
                ..
            } => {
                let Some((t0, reloads_before)) = self.sent.answered(*req) else {
                    return;
                };
                if *code == Some(200) {
                    self.check(*op, t0, t_us, reloads_before, seen.as_deref(), out);
                }
            }
            _ => {}
        }
    }
}

impl SkipFlagNotify {
    fn check(
        &self,
        op: u64,
        t0: u64,
        t1: u64,
        reloads_before: usize,
        seen: Option<&crate::events::Seen>,
        out: &mut Vec<String>,
    ) {
        let stmts: Vec<&Arc<str>> = self.forbidden.window(t0, t1).collect();
        if let Some(first) = stmts.first() {
            out.push(format!(
                "skip-flag notify (op {op}) issued {} catalog/reload statement(s); first: {}",
                stmts.len(),
                first.chars().take(80).collect::<String>()
            ));
        }
        let checks = self.file_settings.window(t0, t1).count();
        if checks > 1 {
            out.push(format!(
                "skip-flag notify (op {op}) read pg_file_settings {checks} times (one check after its reload)"
            ));
        }
        let this_op = Some(crate::specgen::operation_uuid(op));
        let Some(r) = seen
            .and_then(|s| s.state.as_ref())
            .and_then(|st| st.last_reconfigure.as_ref())
            .filter(|r| r.operation_uuid == this_op)
        else {
            return;
        };
        if u128::from(r.total_ms) > NOTIFY_BOUND.as_millis()
            && !self.ledger.excuses_slow_notify(t0, t1)
        {
            out.push(format!(
                "skip-flag notify (op {op}) took {} ms of simulated time (bound {} ms)",
                r.total_ms,
                NOTIFY_BOUND.as_millis()
            ));
        }
        if r.catalog_statements != 0 {
            out.push(format!(
                "skip-flag notify (op {op}) reports {} catalog statements",
                r.catalog_statements
            ));
        }
        if self.reloads == reloads_before && !self.ledger.excuses_missing_reload() {
            out.push(format!(
                "skip-flag notify (op {op}) did not reload Postgres by SIGHUP"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::StmtKind;

    fn stmt(app: &str, kind: StmtKind, sql: &str) -> Event {
        Event::Statement {
            app: app.into(),
            db: "postgres".into(),
            kind,
            sql: sql.into(),
            ok: true,
        }
    }

    fn notify(req: u64, sent: bool) -> Event {
        if sent {
            Event::RequestSent {
                req,
                kind: Request::Notify,
                path: "/configure".into(),
                op: 7,
                seen: None,
            }
        } else {
            Event::Answered {
                req,
                kind: Request::Notify,
                path: "/configure".into(),
                op: 7,
                outcome: "200".into(),
                code: Some(200),
                ms: 0,
                seen: None,
            }
        }
    }

    #[test]
    fn catalog_sql_inside_a_notify_window_is_reported_and_outside_is_not() {
        let app = compute_ctl::pg::APPLICATION_NAME;
        let mut c = SkipFlagNotify::default();
        let mut out = Vec::new();
        // Before the notify (an earlier configure's apply): forgotten.
        c.on_event(
            1,
            &stmt(app, StmtKind::CatalogWrite, "CREATE ROLE a"),
            &mut out,
        );
        c.on_event(5, &notify(1, true), &mut out);
        c.on_event(
            6,
            &stmt("load", StmtKind::CatalogRead, "SELECT 1"),
            &mut out,
        );
        c.on_event(7, &notify(1, false), &mut out);
        assert!(out.is_empty(), "{out:?}");
        c.on_event(8, &notify(2, true), &mut out);
        c.on_event(
            9,
            &stmt(app, StmtKind::Reload, "SELECT pg_reload_conf()"),
            &mut out,
        );
        c.on_event(10, &notify(2, false), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            out[0].contains("issued 1 catalog/reload statement(s); first: SELECT pg_reload_conf()"),
            "{out:?}"
        );
    }
}
