//! The route handlers, one file per route group.

pub mod configure;
pub mod dbs_and_roles;
pub mod dry_run;
pub mod metrics;
pub mod probes;
pub mod status;
pub mod terminate;
