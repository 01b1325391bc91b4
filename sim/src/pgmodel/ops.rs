//! The catalog types the simulated server parses SQL back into: the very
//! ones the supervisor's renderer renders from.

pub use compute_ctl::catalog::{
    DbOption, EXTENSIONS_MARKER, EXTENSIONS_SQL, Op, RoleAttr, RoleAttrs, SNAPSHOT_SQL, Secret,
};
