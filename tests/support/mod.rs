#![allow(dead_code)]

pub mod compute;
pub mod control_plane;
