//! The catalog pass of a compute that ignores `skip_pg_catalog_updates`,
//! as Neon's compute_ctl ran it on every notify before the fix: an
//! `ALTER ROLE ... PASSWORD` for every md5 role of the spec, then a session
//! per database for the per-database work. Emulated as a floor with psql,
//! one script, on the compute's own Postgres, in the same run as ours.

use std::path::Path;

use crate::postgres;
use crate::specs;

/// The script: one `ALTER ROLE` per role (the spec's own md5 verifiers, so
/// the catalog ends as it was) and one `\c` + query per database.
pub fn script(roles: usize, dbs: usize) -> String {
    let mut s = String::with_capacity(roles * 80 + dbs * 80);
    for i in 0..roles {
        let name = specs::role_name(i);
        let md5 = specs::md5_hex(&specs::password(i, 0), &name);
        s.push_str(&format!(
            "ALTER ROLE \"{name}\" WITH ENCRYPTED PASSWORD 'md5{md5}';\n"
        ));
    }
    for i in 0..dbs {
        // What Neon's per-database phase did first in every database: read
        // the schema privileges before granting.
        s.push_str(&format!(
            "\\c {}\nSELECT nspname, nspacl FROM pg_catalog.pg_namespace WHERE nspname = 'public';\n",
            specs::db_name(i)
        ));
    }
    s
}

/// Runs `script_path` with psql against 127.0.0.1:`port` as `user`.
pub fn run(port: u16, user: &str, script_path: &Path) -> anyhow::Result<()> {
    let mut psql = postgres::tool("psql");
    psql.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        user,
        "-d",
        "postgres",
        "-o",
        "/dev/null",
        "-f",
    ])
    .arg(script_path);
    postgres::run(psql)
}
