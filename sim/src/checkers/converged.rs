//! The end state: settled, converged to the spec in effect (the catalog
//! as the last spec without the skip flag made it, the running config on
//! the spec's storage) or Failed on something a fault that fired can
//! cause (`ledger::FAILURE_CAUSES`, by the failure's kind), Terminated
//! only if asked, never running after a terminate was answered.

use std::collections::BTreeMap;

use compute_ctl::spec::ComputeSpec;
use compute_ctl::state::ComputeStatus;

use super::Checker;
use super::window::ledger_sees;
use crate::events::{Event, Request, WorldEnd};
use crate::ledger::FaultLedger;
use crate::pgmodel::catalog::CatalogModel;

#[derive(Default)]
pub struct Converged {
    ledger: FaultLedger,
    /// A terminate was sent: Terminated is an acceptable end.
    terminate_sent: bool,
    /// A terminate was answered: Terminated is the only acceptable end.
    terminate_answered: bool,
    end: Option<Box<WorldEnd>>,
}

impl Checker for Converged {
    fn on_event(&mut self, _t_us: u64, ev: &Event, _out: &mut Vec<String>) {
        ledger_sees(&mut self.ledger, ev);
        match ev {
            Event::RequestSent {
                kind: Request::Terminate,
                ..
            } => self.terminate_sent = true,
            Event::Answered {
                kind: Request::Terminate,
                code: Some(200),
                ..
            } => self.terminate_answered = true,
            Event::End(end) => self.end = Some(end.clone()),
            _ => {}
        }
    }

    /// Judged at the end (after every other checker's end-of-run check).
    fn at_end(&mut self, out: &mut Vec<String>) {
        if let Some(end) = self.end.take() {
            self.judge(&end, out);
        }
    }
}

impl Converged {
    fn judge(&self, end: &WorldEnd, out: &mut Vec<String>) {
        let Some(status) = end.status else {
            out.push("the compute host never booted".into());
            return;
        };
        match status {
            ComputeStatus::Running => {
                if self.terminate_answered {
                    out.push("the compute is running after a terminate was answered".into());
                }
                let Some(spec) = end.spec.as_deref() else {
                    out.push("running without a spec".into());
                    return;
                };
                if end.pending {
                    out.push("running with a spec still pending".into());
                }
                // A skip-flag spec leaves the catalog as the last spec that did
                // not skip made it.
                if let Some(c) = end.catalog_spec.as_deref() {
                    check_catalog(&end.catalog, c, out);
                }
                if !self.ledger.excuses_stale_config() {
                    check_storage(end.loaded_config.as_deref(), spec, out);
                }
            }
            ComputeStatus::Failed => {
                let reason = end.error.clone().unwrap_or_default();
                if reason.trim().is_empty() {
                    out.push("failed without a reason".into());
                } else {
                    let kind = end.failure_kind.unwrap_or("unknown");
                    if self.ledger.explains_failure(kind).is_none() {
                        out.push(format!(
                            "failed although no fault could explain it: a {kind} failure, which only {:?} can cause, after the faults {:?}: {reason}",
                            crate::ledger::causes_of(kind),
                            self.ledger.fired_names()
                        ));
                    }
                }
            }
            ComputeStatus::Terminated => {
                if !self.terminate_sent {
                    out.push("terminated although nobody asked".into());
                }
            }
            // A host restarted after a terminate waits for a spec nobody sends.
            ComputeStatus::Empty if self.terminate_sent => {}
            other => out.push(format!("did not settle: still {other} at the end")),
        }
    }
}

/// The catalog the spec asks for: roles with passwords, databases with owners.
pub fn expected_catalog(
    spec: &ComputeSpec,
) -> (BTreeMap<String, Option<String>>, BTreeMap<String, String>) {
    let roles = spec
        .cluster
        .roles
        .iter()
        .map(|r| {
            let pw = r.encrypted_password.as_ref().map(|p| {
                if p.starts_with("SCRAM-SHA-256$") {
                    p.clone()
                } else {
                    format!("md5{p}")
                }
            });
            (r.name.clone(), pw)
        })
        .collect();
    let dbs = spec
        .cluster
        .databases
        .iter()
        .map(|d| (d.name.clone(), d.owner.clone()))
        .collect();
    (roles, dbs)
}

fn check_catalog(catalog: &CatalogModel, spec: &ComputeSpec, out: &mut Vec<String>) {
    let (want_roles, want_dbs) = expected_catalog(spec);
    let (have_roles, have_dbs) = (catalog.user_roles(), catalog.user_databases());
    if have_roles != want_roles {
        let missing: Vec<_> = want_roles
            .keys()
            .filter(|k| !have_roles.contains_key(*k))
            .take(3)
            .collect();
        let extra: Vec<_> = have_roles
            .keys()
            .filter(|k| !want_roles.contains_key(*k))
            .take(3)
            .collect();
        let wrong: Vec<_> = want_roles
            .iter()
            .filter(|(k, v)| have_roles.get(*k).is_some_and(|h| h != *v))
            .map(|(k, _)| k)
            .take(3)
            .collect();
        out.push(format!(
            "catalog roles differ from the spec in effect: missing {missing:?}, extra {extra:?}, wrong password {wrong:?}"
        ));
    }
    if have_dbs != want_dbs {
        out.push(format!(
            "catalog databases differ from the spec in effect: have {:?}, want {:?}",
            have_dbs.iter().take(4).collect::<Vec<_>>(),
            want_dbs.iter().take(4).collect::<Vec<_>>()
        ));
    }
}

fn check_storage(loaded: Option<&str>, spec: &ComputeSpec, out: &mut Vec<String>) {
    let Some(want) = spec.pageserver_connstring.as_deref() else {
        return;
    };
    let conf = crate::pgmodel::guc::parse_conf(loaded.unwrap_or_default());
    if !conf.values().any(|v| v == want) {
        out.push(format!(
            "running Postgres does not point at the spec's storage ({want}); it loaded: {:?}",
            conf.iter()
                .filter(|(k, _)| k.contains("pageserver"))
                .collect::<Vec<_>>()
        ));
    }
}
