//! What a scenario changes in the world besides its requests, through its
//! [`Driver`]: the parts the harness plays (the storage's promotion and
//! lag, the WAL model's safekeepers and quorum), the fault knobs it sets
//! itself, and the hosts it asks the runner to crash or boot.

use std::time::Duration;

use super::Driver;
use crate::events::Event;
use crate::wal::WalWorld;

impl Driver {
    /// Every statement of the simulated Postgres takes `delay` from now on.
    pub fn set_query_delay(&self, delay: Duration) {
        self.shared.lock().knobs.query_delay = delay;
    }

    /// The second storage runs `bytes` of WAL behind the first.
    pub fn set_storage_lag(&self, bytes: u64) {
        self.shared.lock().storage_lag = Some(bytes);
    }

    /// Storage host `host` is promoted (it starts a new timeline); logged
    /// ([`Event::StoragePromoted`]) for the checkers.
    pub fn promote_storage(&self, host: &str) {
        self.shared.lock().promoted.insert(host.to_string());
        self.emit(Event::StoragePromoted {
            host: host.to_string(),
        });
    }

    /// `f` over the world's WAL model (the safekeepers, the storage's
    /// quorum, the primary's WAL): for a scenario playing the storage's
    /// part.
    pub fn with_wal<T>(&self, f: impl FnOnce(&mut WalWorld) -> T) -> T {
        f(&mut self.shared.lock().wal)
    }

    /// Asks the runner to crash (`crash`) or boot `host` at its next step.
    pub fn ask_host_action(&self, host: &str, crash: bool) {
        self.shared
            .lock()
            .harness
            .host_actions
            .push((host.to_string(), crash));
    }
}
