//! The simulated Postgres: a postmaster behind the `Processes` seam, a
//! server side of the wire protocol, and a catalog model that applies the
//! catalog renderer's SQL dialect.

pub mod catchup;
pub mod durable;
pub mod exec;
pub mod postmaster;
pub mod receiver;
pub mod session;
pub mod wire;
