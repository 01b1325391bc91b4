//! Deterministic simulation of compute_ctl: the production supervisor
//! (`Compute<SimEnv>::run`, the real catalog apply, the real HTTP router)
//! under turmoil, with a simulated Postgres, seeded faults and invariants.

pub mod campaign;
pub mod checkers;
pub mod env;
pub mod events;
pub mod faults;
pub mod fs;
pub mod http;
pub mod ledger;
pub mod observed;
pub mod pg;
pub mod procs;
pub mod runner;
pub mod safekeeper;
pub mod scenarios;
pub mod shared;
pub mod specgen;
pub mod storage;
pub mod trace;
pub mod wal;
pub mod walstream;
pub mod world;
