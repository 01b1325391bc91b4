//! What the compute's `/status` says of each safekeeper, put into the
//! event log beside the model's truth (`Event::SafekeeperReported`), for
//! `checkers/diverged_report.rs`: each state when it changes, and every
//! one when a start fails without a quorum.

use compute_ctl::state::ComputeStatus;

use crate::events::Event;
use crate::world::shared::Shared;

/// The safekeeper states of one boot's `/status` already reported.
#[derive(Default)]
pub(super) struct Reported {
    /// Each safekeeper host's last state.
    states: std::collections::BTreeMap<String, String>,
    /// The start's failure without a quorum was reported.
    failure: bool,
}

/// Each safekeeper state `/status` shows that changed since `reported`
/// (all of them when a start just failed without a quorum), with the
/// model's truth of whether it can follow the compute.
pub(super) fn report(
    shared: &Shared,
    boot: u64,
    st: &compute_ctl::compute::ComputeState,
    reported: &mut Reported,
) {
    let Some(sks) = &st.safekeepers else {
        return;
    };
    let at_failure = !reported.failure
        && st.status == ComputeStatus::Failed
        && st
            .failure
            .as_ref()
            .map(compute_ctl::compute::FailReason::kind)
            == Some("quorum");
    reported.failure |= at_failure;
    for m in &sks.members {
        // `sk1:5454` is host `sk1`, the world's name for it.
        let name = m
            .safekeeper
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        if !at_failure && reported.states.get(&name) == Some(&m.state) {
            continue;
        }
        reported.states.insert(name.clone(), m.state.clone());
        let follows = {
            let sh = shared.lock();
            sh.wal
                .safekeepers
                .get(&name)
                .is_none_or(|sk| sk.can_follow(&sh.wal.compute.wal))
        };
        shared.emit(Event::SafekeeperReported {
            boot,
            name,
            state: m.state.clone(),
            follows,
            at_failure,
        });
    }
}
