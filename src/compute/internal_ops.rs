//! The catalog work the internal listener asks for (`POST /extensions`,
//! `POST /grants`), as typed catalog ops: the same planner, renderer and
//! quoting as a spec's catalog pass, run in the named database.

use super::Compute;
use crate::catalog::execute::{database_ops, extensions_in};
use crate::catalog::{CatalogError, Op, SchemaPrivilege};
use crate::env::Env;
use crate::spec::Extension;

impl<E: Env> Compute<E> {
    /// Creates extension `name` at `version` in `database` (in schema
    /// `public`, as a spec's extensions without a schema are), or updates
    /// an installed one to `version`; an installed one at that version is
    /// left as it is.
    pub async fn install_extension(
        &self,
        database: &str,
        name: &str,
        version: &str,
    ) -> Result<(), CatalogError> {
        let wanted = [Extension {
            name: name.to_string(),
            schema: None,
            version: Some(version.to_string()),
        }];
        let (_, out) = extensions_in(
            &self.env,
            &self.params.conn,
            database,
            &wanted,
            None,
            &|| {},
        )
        .await;
        out.error.map_or(Ok(()), Err)
    }

    /// `GRANT privileges ON SCHEMA schema TO role` in `database`.
    pub async fn grant_schema_privileges(
        &self,
        database: &str,
        schema: &str,
        privileges: Vec<SchemaPrivilege>,
        role: &str,
    ) -> Result<(), CatalogError> {
        let op = Op::GrantSchemaPrivileges {
            database: database.to_string(),
            schema: schema.to_string(),
            privileges,
            role: role.to_string(),
        };
        let out = database_ops(
            &self.env,
            &self.params.conn,
            database.to_string(),
            vec![op],
            &|| {},
        )
        .await;
        out.error.map_or(Ok(()), Err)
    }
}
