//! Reconfigures that change the catalog, with and without a storage move.

use compute_ctl::state::ComputeStatus;
use rand::Rng;
use serde_json::json;

use super::driver::now_us;
use super::{Body, Driver, base_shape};
use crate::events::Event;
use crate::specgen::SpecShape;

/// `prev` with catalog changes: new roles, a changed password, a renamed
/// role (delta op), a dropped database (delta op).
fn changed(d: &mut Driver, prev: &SpecShape) -> SpecShape {
    let mut s = prev.clone();
    s.skip_catalog = false;
    s.deltas.clear();
    let extra = d.rng.random_range(1..=3);
    for i in 0..extra {
        s.roles.push((
            format!("new role {}-{i}", s.operation),
            Some(format!("{:032x}", d.rng.random::<u128>())),
        ));
    }
    if let Some(r) = s.roles.first_mut() {
        r.1 = Some(format!("{:032x}", d.rng.random::<u128>()));
    }
    if s.roles.len() > 2 && d.rng.random_bool(0.5) {
        let i = s.roles.len() - 1;
        let old = s.roles[i].0.clone();
        let new = format!("{old} renamed");
        s.deltas
            .push(json!({"action": "rename_role", "name": old, "new_name": new}));
        s.roles[i].0 = new.clone();
        for db in &mut s.databases {
            if db.1 == old {
                db.1 = new.clone();
            }
        }
    }
    if s.databases.len() > 1 && d.rng.random_bool(0.5) {
        let (name, _) = s.databases.pop().unwrap_or_default();
        s.deltas.push(json!({"action": "delete_db", "name": name}));
    }
    d.stamp(s)
}

pub fn catalog_changes(mut d: Driver) -> Body {
    Box::pin(async move {
        let first = base_shape(&mut d, 6);
        d.intent = Some(first.clone());
        d.configure(&first).await;
        d.pause(5, 200).await;
        let next = changed(&mut d, &first);
        d.intent = Some(next.clone());
        d.configure(&next).await;
        d.converge().await;
    })
}

pub fn storage_and_catalog(mut d: Driver) -> Body {
    Box::pin(async move {
        let first = base_shape(&mut d, 6);
        d.intent = Some(first.clone());
        d.configure(&first).await;
        d.pause(5, 200).await;
        let mut next = changed(&mut d, &first);
        next.pageserver += 1;
        d.intent = Some(next.clone());
        let running = d.observed_status() == Some(ComputeStatus::Running);
        let boot = d.boot();
        let t0 = now_us();
        let out = d.configure(&next).await;
        // Only a reconfigure of the same running Postgres must reload (a
        // restarted compute starts Postgres with the new config).
        let reconfigured = d.observed_state().is_some_and(|s| {
            s.last_reconfigure.and_then(|r| r.operation_uuid) == Some(next.operation_uuid())
        });
        if running && out.status() == Some(200) && boot == d.boot() && reconfigured {
            d.emit(Event::StorageMoveApplied {
                window_us: (t0, now_us()),
            });
        }
        d.converge().await;
    })
}

/// A dry run, then the apply of the same spec: role options and
/// memberships change, extensions are created and moved. The dry run must
/// change nothing, and once the faults are over the apply must send exactly
/// the statements the dry run predicted.
pub fn dry_run_then_apply(mut d: Driver) -> Body {
    Box::pin(async move {
        let mut first = base_shape(&mut d, 6);
        first.decorate(&mut d.rng, 0);
        d.intent = Some(first.clone());
        let out = d.configure(&first).await;
        let mut next = changed(&mut d, &first);
        next.decorate(&mut d.rng, 1);
        if out.status() == Some(200) {
            // Under the fault schedule: only "changes nothing" is checked.
            d.dry_run(&next).await;
        }
        d.converge().await;
        if d.observed_status() != Some(ComputeStatus::Running) {
            return;
        }
        let boot = d.boot();
        let Some(predicted) = d.dry_run(&next).await else {
            return;
        };
        d.intent = Some(next.clone());
        let t0 = now_us();
        let out = d.configure(&next).await;
        let applied = d.observed_state().is_some_and(|s| {
            s.last_reconfigure.and_then(|r| r.operation_uuid) == Some(next.operation_uuid())
        });
        if out.status() == Some(200) && applied && boot == d.boot() {
            d.emit(Event::PlanApplied {
                window_us: (t0, now_us()),
                predicted,
            });
        }
        d.converge().await;
    })
}
