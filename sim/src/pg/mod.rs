//! The simulated Postgres: a postmaster behind the `Processes` seam, a
//! server side of the wire protocol, and a catalog model that applies the
//! catalog renderer's SQL dialect.

pub mod catalog;
pub mod catchup;
pub mod durable;
pub mod exec;
pub mod guc;
pub mod ops;
pub mod postmaster;
pub mod receiver;
pub mod session;
pub mod sql;
pub mod wire;
