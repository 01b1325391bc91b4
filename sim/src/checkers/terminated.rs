//! A `/terminate` answered 200 stopped Postgres: whenever the harness
//! looks at the compute host after it ([`Event::PostgresSeen`]), no
//! Postgres runs with a loaded config. No fault excuses it: the answer
//! came after the shutdown.

use super::Checker;
use crate::events::{Event, Request};

#[derive(Default)]
pub struct TerminateStopsPostgres {
    /// A terminate was answered 200.
    answered: bool,
}

impl Checker for TerminateStopsPostgres {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        match ev {
            Event::Answered {
                kind: Request::Terminate,
                code: Some(200),
                ..
            } => self.answered = true,
            Event::PostgresSeen { running: true } if self.answered => {
                out.push("Postgres still runs after /terminate answered".into());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminate_answered(code: Option<u16>) -> Event {
        Event::Answered {
            req: 1,
            kind: Request::Terminate,
            path: "/terminate?mode=fast".into(),
            op: 0,
            outcome: code.map_or("transport_error".into(), |c| c.to_string()),
            code,
            ms: 3,
            seen: None,
        }
    }

    #[test]
    fn postgres_running_after_an_answered_terminate_is_reported() {
        let mut c = TerminateStopsPostgres::default();
        let mut out = Vec::new();
        // Running before, and after a terminate that got no answer: fine.
        c.on_event(0, &Event::PostgresSeen { running: true }, &mut out);
        c.on_event(1, &terminate_answered(None), &mut out);
        c.on_event(2, &Event::PostgresSeen { running: true }, &mut out);
        assert!(out.is_empty(), "{out:?}");
        c.on_event(3, &terminate_answered(Some(200)), &mut out);
        c.on_event(4, &Event::PostgresSeen { running: false }, &mut out);
        assert!(out.is_empty(), "{out:?}");
        c.on_event(5, &Event::PostgresSeen { running: true }, &mut out);
        assert_eq!(out, ["Postgres still runs after /terminate answered"]);
    }
}
