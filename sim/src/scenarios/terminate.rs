//! Terminate while a configure is in flight.

use rand::Rng;
use std::time::Duration;

use super::{Body, Driver, base_shape};
use crate::events::Request;

pub fn during_configure(mut d: Driver) -> Body {
    Box::pin(async move {
        let first = base_shape(&mut d, 6);
        d.intent = Some(first.clone());
        // Slow statements so that the terminate lands mid-configure.
        let delay = Duration::from_millis(d.rng.random_range(1..=30));
        d.set_query_delay(delay);
        let body = first.configure_body();
        let sent = d.send(Request::Configure, "/configure", first.operation);
        let configure = tokio::spawn(super::driver::post_configure(body));
        d.pause(1, 400).await;
        let mode = if d.rng.random_bool(0.5) {
            "fast"
        } else {
            "immediate"
        };
        let out = d.terminate(mode).await;
        d.set_query_delay(Duration::ZERO);
        let terminate_answered = out.status() == Some(200);
        if let Ok(c) = configure.await {
            d.answer(&sent, &c);
            // The abandoned configure is answered (409 or 500), never left hanging.
            let excused = d.network_until() > 0;
            if c == crate::http::Outcome::DeadlineExceeded && !excused {
                d.violation("the configure interrupted by /terminate was never answered");
            }
        }
        d.healed().await;
        if terminate_answered && d.config_loaded() {
            d.violation("Postgres still runs after /terminate answered");
        }
        if !terminate_answered {
            d.converge().await;
        }
    })
}
