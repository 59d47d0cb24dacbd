//! Test support for scenario scripts.

pub mod cluster;
pub mod format;
pub mod script;
