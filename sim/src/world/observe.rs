//! What the harness reads off the world for the event log: the compute's
//! state as a request goes out or comes back, and the world at the end.
//! The types are plain data in `crate::observed`; only this module reads
//! the shared state to fill them.

use std::sync::Arc;

use crate::observed::{ReconfigureSeen, Seen, Snap, StateSeen, WorldEnd};
use crate::world::shared::Shared;

impl Seen {
    /// Reads the compute host of `shared`, with its catalog if `catalog`.
    pub fn take(shared: &Shared, catalog: bool) -> Box<Self> {
        let state = shared.compute().map(|c| {
            let st = c.state();
            StateSeen {
                status: st.status,
                generation: st.generation,
                applied_generation: st.applied_generation,
                last_reconfigure: st.last_reconfigure.map(|r| ReconfigureSeen {
                    operation_uuid: r.operation_uuid,
                    total_ms: r.total_ms,
                    catalog_statements: r.catalog_statements,
                }),
            }
        });
        let sh = shared.lock();
        Box::new(Self {
            boot: sh.boot,
            state,
            catalog: catalog.then(|| Snap(Arc::new(sh.catalog.clone()))),
        })
    }
}

impl WorldEnd {
    pub fn take(shared: &Shared) -> Box<Self> {
        let st = shared.compute().map(|c| c.state());
        let sh = shared.lock();
        Box::new(Self {
            status: st.as_ref().map(|s| s.status),
            error: st.as_ref().and_then(|s| s.error.clone()),
            failure_kind: st
                .as_ref()
                .and_then(|s| s.failure.as_ref())
                .map(compute_ctl::compute::FailReason::kind),
            spec: st.as_ref().and_then(|s| s.spec.clone()).map(Snap),
            pending: st.as_ref().is_some_and(|s| s.pending.is_some()),
            catalog_spec: sh.catalog_spec.clone().map(Snap),
            catalog: Snap(Arc::new(sh.catalog.clone())),
            loaded_config: sh.loaded_config.clone(),
        })
    }
}
