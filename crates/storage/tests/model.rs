//! Model-based property test: random appends, overwrites, hard states,
//! compactions, syncs and crashes; after every step each store must report
//! the model's state, and after every crash the model's durable state (plus,
//! for the harness whose crashes keep one, a prefix of the unsynced writes).

mod common;

use common::{FileHarness, MemHarness, PrefixCrashHarness, segment_files, small_config};
use keel_storage::conformance::{self, Op};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..6, 1u64..12).prop_map(|(back, count)| Op::Append { back, count }),
        2 => (0u64..5, proptest::option::of(0u64..4), 0u64..50)
            .prop_map(|(term, vote, commit)| Op::SetHardState { term, vote, commit }),
        1 => (0u64..8, proptest::bool::weighted(0.2)).prop_map(|(back, conflict)| Op::Compact { back, conflict }),
        1 => (1u64..4).prop_map(|ahead| Op::CompactBeyond { ahead }),
        4 => Just(Op::Sync),
        2 => Just(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn file_store_recovers_exactly_the_durable_state(ops in proptest::collection::vec(op(), 1..80)) {
        let mut harness = FileHarness::new(small_config());
        conformance::check_against_model(&mut harness, &ops);
        // Compaction deletes whole segments, so the log never grows without bound.
        prop_assert!(segment_files(harness.path()).len() < 40);
    }

    #[test]
    fn mem_store_recovers_exactly_the_durable_state(ops in proptest::collection::vec(op(), 1..80)) {
        conformance::check_against_model(&mut MemHarness, &ops);
    }

    #[test]
    fn mem_store_crashed_keeping_random_prefixes_recovers_one_of_them(
        ops in proptest::collection::vec(op(), 1..80),
        seed in any::<u64>(),
    ) {
        conformance::check_against_model(&mut PrefixCrashHarness::new(seed), &ops);
    }
}
