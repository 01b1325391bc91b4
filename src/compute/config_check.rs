//! A setting is checked before it is written, and the written file before
//! Postgres loads it.
//!
//! Before: every setting of a spec against the catalogue of the binary in
//! use (`pg::SettingsCatalogue`, read once): names, Booleans, numbers
//! without unit against their bounds; then what the listing does not say
//! (an enum's values, a number with a unit: its units and range) asked of
//! the binary itself (`pg::judge_setting`), once per (name, value). A
//! refusal is a spec problem (400 naming the setting and, in Postgres'
//! words, the allowed values, units or range; nothing changes; the dry run
//! lists it too). The spec a start uses (a launch spec, `-S`,
//! `--spec-json`, `-c`, or the control plane's) goes through the same check
//! while PGDATA is made, before anything starts in it (`start.rs`).
//!
//! After every write, before the SIGHUP: one `pg_file_settings` query, which
//! parses the files on disk as the postmaster will on the SIGHUP. When
//! Postgres refuses a line, no SIGHUP is sent for that file: the previous
//! `postgresql.conf` is written back (and Postgres reloaded, in case another
//! reload read the refused file meanwhile), so it keeps serving the config it
//! had, none of the refused file applied; the configure fails (500) with
//! Postgres' own words, `/status` shows `config_refused`, the metric
//! `compute_ctl_config_refused_total` counts it, and the next valid
//! configure repairs it. Checked before the signal, a refused file is never
//! half applied (on a SIGHUP Postgres applies the valid lines of a file
//! with a bad value).

use std::sync::Arc;

use serde::Serialize;

use super::{Compute, FailReason};
use crate::env::{Env, Signal};
use crate::pg;
use crate::spec::{ComputeSpec, SpecProblem};

/// The binary's verdicts on (name, value) pairs (`None`: it could not say).
pub(super) type Judged = std::collections::BTreeMap<(String, String), Option<Result<(), String>>>;

/// Verdicts remembered at most; then the memory starts again.
const JUDGED_CAP: usize = 4096;

/// A configure whose config Postgres refused (`pg_file_settings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigRefused {
    /// The refused spec's `operation_uuid`.
    pub operation_uuid: Option<String>,
    /// Postgres' own error lines, from `pg_file_settings`.
    pub lines: Vec<String>,
    /// Whether the previous `postgresql.conf` was written back and reloaded.
    pub rolled_back: bool,
}

