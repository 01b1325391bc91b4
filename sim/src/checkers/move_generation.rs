//! A safekeeper move with a `safekeepers_generation` older than the one
//! the control plane has confirmed ([`Event::SafekeeperSetConfirmed`]) is
//! refused with 409 (issue 21). No fault excuses another answer.

use std::collections::BTreeMap;

use super::Checker;
use crate::events::Event;

#[derive(Default)]
pub struct StaleGenerationRefused {
    /// The generation the control plane has confirmed.
    confirmed: Option<u32>,
    /// Stale moves in flight, by op: their generation and the one
    /// confirmed then.
    stale: BTreeMap<u64, (u32, u32)>,
}

impl Checker for StaleGenerationRefused {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        match ev {
            Event::SafekeeperSetConfirmed { generation, .. } => self.confirmed = *generation,
            Event::SafekeeperMoveSent {
                op,
                generation: Some(g),
                killed: false,
                ..
            } => {
                if let Some(c) = self.confirmed.filter(|c| g < c) {
                    self.stale.insert(*op, (*g, c));
                }
            }
            Event::SafekeeperMoveAnswered { op, status, .. } => {
                let Some((g, c)) = self.stale.remove(op) else {
                    return;
                };
                if *status != Some(409) {
                    let answer = status.map_or("no answer".to_string(), |s| s.to_string());
                    out.push(format!(
                        "a notify with the stale safekeepers_generation {g} (in effect: {c}) got {answer}, not 409"
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

    fn sent(op: u64, generation: u32) -> Event {
        Event::SafekeeperMoveSent {
            boot: 1,
            op,
            from: vec!["sk1".into()],
            to: vec!["sk4".into()],
            generation: Some(generation),
            killed: false,
        }
    }

    fn answered(op: u64, status: Option<u16>) -> Event {
        Event::SafekeeperMoveAnswered {
            boot: 1,
            op,
            status,
        }
    }

    #[test]
    fn a_stale_generation_taken_is_reported_a_newer_one_is_not_judged() {
        let mut c = StaleGenerationRefused::default();
        let mut out = Vec::new();
        c.on_event(
            0,
            &Event::SafekeeperSetConfirmed {
                op: 1,
                safekeepers: Vec::new(),
                generation: Some(2),
            },
            &mut out,
        );
        c.on_event(1, &sent(2, 3), &mut out);
        c.on_event(2, &answered(2, Some(500)), &mut out);
        c.on_event(3, &sent(3, 1), &mut out);
        c.on_event(4, &answered(3, Some(409)), &mut out);
        assert!(out.is_empty(), "{out:?}");
        c.on_event(5, &sent(4, 1), &mut out);
        c.on_event(6, &answered(4, Some(200)), &mut out);
        assert_eq!(
            out,
            ["a notify with the stale safekeepers_generation 1 (in effect: 2) got 200, not 409"]
        );
    }
}
