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
