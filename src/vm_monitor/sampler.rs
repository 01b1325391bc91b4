//! Reads the cgroup's non-reclaimable memory every [`rules::POLL_INTERVAL`]
//! on the Env clock and publishes the rolling summary on a watch channel.
//! A failed read publishes nothing, so the summary ages and a downscale is
//! refused with `InternalError` once it is older than 5 s.

use tokio::sync::watch;

use super::Cgroup;
use super::rules::{self, History, Window};
use crate::env::Env;

/// Starts the sampler; the receiver starts at "no sample, taken now".
pub fn spawn<E: Env>(env: E, cgroup: Cgroup) -> watch::Receiver<History> {
    let (tx, rx) = watch::channel(History {
        at: env.now(),
        avg: 0,
        samples: 0,
    });
    tokio::spawn(async move {
        let mut window = Window::default();
        let mut failing = false;
        loop {
            env.sleep(rules::POLL_INTERVAL).await;
            match cgroup.non_reclaimable(&env).await {
                Ok(bytes) => {
                    if failing {
                        tracing::info!("vm-monitor: reading the cgroup's memory again");
                        failing = false;
                    }
                    let summary = window.push(env.now(), bytes);
                    if tx.send(summary).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    // The first failure of a streak only.
                    if !failing {
                        tracing::warn!(error = %e, "vm-monitor: memory sample skipped");
                    }
                    failing = true;
                }
            }
        }
    });
    rx
}
