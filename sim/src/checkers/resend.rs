//! A re-send of an applied `operation_uuid` does no work: no catalog
//! statement, no SQL reload, no SIGHUP while it is in flight.

use super::Checker;
use super::window::{InFlight, Log, supervisor};
use crate::events::{Event, ReloadVia, Request};

#[derive(Default)]
pub struct ResendDoesNothing {
    /// When the supervisor sent a catalog statement or a SQL reload.
    forbidden: Log<()>,
    reloads: usize,
    sent: InFlight<usize>,
}

impl Checker for ResendDoesNothing {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        match ev {
            Event::Statement { app, kind, .. } if supervisor(app) && kind.is_notify_forbidden() => {
                self.forbidden.forget_before(self.sent.horizon(t_us));
                self.forbidden.push(t_us, ());
            }
            Event::Reload {
                via: ReloadVia::Signal,
                ok: true,
                ..
            } => self.reloads += 1,
            Event::RequestSent {
                req,
                kind: Request::Resend,
                ..
            } => self.sent.sent(*req, t_us, self.reloads),
            Event::Answered {
                req,
                kind: Request::Resend,
                op,
                code,
                ..
            } => {
                let Some((t0, before)) = self.sent.answered(*req) else {
                    return;
                };
                if code.is_none() {
                    return;
                }
                let stmts = self.forbidden.window(t0, t_us).count();
                let reloads = self.reloads - before;
                if stmts != 0 || reloads != 0 {
                    out.push(format!(
                        "re-send of applied operation {op} did work: {stmts} statement(s), {reloads} reload(s)"
                    ));
                }
            }
            _ => {}
        }
    }
}
