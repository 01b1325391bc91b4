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
    /// Notifies in flight, with what was noted at their send.
    sent: InFlight<AtSend>,
    /// Configure-like requests (notify, configure, re-send) in flight, and
    /// sent so far: each may read `pg_file_settings` once after its reload,
    /// inside the window of a notify it overlaps (a burst).
    open: usize,
    sends: usize,
}

/// What a notify's check needs from the moment it was sent.
#[derive(Debug, Clone, Copy)]
struct AtSend {
    reloads: usize,
    /// Other configure-like requests in flight then.
    open: usize,
    /// Configure-like requests sent before it.
    sends: usize,
}

fn configure_like(kind: Request) -> bool {
    matches!(kind, Request::Notify | Request::Configure | Request::Resend)
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
            Event::RequestSent { req, kind, .. } if configure_like(*kind) => {
                if *kind == Request::Notify {
                    let at = AtSend {
                        reloads: self.reloads,
                        open: self.open,
                        sends: self.sends,
                    };
                    self.sent.sent(*req, t_us, at);
                }
                self.open += 1;
                self.sends += 1;
            }
            Event::Answered {
                req,
                kind,
                op,
                code,
                seen,
                ..
            } if configure_like(*kind) => {
                self.open = self.open.saturating_sub(1);
                if *kind != Request::Notify {
                    return;
                }
                let Some((t0, at)) = self.sent.answered(*req) else {
                    return;
                };
                if *code == Some(200) {
                    // The others in flight at its send, and sent after it.
                    let overlapped = at.open + (self.sends - at.sends - 1);
                    self.check(
                        *op,
                        (t0, t_us),
                        at.reloads,
                        overlapped,
                        seen.as_deref(),
                        out,
                    );
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
        (t0, t1): (u64, u64),
        reloads_before: usize,
        overlapped: usize,
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
        // One check after its reload, plus one for each configure whose
        // processing its window overlapped (a burst of notifies in flight).
        let checks = self.file_settings.window(t0, t1).count();
        if checks > 1 + overlapped {
            out.push(format!(
                "skip-flag notify (op {op}) read pg_file_settings {checks} times (one check after its reload; {overlapped} other configure request(s) overlapped it)"
            ));
        }
        let this_op = Some(crate::names::operation_uuid(op));
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
    use crate::pgmodel::StmtKind;

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

    #[test]
    fn a_burst_allows_one_check_per_overlapping_notify_and_no_more() {
        let app = compute_ctl::pg::APPLICATION_NAME;
        let check = || stmt(app, StmtKind::Other, compute_ctl::pg::FILE_SETTINGS_QUERY);
        let mut c = SkipFlagNotify::default();
        let mut out = Vec::new();
        // Two notifies in flight; both checks fall in the window of the one
        // answered last: one each, not a second read of its own.
        c.on_event(1, &notify(1, true), &mut out);
        c.on_event(2, &notify(2, true), &mut out);
        c.on_event(3, &check(), &mut out);
        c.on_event(4, &notify(1, false), &mut out);
        c.on_event(5, &check(), &mut out);
        c.on_event(6, &notify(2, false), &mut out);
        assert!(out.is_empty(), "{out:?}");
        // Alone, a notify that reads it twice is reported.
        c.on_event(7, &notify(3, true), &mut out);
        c.on_event(8, &check(), &mut out);
        c.on_event(9, &check(), &mut out);
        c.on_event(10, &notify(3, false), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("read pg_file_settings 2 times"), "{out:?}");
    }
}
