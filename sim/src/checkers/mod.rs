//! Invariants as checkers of the event log, in the manner of TigerBeetle's
//! state checkers: each sees every [`Event`] as it is appended
//! ([`Checker::on_event`]) and the final world ([`Checker::at_end`]), and
//! reports violations with their real reason.

use crate::events::Event;

pub mod acked;
pub mod auth;
pub mod commit_lsn;
pub mod converged;
pub mod diverged_report;
pub mod dry_run;
pub mod fork;
pub mod history;
pub mod move_reload;
pub mod move_restart;
pub mod notify;
pub mod plan;
pub mod quorum_ack;
pub mod reload_first;
pub mod resend;
pub mod storage;
pub mod transitions;
pub mod window;
// The replica, terminate and durable scenarios' properties (issue 22).
pub mod interrupted;
pub mod move_answered;
pub mod move_generation;
pub mod move_in_effect;
pub mod readback;
pub mod replica_move;
pub mod terminated;

// Verdicts the scenarios used to give themselves (issue 22).
pub mod fleet_answered;
pub mod promote;
pub mod storm_p99;
pub mod vm_monitor;

// Verdicts the driver used to give itself (issue 22): a request's
// deadline, settling after the faults, the read-back of a running primary.
pub mod deadline;
pub mod readback_running;
pub mod settled;

/// One invariant over the event log.
pub trait Checker: Send {
    /// Sees `ev`, appended at `t_us`; pushes what it violates to `out`.
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>);
    /// At the end of the run; pushes what is violated to `out`.
    fn at_end(&mut self, out: &mut Vec<String>) {
        let _ = out;
    }
}

/// Every checker of a world, fed in a fixed order.
pub struct Checkers(Vec<Box<dyn Checker>>);

impl Default for Checkers {
    fn default() -> Self {
        Self(vec![
            Box::new(transitions::Transitions::default()),
            Box::new(storage::OnePostmasterPerBoot::default()),
            Box::new(storage::ReplayMonotonic::default()),
            Box::new(acked::AckedNeverLost::default()),
            Box::new(quorum_ack::AckNeedsMajority::default()),
            Box::new(fork::NoneLeftPastTheFork::default()),
            Box::new(diverged_report::DivergedReportedTruly::default()),
            Box::new(history::OneHistoryPerSafekeeper::default()),
            Box::new(notify::SkipFlagNotify::default()),
            Box::new(resend::ResendDoesNothing::default()),
            Box::new(commit_lsn::CommitLsnIsMajority::default()),
            Box::new(dry_run::DryRunChangesNothing::default()),
            Box::new(plan::PlanMatchesApply::default()),
            Box::new(reload_first::ReloadBeforeSql::default()),
            Box::new(move_restart::MoveNeverRestarts::default()),
            Box::new(move_reload::MoveIsANotify::default()),
            Box::new(auth::AuthEnforced::default()),
            Box::new(fleet_answered::FleetAnswers200::default()),
            Box::new(storm_p99::StormP99::default()),
            Box::new(vm_monitor::AgentServed::default()),
            Box::new(vm_monitor::UpscaleOnPressure::default()),
            Box::new(vm_monitor::DownscaleKeepsBuffer::default()),
            Box::new(vm_monitor::MonitorProtocol::default()),
            Box::new(promote::ReplicaFollows::default()),
            Box::new(promote::PromoteContract::default()),
            Box::new(promote::TerminateAnswersLsn::default()),
            Box::new(replica_move::ReplicaFollowsMove::default()),
            Box::new(interrupted::InterruptedConfigureAnswered::default()),
            Box::new(terminated::TerminateStopsPostgres::default()),
            Box::new(readback::PrimaryServesReadback::default()),
            Box::new(move_answered::MoveAnsweredOrExplained::default()),
            Box::new(move_generation::StaleGenerationRefused::default()),
            Box::new(move_in_effect::ConfirmedSetInEffect::default()),
            Box::new(deadline::AnsweredWithinDeadline::default()),
            Box::new(settled::SettlesAfterFaults),
            Box::new(readback_running::RunningPrimaryServesReadback),
            // Last: its end-of-run verdict follows every other one.
            Box::new(converged::Converged::default()),
        ])
    }
}

impl Checkers {
    pub fn on_event(&mut self, t_us: u64, ev: &Event) -> Vec<String> {
        let mut out = Vec::new();
        for c in &mut self.0 {
            c.on_event(t_us, ev, &mut out);
        }
        out
    }

    pub fn at_end(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &mut self.0 {
            c.at_end(&mut out);
        }
        out
    }
}
