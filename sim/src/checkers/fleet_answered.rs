//! A fleet without faults answers every request 200: each compute's first
//! `/configure` and its storm notify (`scenarios/fleet.rs`). A fault that
//! fired would lift it, but a fleet's world has no fault schedule.

use super::Checker;
use super::window::ledger_sees;
use crate::events::{Event, FleetRequest};
use crate::ledger::FaultLedger;

#[derive(Default)]
pub struct FleetAnswers200 {
    ledger: FaultLedger,
}

impl Checker for FleetAnswers200 {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        ledger_sees(&mut self.ledger, ev);
        let Event::FleetAnswered {
            host,
            request,
            outcome,
            code,
            ..
        } = ev
        else {
            return;
        };
        if *code == Some(200) || self.ledger.any() {
            return;
        }
        let what = match request {
            FleetRequest::FirstConfigure => "first configure",
            FleetRequest::StormNotify => "storm notify",
        };
        out.push(format!("{host}: {what} answered {outcome}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(request: FleetRequest, code: Option<u16>) -> Event {
        Event::FleetAnswered {
            host: "compute-07".into(),
            request,
            outcome: code.map_or("deadline_exceeded".into(), |c| c.to_string()),
            code,
            round_trip_us: 0,
        }
    }

    #[test]
    fn a_fleet_compute_that_does_not_answer_200_is_reported_by_host() {
        let mut c = FleetAnswers200::default();
        let mut out = Vec::new();
        c.on_event(
            1,
            &answered(FleetRequest::FirstConfigure, Some(200)),
            &mut out,
        );
        c.on_event(2, &answered(FleetRequest::StormNotify, Some(200)), &mut out);
        assert!(out.is_empty(), "{out:?}");
        c.on_event(
            3,
            &answered(FleetRequest::FirstConfigure, Some(500)),
            &mut out,
        );
        c.on_event(4, &answered(FleetRequest::StormNotify, None), &mut out);
        assert_eq!(
            out,
            [
                "compute-07: first configure answered 500",
                "compute-07: storm notify answered deadline_exceeded"
            ]
        );
    }
}
