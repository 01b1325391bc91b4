//! A safekeeper move never restarts the postmaster (issue 21): a notify
//! that moves a primary to another safekeeper set is a reload, so no
//! postmaster is spawned on the same boot between the move's sending
//! ([`Event::SafekeeperMoveSent`]) and its answer
//! ([`Event::SafekeeperMoveAnswered`]). A kill of the host in the middle of
//! a move is a new boot: its postmaster is not the move's doing.

use std::collections::BTreeMap;

use super::Checker;
use crate::events::Event;

#[derive(Default)]
pub struct MoveNeverRestarts {
    /// The moves in flight: (boot, op) -> where they go.
    open: BTreeMap<(u64, u64), Vec<String>>,
}

impl Checker for MoveNeverRestarts {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        match ev {
            Event::SafekeeperMoveSent { boot, op, to, .. } => {
                self.open.insert((*boot, *op), to.clone());
            }
            Event::SafekeeperMoveAnswered { boot, op, .. } => {
                self.open.remove(&(*boot, *op));
            }
            Event::PostmasterSpawned { boot, pid } => {
                for ((b, op), to) in &self.open {
                    if b == boot {
                        out.push(format!(
                            "a safekeeper move restarted the postmaster: pid {pid} was spawned on boot {boot} while the notify op {op} moved it to {to:?}"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(boot: u64, op: u64) -> Event {
        Event::SafekeeperMoveSent {
            boot,
            op,
            from: vec!["sk1".into(), "sk2".into(), "sk3".into()],
            to: vec!["sk1".into(), "sk2".into(), "sk4".into()],
            generation: Some(2),
            killed: false,
        }
    }

    #[test]
    fn a_spawn_inside_a_move_of_the_same_boot_is_reported_and_others_are_not() {
        let mut c = MoveNeverRestarts::default();
        let mut out = Vec::new();
        c.on_event(0, &Event::PostmasterSpawned { boot: 0, pid: 7 }, &mut out);
        c.on_event(1, &sent(0, 3), &mut out);
        // A kill mid-move: the next boot's postmaster is a start.
        c.on_event(2, &Event::PostmasterSpawned { boot: 1, pid: 8 }, &mut out);
        assert!(out.is_empty(), "{out:?}");
        c.on_event(3, &Event::PostmasterSpawned { boot: 0, pid: 9 }, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            out[0].contains("pid 9 was spawned on boot 0 while the notify op 3"),
            "{out:?}"
        );
        let answered = Event::SafekeeperMoveAnswered {
            boot: 0,
            op: 3,
            status: Some(200),
        };
        c.on_event(4, &answered, &mut out);
        c.on_event(5, &Event::PostmasterSpawned { boot: 0, pid: 10 }, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
    }
}
