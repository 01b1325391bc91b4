//! Terminate while a configure is in flight. The checkers judge it: the
//! interrupted configure is answered (`checkers/interrupted.rs`), and
//! Postgres no longer runs once the terminate was answered
//! (`checkers/terminated.rs`, fed by [`Driver::observe_postgres`]).

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
        }
        d.healed().await;
        d.observe_postgres();
        if !terminate_answered {
            d.converge().await;
        }
    })
}
