//! Postgres itself, through the Env seam: PGDATA preparation ([`pgdata`]),
//! config files ([`conf`]), the postmaster process ([`postmaster`]), which
//! settings need a restart ([`restart`]), the supervisor's SQL sessions
//! ([`connect`]) and a postmaster left behind by a killed run ([`stale`]).

mod conf;
mod connect;
mod controldata;
mod error;
mod pgdata;
mod postmaster;
mod restart;
mod stale;
mod tls;

pub use conf::{
    DEFAULT_REPLICA_NAME, MANAGED_BEGIN, MANAGED_END, OVERRIDE_FILE, REPLICA_RETRY_INTERVAL,
    RenderedConf, primary_conninfo, quote_conf_value, render_pg_hba, render_postgresql_conf,
    render_postgresql_conf_as, render_value, write_config,
};
pub use connect::{APPLICATION_NAME, ConnectError, connect, session_options};
pub use controldata::{parse_shutdown_lsn, shutdown_checkpoint_lsn};
pub use error::PgError;
pub use pgdata::{
    BaseBackup, PgdataSource, Prepared, STANDBY_SIGNAL, prepare_pgdata, redact_connstr,
};
pub use postmaster::{describe_exit, spawn_postgres, wait_ready};
pub use restart::{SettingContexts, conf_values, pending_restart, read_setting_contexts};
pub use stale::{live_postmaster, stop_stale_postmaster, stop_stale_tools};
pub use tls::{TLS_CONF, TLS_DIR, install_pair};
