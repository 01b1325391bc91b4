//! Postgres itself, through the Env seam: PGDATA preparation ([`pgdata`]),
//! config files ([`conf`]), the postmaster process ([`postmaster`]), which
//! settings need a restart ([`restart`]), the supervisor's SQL sessions
//! ([`connect`], the one held across reconfigures: [`held_session`]), the
//! HTTP API's probes ([`probe`]) and schema dump ([`dump`]), a postmaster
//! left behind by a killed run ([`stale`]), the settings the binary knows
//! ([`settings_catalogue`], their base units: [`setting_units`], both kept
//! across runs: [`settings_cache`]) and what
//! Postgres refuses of its config files, asked before a reload
//! ([`file_settings`]).

mod conf;
mod connect;
mod controldata;
pub mod dump;
mod error;
mod file_settings;
mod held_session;
mod pgdata;
mod postmaster;
pub mod probe;
mod restart;
mod setting_units;
pub mod settings_cache;
mod settings_catalogue;
mod stale;
mod tls;

pub use crate::spec::redact_connstr;
pub use conf::{
    DEFAULT_REPLICA_NAME, MANAGED_BEGIN, MANAGED_END, OVERRIDE_FILE, REPLICA_RETRY_INTERVAL,
    RenderedConf, primary_conninfo, quorum_names, quote_conf_value, render_pg_hba,
    render_pg_hba_with, render_postgresql_conf, render_postgresql_conf_as, render_value,
    write_config, write_config_joint, write_override_placeholder,
};
pub use connect::{
    APPLICATION_NAME, ConnectError, connect, first_value, reload_via_sql, session_options,
};
pub use controldata::{parse_shutdown_lsn, shutdown_checkpoint_lsn};
pub use error::{PgError, describe_error, is_unreachable};
pub use file_settings::{
    FILE_SETTINGS_QUERY, FileSettingsError, RefusedLine, absorb_pending_reloads, refusals,
    refused_settings,
};
pub use held_session::{HeldSession, HeldSessionError};
pub use pgdata::{
    BaseBackup, PgdataSource, Prepared, STANDBY_SIGNAL, clear_pgdata, fill_pgdata, remove_pgdata,
    stop_leftovers,
};
pub use postmaster::{describe_exit, spawn_postgres, wait_ready};
pub use restart::{SettingContexts, conf_values, pending_restart};
pub use setting_units::BaseUnit;
pub use settings_catalogue::{
    SettingDef, SettingKind, SettingRefusal, SettingToJudge, SettingsCatalogue,
    ask_settings_listing, judge_setting, learn_base_unit, parse_judgement, parse_major,
    setting_exists,
};
pub use stale::{live_postmaster, stop_stale_postmaster, stop_stale_tools};
pub use tls::{TLS_CONF, TLS_DIR, install_pair};
