//! compute_ctl: a spec-driven Postgres compute supervisor.
//!
//! See `ARCHITECTURE.md` for the map. In short: [`spec`] is what the control
//! plane asks for, [`state`] the status machine, [`env`] the seam through
//! which every effect goes, [`compute`] the supervisor core, [`pg`] Postgres
//! itself, [`catalog`] roles/databases/extensions, [`metrics`] what we report,
//! [`http`] the API the control plane drives it with, [`monitor`] client activity,
//! [`spec_source`] fetching the spec from a control plane, [`params`] what
//! the command line tells the supervisor (below `compute`, `pg` and `catalog`),
//! [`vm_monitor`] the autoscaler-agent's peer under `AUTOSCALING`.
//! [`config_envelope`] Neon's `-c/--config` file; [`installed_extensions`]
//! Neon's metric of them.
//! [`node`] wires one compute node (supervisor, APIs, monitors, spec
//! delivery) for the binary and the simulator alike.
//! [`storage`] safekeepers, the commit LSN and what a replica streams from.
//! [`spans`] the spans exported over OpenTelemetry (when the binary installs an exporter).

pub mod catalog;
pub mod cli;
pub mod compute;
pub mod config_envelope;
pub mod env;
pub mod health;
pub mod http;
pub mod installed_extensions;
mod layering;
pub mod metrics;
pub mod monitor;
pub mod node;
pub mod params;
pub mod pg;
pub mod planted;
pub mod refresh;
pub mod spans;
pub mod spec;
pub mod spec_source;
pub mod state;
pub mod storage;
pub mod tls;
pub mod vm_monitor;
