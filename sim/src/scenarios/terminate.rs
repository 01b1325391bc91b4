//! Terminate while a configure is in flight.

use rand::Rng;
use std::time::Duration;

use super::{Body, Driver, base_shape};

pub fn during_configure(mut d: Driver) -> Body {
    Box::pin(async move {
        let first = base_shape(&mut d, 6);
        d.intent = Some(first.clone());
        // Slow statements so that the terminate lands mid-configure.
        d.shared.lock().knobs.query_delay = Duration::from_millis(d.rng.random_range(1..=30));
        let body = first.configure_body();
        let configure = tokio::spawn(super::driver::post_configure(body));
        d.pause(1, 400).await;
        let mode = if d.rng.random_bool(0.5) {
            "fast"
        } else {
            "immediate"
        };
        d.shared.lock().terminate_sent = true;
        let out = d.terminate(mode).await;
        d.shared.lock().knobs.query_delay = Duration::ZERO;
        if out.status() == Some(200) {
            d.shared.lock().terminate_answered = true;
        }
        if let Ok(c) = configure.await {
            d.shared.event("http_answer", serde_json::json!({"path": "/configure", "op": first.operation, "outcome": c.label()}));
            // The abandoned configure is answered (409 or 500), never left hanging.
            let excused = d.shared.lock().ledger.network_until() > 0;
            if c == crate::http::Outcome::DeadlineExceeded && !excused {
                d.shared
                    .violation("the configure interrupted by /terminate was never answered");
            }
        }
        d.healed().await;
        if d.shared.lock().terminate_answered && d.shared.lock().loaded_config.is_some() {
            d.shared
                .violation("Postgres still runs after /terminate answered");
        }
        if !d.shared.lock().terminate_answered {
            d.converge().await;
        }
    })
}
