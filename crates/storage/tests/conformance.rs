//! Both log stores run the same conformance suite.

mod common;

use common::{FileHarness, MemHarness, PrefixCrashHarness, small_config};
use keel_storage::conformance;
use keel_storage::{CrashKeep, LogConfig};

#[test]
fn mem_store_conforms() {
    conformance::run_all(|| MemHarness);
}

#[test]
fn mem_store_whose_crashes_keep_random_prefixes_conforms() {
    let mut crashes = Vec::new();
    for seed in 0..64 {
        for (name, case) in conformance::cases::<PrefixCrashHarness>() {
            eprintln!("conformance (seed {seed}): {name}");
            let mut harness = PrefixCrashHarness::new(seed);
            case(&mut harness);
            crashes.extend(harness.crashes);
        }
    }
    // The seeds dealt every kind of survivor, not only the two a file store
    // can leave.
    let unsynced = crashes.iter().filter(|(_, unsynced)| *unsynced > 0);
    assert!(unsynced.clone().any(|(keep, _)| keep.torn_entries > 0));
    assert!(
        unsynced
            .clone()
            .any(|(keep, n)| keep.writes > 0 && keep.writes < *n)
    );
    assert!(unsynced.clone().any(|(keep, n)| keep.writes == *n));
    assert!(
        unsynced
            .clone()
            .any(|(keep, _)| *keep == CrashKeep::NOTHING)
    );
}

#[test]
fn file_store_with_small_segments_conforms() {
    conformance::run_all(|| FileHarness::new(small_config()));
}

#[test]
fn file_store_with_default_config_conforms() {
    conformance::run_all(|| FileHarness::new(LogConfig::default()));
}
