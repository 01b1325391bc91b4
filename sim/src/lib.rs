//! Deterministic simulation of compute_ctl: the production supervisor
//! (`Compute<SimEnv>::run`, the real catalog apply, the real HTTP router)
//! under turmoil, with a simulated Postgres, seeded faults and invariants.

pub mod campaign;
pub mod checkers;
pub mod events;
pub mod faults;
pub mod http;
pub mod ledger;
pub mod log;
pub mod names;
pub mod observed;
pub mod pgmodel;
pub mod runner;
pub mod scenarios;
pub mod specgen;
pub mod trace;
pub mod wal;
pub mod world;

// turmoil seeds tokio's per-runtime RNG from the simulation's seed only in
// a tokio built with `--cfg tokio_unstable` (`.cargo/config.toml` sets it);
// without it a seed's trace is not the seed's alone (sim/tests/determinism.rs).
#[cfg(not(tokio_unstable))]
compile_error!(
    "the simulator needs tokio built with `--cfg tokio_unstable` (see .cargo/config.toml): \
     a RUSTFLAGS variable replaces that list, add `--cfg tokio_unstable` to it"
);