impl<E: Env> Compute<E> {
    /// The settings of `spec` that the binary in use refuses, as spec
    /// problems (JSON path; the message names the major). A name that
    /// `--describe-config` does not list is asked of Postgres once
    /// (`pg::setting_exists`, remembered per name). A setting that one of
    /// `known` (validation's problems) already names is skipped: a malformed
    /// name is reported once, not also as unknown to the major.
    pub async fn setting_problems(
        &self,
        spec: &ComputeSpec,
        known: &[SpecProblem],
    ) -> Vec<SpecProblem> {
        let Some(catalogue) = self.settings_catalogue().await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for r in catalogue.check_spec(spec) {
            if known.iter().any(|k| k.path == r.path) {
                continue;
            }
            if let Some(name) = &r.unlisted {
                let known = self
                    .unlisted_settings
                    .lock()
                    .ok()
                    .and_then(|m| m.get(name).copied());
                let exists = match known {
                    Some(e) => Some(e),
                    None => {
                        let e = pg::setting_exists(&self.env, &self.params, name).await;
                        if let (Some(e), Ok(mut m)) = (e, self.unlisted_settings.lock()) {
                            m.insert(name.clone(), e);
                        }
                        e
                    }
                };
                // Refused only when Postgres confirms it does not know it.
                if exists != Some(false) {
                    continue;
                }
            }
            out.push(SpecProblem {
                path: r.path,
                message: r.message,
            });
        }
        // Enum values and numbers with units: asked of the binary, once per
        // (name, value) while this compute_ctl runs (the new ones in
        // parallel), so a notify that repeats its settings spawns nothing.
        // A plain number with a unit of a setting whose base unit is known
        // is judged here (`pg::BaseUnit`): a notify that sets a new
        // `work_mem` spawns nothing either. A base unit not known yet is
        // learnt first (beside the values no unit settles), and only the
        // values it does not settle are then asked: a start with
        // `shared_buffers = 128MB` spawns one process for it, not two.
        let judge: Vec<pg::SettingToJudge> = catalogue
            .to_judge(spec)
            .into_iter()
            .filter(|j| !known.iter().any(|k| k.path == j.path))
            .collect();
        let mut learn: Vec<(&str, &pg::SettingDef)> = judge
            .iter()
            .filter(|j| self.unit_of(&j.name).is_none())
            .filter_map(|j| Some((j.name.as_str(), catalogue.get(&j.name)?)))
            .filter(|(_, def)| pg::BaseUnit::probe(def).is_some())
            .collect();
        learn.sort_unstable_by_key(|(n, _)| *n);
        learn.dedup_by_key(|(n, _)| *n);
        let learning = |j: &pg::SettingToJudge| learn.iter().any(|(n, _)| *n == j.name);
        let (units, asked_first) = futures::future::join(
            futures::future::join_all(
                learn
                    .iter()
                    .map(|(n, def)| pg::learn_base_unit(&self.env, &self.params, n, def)),
            ),
            self.judge_by_binary(&catalogue, judge.iter().filter(|j| !learning(j))),
        )
        .await;
        self.metrics.count_settings_judged_by_binary(learn.len());
        if let Ok(mut m) = self.setting_units.lock() {
            m.extend(learn.iter().map(|(n, _)| n.to_string()).zip(units));
        }
        let asked = self
            .judge_by_binary(&catalogue, judge.iter().filter(|j| learning(j)))
            .await
            || asked_first;
        // Once per new answer, and once after the binary's listing was
        // asked (one write for a first start, not one per step).
        if !learn.is_empty() || asked || self.binary_answers_unsaved() {
            self.keep_binary_answers().await;
        }
        for j in judge {
            if self.unit_settles(&catalogue, &j) {
                continue;
            }
            if let Some(Some(Err(reason))) = self.remembered_verdict(&j) {
                out.push(SpecProblem {
                    path: j.path,
                    message: format!(
                        "PostgreSQL {} refuses {} = '{}': {reason}",
                        catalogue.major, j.name, j.value
                    ),
                });
            }
        }
        out
    }

    /// The base unit learnt for `name`: `None` not asked yet,
    /// `Some(None)` it has none or the binary could not say.
    pub(super) fn unit_of(&self, name: &str) -> Option<Option<pg::BaseUnit>> {
        self.setting_units
            .lock()
            .ok()
            .and_then(|m| m.get(name).copied())
    }

    /// The binary's remembered verdict on `j`'s (name, value): `None` not
    /// asked yet, `Some(None)` it could not say.
    fn remembered_verdict(&self, j: &pg::SettingToJudge) -> Option<Option<Result<(), String>>> {
        self.judged_settings
            .lock()
            .ok()
            .and_then(|m| m.get(&(j.name.clone(), j.value.clone())).cloned())
    }

    /// Whether the learnt base unit of `j`'s setting takes its value (a
    /// plain number with a unit, within the bounds): then no process is
    /// asked.
    fn unit_settles(&self, catalogue: &pg::SettingsCatalogue, j: &pg::SettingToJudge) -> bool {
        match (self.unit_of(&j.name), catalogue.get(&j.name)) {
            (Some(Some(unit)), Some(def)) => unit.accepts(def, &j.value),
            _ => false,
        }
    }

