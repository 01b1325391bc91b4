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
    /// The compute is `running` now (no operation of the supervisor under
    /// way), and when it last became so.
    running: bool,
    became_running: Log<()>,
}

/// What a notify's check needs from the moment it was sent.
#[derive(Debug, Clone, Copy)]
struct AtSend {
    reloads: usize,
    /// Other configure-like requests in flight then.
    open: usize,
    /// Configure-like requests sent before it.
    sends: usize,
    /// The compute was not `running`: an earlier operation (a start, a
    /// configure whose client gave up) was still under way, and its
    /// statements until it ended are not the notify's.
    busy: bool,
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
            Event::Status { status, .. } => {
                let running = *status == compute_ctl::state::ComputeStatus::Running;
                if running && !self.running {
                    self.became_running.forget_before(self.sent.horizon(t_us));
                    self.became_running.push(t_us, ());
                }
                self.running = running;
            }
            Event::RequestSent { req, kind, .. } if configure_like(*kind) => {
                if *kind == Request::Notify {
                    let at = AtSend {
                        reloads: self.reloads,
                        open: self.open,
                        sends: self.sends,
                        busy: !self.running,
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
                    // Busy at its send: its own work began once the
                    // operation under way ended.
                    let from = if at.busy {
                        self.became_running.first_in(t0, t_us).unwrap_or(t0)
                    } else {
                        t0
                    };
                    self.check(
                        *op,
                        (from, t0, t_us),
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
        (from, t0, t1): (u64, u64, u64),
        reloads_before: usize,
        overlapped: usize,
        seen: Option<&crate::events::Seen>,
        out: &mut Vec<String>,
    ) {
        let stmts: Vec<&Arc<str>> = self.forbidden.window(from, t1).collect();
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

    fn status(status: compute_ctl::state::ComputeStatus) -> Event {
        Event::Status { boot: 0, status }
    }

    #[test]
    fn a_notify_sent_during_a_start_is_judged_from_the_start_s_end() {
        use compute_ctl::state::ComputeStatus::{Init, Running};
        let app = compute_ctl::pg::APPLICATION_NAME;
        let create = || stmt(app, StmtKind::CatalogWrite, "CREATE DATABASE db0");
        let mut c = SkipFlagNotify::default();
        let mut out = Vec::new();
        // Seed 6,000,518 of duplicated_reordered_notifies: the notify is
        // sent while the start's catalog pass still creates databases.
        c.on_event(1, &status(Init), &mut out);
        c.on_event(5, &notify(1, true), &mut out);
        c.on_event(6, &create(), &mut out);
        c.on_event(7, &status(Running), &mut out);
        c.on_event(9, &notify(1, false), &mut out);
        assert!(out.is_empty(), "{out:?}");
        // Once the start ended, a catalog statement in the window is the
        // notify's.
        c.on_event(10, &status(Init), &mut out);
        c.on_event(11, &notify(2, true), &mut out);
        c.on_event(12, &status(Running), &mut out);
        c.on_event(13, &create(), &mut out);
        c.on_event(14, &notify(2, false), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        // Sent while running: the whole window is its own.
        c.on_event(15, &notify(3, true), &mut out);
        c.on_event(16, &create(), &mut out);
        c.on_event(17, &notify(3, false), &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
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
