//! A re-send of an applied `operation_uuid` is answered 200 (when it is
//! answered at all) and does no work: no catalog statement, no SQL reload,
//! no SIGHUP while it is in flight.

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
                let Some(code) = code else {
                    return;
                };
                if *code != 200 {
                    out.push(format!("duplicate of applied op {op} answered {code}"));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn resend(req: u64, code: Option<u16>) -> [Event; 2] {
        let path = "/configure".to_string();
        [
            Event::RequestSent {
                req,
                kind: Request::Resend,
                path: path.clone(),
                op: 3,
                seen: None,
            },
            Event::Answered {
                req,
                kind: Request::Resend,
                path,
                op: 3,
                outcome: code.map_or("transport_error".into(), |c| c.to_string()),
                code,
                ms: 0,
                seen: None,
            },
        ]
    }

    #[test]
    fn a_duplicate_answered_other_than_200_is_reported_and_an_unanswered_one_is_not() {
        let mut c = ResendDoesNothing::default();
        let mut out = Vec::new();
        let mut t = 0;
        for code in [Some(200), None, Some(409)] {
            for ev in resend(t, code) {
                t += 1;
                c.on_event(t, &ev, &mut out);
            }
        }
        assert_eq!(out, ["duplicate of applied op 3 answered 409"]);
    }
}
