//! A running primary serves the client's read-back of its commits
//! wherever a scenario asks for one (after its starts, a safekeeper move,
//! a promote: `Driver::readback_on`): the client giving up after its tries
//! ([`Event::ReadbackFailed`]) is a violation, and no fault excuses it (a
//! start the schedule's host crash took away is the start's own read-back,
//! `readback.rs`).

use super::Checker;
use crate::events::Event;

#[derive(Default)]
pub struct RunningPrimaryServesReadback;

impl Checker for RunningPrimaryServesReadback {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        if let Event::ReadbackFailed { .. } = ev {
            out.push("the client could not read back the commits of the running primary".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_readback_the_client_gave_up_on_is_reported_one_it_got_is_not() {
        let mut c = RunningPrimaryServesReadback;
        let mut out = Vec::new();
        c.on_event(1, &Event::ReadbackSent { boot: 1 }, &mut out);
        let got = Event::Readback {
            boot: 1,
            ids: vec![1, 2],
        };
        c.on_event(2, &got, &mut out);
        assert!(out.is_empty(), "{out:?}");
        let failed = Event::ReadbackFailed {
            host: "replica".into(),
            tries: 5,
        };
        c.on_event(3, &failed, &mut out);
        assert_eq!(
            out,
            ["the client could not read back the commits of the running primary"]
        );
    }
}
