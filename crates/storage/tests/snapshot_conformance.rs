//! Both snapshot stores run the same conformance suite and match a model
//! of the contract under random workloads with crashes, and the suite
//! catches stores that break the contract.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use common::{FileSnapshotHarness, MemSnapshotHarness};
use keel_raft::{LogIndex, SnapshotMeta};
use keel_storage::conformance::snapshots::{self, Op};
use proptest::prelude::*;

use keel_storage::{
    MemSnapshotStore, SnapshotInfo, SnapshotReader, SnapshotStore, SnapshotWriter, StorageError,
};

#[test]
fn file_snapshot_store_conforms() {
    snapshots::run_all(FileSnapshotHarness::new);
}

#[test]
fn mem_snapshot_store_conforms() {
    snapshots::check(MemSnapshotStore::new, |store| store);
}

/// Runs one case against a broken variant of the memory store and returns
/// the panic message it fails with.
fn failure_of(case: &str, broken: impl Fn(MemSnapshotStore) -> Broken + Copy) -> String {
    let (_, run) = snapshots::cases::<Closures<_>>()
        .into_iter()
        .find(|(name, _)| *name == case)
        .unwrap_or_else(|| panic!("no case named {case}"));
    let mut harness = Closures(broken);
    let outcome = catch_unwind(AssertUnwindSafe(|| run(&mut harness)));
    let panic = outcome.expect_err("the suite catches the broken store");
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

/// A memory store with one defect.
struct Broken {
    inner: MemSnapshotStore,
    defect: Defect,
}

#[derive(Clone, Copy)]
enum Defect {
    /// Prunes down to the newest snapshot whatever `keep` says, losing the
    /// one a lagging follower is sent.
    PrunesToOne,
    /// Lists snapshots newest first.
    ListsNewestFirst,
}

impl SnapshotStore for Broken {
    fn list(&self) -> Result<Vec<SnapshotInfo>, StorageError> {
        let mut list = self.inner.list()?;
        if let Defect::ListsNewestFirst = self.defect {
            list.reverse();
        }
        Ok(list)
    }

    fn begin(&self, meta: SnapshotMeta) -> Result<Box<dyn SnapshotWriter>, StorageError> {
        self.inner.begin(meta)
    }

    fn open_reader(&self, index: LogIndex) -> Result<Box<dyn SnapshotReader>, StorageError> {
        self.inner.open_reader(index)
    }

    fn prune(&self, keep: usize) -> Result<(), StorageError> {
        match self.defect {
            Defect::PrunesToOne => self.inner.prune(1),
            Defect::ListsNewestFirst => self.inner.prune(keep),
        }
    }
}

/// A harness over `make`, which wraps a fresh memory store.
struct Closures<F>(F);

impl<F: Fn(MemSnapshotStore) -> Broken> snapshots::Harness for Closures<F> {
    type Store = Broken;

    fn create(&mut self) -> Broken {
        (self.0)(MemSnapshotStore::new())
    }

    fn crash_and_recover(&mut self, store: Broken) -> Broken {
        store
    }
}

#[test]
fn a_store_that_prunes_more_than_asked_fails_the_suite() {
    let broken = |inner| Broken {
        inner,
        defect: Defect::PrunesToOne,
    };
    let failure = failure_of(
        "prune_keeps_the_newest_and_open_readers_keep_their_data",
        broken,
    );
    assert!(failure.contains("left: [40]"), "{failure}");
}

#[test]
fn a_store_that_lists_newest_first_fails_the_suite() {
    let broken = |inner| Broken {
        inner,
        defect: Defect::ListsNewestFirst,
    };
    let failure = failure_of("list_is_ordered_and_nothing_is_removed_unasked", broken);
    assert!(failure.contains("[50, 40, 30, 20, 10]"), "{failure}");
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..5, 0u64..3).prop_map(|(index, term)| Op::Begin { index, term }),
        6 => (0usize..4, 0usize..3000, any::<u8>())
            .prop_map(|(writer, len, seed)| Op::Write { writer, len, seed }),
        1 => (0usize..4, -3000i64..3000)
            .prop_map(|(writer, skew)| Op::WriteAtWrongOffset { writer, skew }),
        3 => (0usize..4, proptest::bool::weighted(0.2))
            .prop_map(|(writer, wrong_checksum)| Op::Stage { writer, wrong_checksum }),
        3 => (0usize..4).prop_map(|staged| Op::Publish { staged }),
        1 => (0usize..4).prop_map(|writer| Op::DropWriter { writer }),
        1 => (0usize..4).prop_map(|staged| Op::DropStaged { staged }),
        2 => (0u64..5).prop_map(|index| Op::OpenReader { index }),
        2 => (0usize..4).prop_map(|keep| Op::Prune { keep }),
        1 => Just(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn file_snapshot_store_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        snapshots::check_against_model(&mut FileSnapshotHarness::new(), &ops);
    }

    #[test]
    fn mem_snapshot_store_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        snapshots::check_against_model(&mut MemSnapshotHarness, &ops);
    }
}
