//! The integration tests, as ONE test binary (`cargo test --test it`):
//! one module per suite, and one `support` module compiled once for all
//! of them (23 binaries each compiled and linked their own copy).
//! Filter by module: `cargo test --test it -- crash_phases::`.
//!
//! The suites share one process: a suite must not set process-wide
//! state (environment variables, the working directory); per-test
//! resources come from `support` (ports from one counter, temp dirs,
//! Postgres servers owned by the test).

mod e2e_support;
mod support;

mod api;
mod catalog;
mod catalog_dry_run;
mod catalog_dry_run_http;
mod catalog_options;
mod catalog_render;
mod crash_durable;
mod crash_phases;
mod crash_promote;
mod durable_fork;
mod durable_primary;
mod e2e_container;
mod empty_branch;
mod fuzz;
mod graceful_stop;
mod hostile_http;
mod leftover_primary;
mod lifecycle;
mod majors_smoke;
mod neon_contract;
mod neon_launch;
mod openapi;
mod ops;
mod pending_restart;
mod promote;
mod refresh_configuration;
mod setting_values;
mod settings_cache;
mod skip_flag;
mod soak;
mod spec_source;
mod storage;
mod storage_faults;
mod timeline_claim;
mod tracing_otlp;
mod validate_spec_cli;
mod vm_monitor;