    /// The binary's verdict on each of `settings` that a known base unit
    /// does not settle and that is not remembered yet, asked in parallel
    /// and remembered (read back by the caller); whether any was asked.
    async fn judge_by_binary<'a>(
        &self,
        catalogue: &pg::SettingsCatalogue,
        settings: impl Iterator<Item = &'a pg::SettingToJudge>,
    ) -> bool {
        let mut new: Vec<(String, String)> = settings
            .filter(|j| !self.unit_settles(catalogue, j))
            .filter(|j| self.remembered_verdict(j).is_none())
            .map(|j| (j.name.clone(), j.value.clone()))
            .collect();
        new.sort();
        new.dedup();
        if new.is_empty() {
            return false;
        }
        let verdicts = futures::future::join_all(
            new.iter()
                .map(|(n, v)| pg::judge_setting(&self.env, &self.params, n, v)),
        )
        .await;
        self.metrics.count_settings_judged_by_binary(new.len());
        if let Ok(mut m) = self.judged_settings.lock() {
            if m.len() + new.len() > JUDGED_CAP {
                m.clear();
            }
            m.extend(new.into_iter().zip(verdicts));
        }
        true
    }

    /// After `spec`'s config was written, before the SIGHUP: whether
    /// Postgres takes it. When it refuses a line, or the check cannot be
    /// made, puts `previous` back; a refusal returns the reason to fail the
    /// configure with. Only then may the caller signal.
    pub(super) async fn check_written(
        &self,
        spec: &ComputeSpec,
        previous: Option<&ComputeSpec>,
        pid: u32,
    ) -> Result<(), FailReason> {
        let contexts = self.restart_basis.get().map(|b| &b.contexts);
        let refused = match pg::refused_settings(
            &self.env,
            &self.params,
            &self.check_session,
            contexts,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                let after = match previous {
                    None => "the new config stays written, not loaded",
                    Some(_) if self.put_back(previous, pid).await => {
                        "the previous config was put back"
                    }
                    Some(_) => "the previous config could not be put back",
                };
                return Err(FailReason::Reload(format!(
                    "the new config was written but whether Postgres takes it could not be checked: {e}; Postgres was not reloaded and {after}; send the configure again"
                )));
            }
        };
        if refused.is_empty() {
            if self.state.borrow().config_refused.is_some() {
                self.state.send_modify(|st| st.config_refused = None);
            }
            return Ok(());
        }
        let lines: Vec<String> = refused.iter().map(|l| l.to_string()).collect();
        self.metrics.count_config_refused();
        let rolled_back = self.put_back(previous, pid).await;
        tracing::error!(?lines, rolled_back, "Postgres refused the new config");
        self.state.send_modify(|st| {
            st.config_refused = Some(ConfigRefused {
                operation_uuid: spec.operation_uuid.clone(),
                lines: lines.clone(),
                rolled_back,
            });
        });
        let after = if rolled_back {
            "Postgres was not reloaded with it: the previous postgresql.conf was put back and Postgres serves the previous config"
        } else {
            "the previous config could not be put back"
        };
        Err(FailReason::ConfigRefused(format!(
            "Postgres refused the new config: {}; {after}; fix the spec and send it again",
            lines.join("; ")
        )))
    }

    /// Puts `previous` back after a check that refused the written config
    /// or could not be made; then it is the spec in effect, the one
    /// Postgres serves. Whether it was put back (not without a previous).
    async fn put_back(&self, previous: Option<&ComputeSpec>, pid: u32) -> bool {
        let Some(prev) = previous else {
            return false;
        };
        match self.restore_config(prev, pid).await {
            Ok(()) => {
                self.state
                    .send_modify(|st| st.spec = Some(Arc::new(prev.clone())));
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "putting the previous config back failed");
                false
            }
        }
    }

    /// Writes `previous`'s config back and reloads Postgres (a no-op for
    /// Postgres unless another reload read the refused file meanwhile).
    async fn restore_config(&self, previous: &ComputeSpec, pid: u32) -> Result<(), String> {
        pg::write_config(&self.env, &self.params, previous)
            .await
            .map_err(|e| format!("writing the previous config: {e}"))?;
        self.env
            .signal(pid, Signal::Hup)
            .map_err(|e| format!("reloading Postgres (SIGHUP to pid {pid}): {e}"))
    }
}
