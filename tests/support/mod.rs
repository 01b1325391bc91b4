//! Shared helpers of the integration tests.
#![allow(dead_code)]

pub mod compute;
pub mod control_plane;
pub mod postgres;
