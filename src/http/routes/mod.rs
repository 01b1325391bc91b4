//! The route handlers, one file per route group.

pub mod check_writability;
pub mod configure;
pub mod database_schema;
pub mod dbs_and_roles;
pub mod dry_run;
pub mod insights;
pub mod internal;
pub mod metrics;
pub mod neon;
pub mod probes;
pub mod status;
pub mod terminate;
