//! Auth is enforced: a `POST /configure` the control plane sends without its
//! token (`Request::Unauthorized`, one per seed, sent by the driver once the
//! compute settled) is refused with the status `src/http/auth.rs` gives that
//! credential (400 no token, 401 a token that does not verify, 403 another
//! compute's), never accepted; and, when it was the only request in flight,
//! it changed nothing: no catalog write, no reload, the same status,
//! generation, applied generation and catalog after it as before, on the
//! same boot of the host.

use std::collections::BTreeSet;

use compute_ctl::state::ComputeStatus;

use super::Checker;
use super::window::{Log, supervisor};
use crate::events::{Event, Request, Seen};
use crate::pgmodel::StmtKind;

/// An unauthenticated request in flight.
struct Probe {
    req: u64,
    t0: u64,
    before: Option<Box<Seen>>,
    reloads: usize,
    /// Another request to the compute was in flight during its window:
    /// what changed may be that one's doing.
    overlapped: bool,
}

#[derive(Default)]
pub struct AuthEnforced {
    /// When the supervisor wrote to the catalog.
    writes: Log<()>,
    reloads: usize,
    /// The other requests in flight.
    others: BTreeSet<u64>,
    probes: Vec<Probe>,
}

fn state(seen: &Seen) -> Option<(ComputeStatus, u64, u64)> {
    seen.state
        .as_ref()
        .map(|s| (s.status, s.generation, s.applied_generation))
}

impl AuthEnforced {
    fn judge(&self, p: &Probe, t_us: u64, after: Option<&Seen>, out: &mut Vec<String>) {
        let (Some(before), Some(after)) = (p.before.as_deref(), after) else {
            return;
        };
        if p.overlapped || after.boot != before.boot {
            return;
        }
        let mut changed = Vec::new();
        if self.writes.first_in(p.t0, t_us).is_some() {
            changed.push("catalog writes".to_string());
        }
        if self.reloads != p.reloads {
            changed.push(format!("{} reload(s)", self.reloads - p.reloads));
        }
        if state(after) != state(before) {
            changed.push(format!(
                "state (status, generation, applied) {:?} -> {:?}",
                state(before),
                state(after)
            ));
        }
        let catalog = |s: &Seen| s.catalog.as_ref().map(|c| c.0.clone());
        if catalog(after) != catalog(before) {
            changed.push("the catalog".into());
        }
        if !changed.is_empty() {
            out.push(format!(
                "a refused unauthenticated request changed the compute: {}",
                changed.join(", ")
            ));
        }
    }
}

impl Checker for AuthEnforced {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        match ev {
            Event::Statement { app, kind, .. }
                if supervisor(app) && *kind == StmtKind::CatalogWrite =>
            {
                let horizon = self.probes.iter().map(|p| p.t0).min().unwrap_or(t_us);
                self.writes.forget_before(horizon);
                self.writes.push(t_us, ());
            }
            Event::Reload { ok: true, .. } => self.reloads += 1,
            Event::RequestSent {
                req,
                kind: Request::Unauthorized { .. },
                seen,
                ..
            } => self.probes.push(Probe {
                req: *req,
                t0: t_us,
                before: seen.clone(),
                reloads: self.reloads,
                overlapped: !self.others.is_empty(),
            }),
            Event::RequestSent { req, .. } => {
                self.others.insert(*req);
                for p in &mut self.probes {
                    p.overlapped = true;
                }
            }
            Event::Answered {
                req,
                kind: Request::Unauthorized { expect },
                path,
                op,
                code,
                seen,
                ..
            } => {
                let Some(at) = self.probes.iter().position(|p| p.req == *req) else {
                    return;
                };
                let probe = self.probes.remove(at);
                match code {
                    // No answer: the driver judges a lost request.
                    None => {}
                    Some(c) if c == expect => self.judge(&probe, t_us, seen.as_deref(), out),
                    Some(c) if (200..300).contains(c) => out.push(format!(
                        "auth is not enforced: POST {path} (op {op}) without the control plane's token was accepted ({c}), not refused with {expect}"
                    )),
                    Some(c) => out.push(format!(
                        "POST {path} (op {op}) without the control plane's token was answered {c}, not {expect} as compute_ctl's auth refuses that credential"
                    )),
                }
            }
            Event::Answered { req, .. } => {
                self.others.remove(req);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::StateSeen;

    fn seen(generation: u64) -> Option<Box<Seen>> {
        Some(Box::new(Seen {
            boot: 0,
            state: Some(StateSeen {
                status: ComputeStatus::Running,
                generation,
                applied_generation: generation,
                last_reconfigure: None,
            }),
            catalog: None,
        }))
    }

    fn run(events: &[(u64, Event)]) -> Vec<String> {
        let mut c = AuthEnforced::default();
        let mut out = Vec::new();
        for (t, ev) in events {
            c.on_event(*t, ev, &mut out);
        }
        c.at_end(&mut out);
        out
    }

    fn sent(req: u64, kind: Request, seen: Option<Box<Seen>>) -> Event {
        Event::RequestSent {
            req,
            kind,
            path: "/configure".into(),
            op: 7,
            seen,
        }
    }

    fn answered(req: u64, kind: Request, code: u16, seen: Option<Box<Seen>>) -> Event {
        Event::Answered {
            req,
            kind,
            path: "/configure".into(),
            op: 7,
            outcome: code.to_string(),
            code: Some(code),
            ms: 1,
            seen,
        }
    }

    const PROBE: Request = Request::Unauthorized { expect: 401 };

    #[test]
    fn a_refusal_that_changed_nothing_passes() {
        let out = run(&[
            (10, sent(1, PROBE, seen(3))),
            (20, answered(1, PROBE, 401, seen(3))),
        ]);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn an_accepted_request_is_a_violation() {
        let out = run(&[
            (10, sent(1, PROBE, seen(3))),
            (20, answered(1, PROBE, 200, seen(4))),
        ]);
        assert!(out[0].contains("auth is not enforced"), "{out:?}");
    }

    #[test]
    fn another_refusal_status_is_a_violation() {
        let out = run(&[
            (10, sent(1, PROBE, seen(3))),
            (20, answered(1, PROBE, 403, seen(3))),
        ]);
        assert!(out[0].contains("not 401"), "{out:?}");
    }

    #[test]
    fn a_refusal_with_a_generation_bump_or_reload_is_a_violation() {
        let reload = Event::Reload {
            via: crate::events::ReloadVia::Signal,
            ok: true,
            error: None,
        };
        let out = run(&[
            (10, sent(1, PROBE, seen(3))),
            (15, reload),
            (20, answered(1, PROBE, 401, seen(4))),
        ]);
        assert!(out[0].contains("1 reload(s)"), "{out:?}");
        assert!(out[0].contains("generation"), "{out:?}");
    }

    #[test]
    fn an_overlapping_request_excuses_the_changes_not_the_status() {
        let out = run(&[
            (5, sent(2, Request::Configure, None)),
            (10, sent(1, PROBE, seen(3))),
            (20, answered(1, PROBE, 401, seen(4))),
        ]);
        assert!(out.is_empty(), "{out:?}");
        let out = run(&[
            (5, sent(2, Request::Configure, None)),
            (10, sent(1, PROBE, seen(3))),
            (20, answered(1, PROBE, 204, seen(4))),
        ]);
        assert_eq!(out.len(), 1, "{out:?}");
    }
}
