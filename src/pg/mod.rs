//! Postgres itself, through the Env seam: PGDATA preparation ([`pgdata`]),
//! config files ([`conf`]), the postmaster process ([`postmaster`]), which
//! settings need a restart ([`restart`]) and the supervisor's SQL sessions
//! ([`connect`]).

mod conf;
mod connect;
mod error;
mod pgdata;
mod postmaster;
mod restart;

pub use conf::{
    MANAGED_BEGIN, MANAGED_END, OVERRIDE_FILE, RenderedConf, quote_conf_value, render_pg_hba,
    render_postgresql_conf, render_value, write_config,
};
pub use connect::{APPLICATION_NAME, ConnectError, connect, session_options};
pub use error::PgError;
pub use pgdata::{PgdataSource, prepare_pgdata, redact_connstr};
pub use postmaster::{describe_exit, spawn_postgres, wait_ready};
pub use restart::{SettingContexts, conf_values, pending_restart, read_setting_contexts};
