//! Both log stores run the same conformance suite.

mod common;

use common::{FileHarness, MemHarness, small_config};
use keel_storage::LogConfig;
use keel_storage::conformance;

#[test]
fn mem_store_conforms() {
    conformance::run_all(|| MemHarness);
}

#[test]
fn file_store_with_small_segments_conforms() {
    conformance::run_all(|| FileHarness::new(small_config()));
}

#[test]
fn file_store_with_default_config_conforms() {
    conformance::run_all(|| FileHarness::new(LogConfig::default()));
}
