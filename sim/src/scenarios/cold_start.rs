//! Cold starts: the spec fetched from the control plane, given at launch,
//! or delivered by `/configure` from Empty.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::routing::get;
use serde_json::json;

use super::{Body, Driver, Topology, base_shape, driver};
use crate::names::CPLANE_PORT;
use crate::specgen::SpecShape;

/// The first spec of the launch scenarios: operation 1, as the driver's first stamp.
fn first_shape(seed: u64) -> SpecShape {
    let mut s = SpecShape::generate(seed, 3, 2);
    s.operation = 1;
    s
}

pub fn with_spec(seed: u64) -> Topology {
    Topology {
        spec: Some(first_shape(seed)),
        fetch_from_cplane: false,
        ..Topology::default()
    }
}

pub fn fetching(_: u64) -> Topology {
    Topology {
        spec: None,
        fetch_from_cplane: true,
        ..Topology::default()
    }
}

pub fn launch_spec(mut d: Driver) -> Body {
    Box::pin(async move {
        let shape = first_shape(d.seed);
        d.intent = Some(d.stamp(shape));
        d.converge().await;
    })
}

/// Serves `GET /compute/api/v2/computes/{id}/spec`: `spec: null` for the
/// first `not_yet` polls (a pre-warmed compute), then the spec, with the
/// key set in `compute_ctl_config.jwks` as Neon's control plane sends it.
fn spec_server(shape: SpecShape, not_yet: u32) -> Router {
    let polls = Arc::new(AtomicU32::new(0));
    let spec = shape.json();
    let config = json!({"jwks": driver::jwks()});
    Router::new().route(
        "/compute/api/v2/computes/{id}/spec",
        get(move || {
            let polls = polls.clone();
            let spec = spec.clone();
            let config = config.clone();
            async move {
                if polls.fetch_add(1, Ordering::Relaxed) < not_yet {
                    axum::Json(
                        json!({"status": "empty", "spec": null, "compute_ctl_config": config}),
                    )
                } else {
                    axum::Json(
                        json!({"status": "attached", "spec": spec, "compute_ctl_config": config}),
                    )
                }
            }
        }),
    )
}

pub fn from_cplane(mut d: Driver) -> Body {
    Box::pin(async move {
        use rand::Rng;
        let shape = first_shape(d.seed);
        let shape = d.stamp(shape);
        d.intent = Some(shape.clone());
        let not_yet = d.rng.random_range(0..3);
        match driver::listen(CPLANE_PORT).await {
            Ok(listener) => {
                let router = spec_server(shape, not_yet);
                tokio::spawn(async move {
                    let _ = axum::serve(listener, router).await;
                });
            }
            // A harness failure (the world could not be set up), not a
            // property of the compute: no checker to hand it to.
            Err(e) => d.violation(format!("cplane cannot listen: {e}")),
        }
        d.converge().await;
    })
}

pub fn configure(mut d: Driver) -> Body {
    Box::pin(async move {
        let shape = base_shape(&mut d, 8);
        d.intent = Some(shape.clone());
        d.configure(&shape).await;
        d.converge().await;
    })
}
