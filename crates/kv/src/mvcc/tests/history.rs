//! Watch history on a read view (`history.rs`): a history read in chunks
//! at a fixed revision returns what a read holding the lock throughout
//! returns, whatever is applied between its chunks, and starts over when a
//! compaction races it.

use super::super::history::{HISTORY_CHUNK_ROWS, HistoryScan};
use super::super::view::{Hold, ReadView, ViewError};
use super::super::{KeyRange, VIEW_ATTEMPTS};
use super::view::{apply, compact, delete, history as thirty_keys, put};
use super::*;
use crate::proto::command::CompactionStep;
use crate::proto::mvccpb::Event;

/// What a history read asks for.
#[derive(Clone, Debug)]
struct Ask {
    from: i64,
    to: i64,
    range: KeyRange,
    max_events: usize,
}

/// The events of a read that holds the lock throughout.
fn locked(store: &Store, ask: &Ask) -> Vec<Event> {
    let view = ReadView::open(store, Hold::Throughout).unwrap();
    scan_all(&view, ask).unwrap()
}

/// The whole read on `view`, a chunk of [`HISTORY_CHUNK_ROWS`] at a time.
fn scan_all(view: &ReadView<'_>, ask: &Ask) -> Result<Vec<Event>, ViewError> {
    let mut scan = HistoryScan::new(view, ask.from, ask.to, &ask.range, ask.max_events)?;
    while !scan.is_done() {
        scan.step(view, HISTORY_CHUNK_ROWS)?;
    }
    Ok(scan.into_events())
}

/// Reads `ask` on a view three watched rows at a time, applying one of
/// `between` after each chunk; returns the events and the chunks taken.
fn chunked(h: &mut Harness, ask: &Ask, between: &[Op]) -> (Vec<Event>, usize) {
    let store = &h.store;
    let view = ReadView::open(store, Hold::PerChunk { keys: 3 }).unwrap();
    let mut scan = HistoryScan::new(&view, ask.from, ask.to, &ask.range, ask.max_events).unwrap();
    let mut writes = between.iter().cloned();
    let mut chunks = 0;
    while !scan.is_done() {
        scan.step(&view, 3).unwrap();
        chunks += 1;
        assert!(chunks <= 40, "at most 80 watched rows take 27 chunks of 3");
        if let Some(op) = writes.next() {
            apply(store, &mut h.index, op);
        }
    }
    (scan.into_events(), chunks)
}

fn revisions(events: &[Event]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e.kv.as_ref().unwrap().mod_revision)
        .collect()
}

#[test]
fn a_chunked_history_returns_what_a_locked_one_returns_whatever_is_applied_between_chunks() {
    let mut h = Harness::new();
    thirty_keys(&mut h);
    let current = h.store.position().revision;
    let asks = [
        Ask {
            from: 2,
            to: current,
            range: KeyRange::new("k", "l"),
            max_events: 1000,
        },
        Ask {
            from: 2,
            to: current,
            range: KeyRange::new("k", "l"),
            max_events: 7,
        },
        Ask {
            from: 10,
            to: current - 3,
            range: KeyRange::new("k", "\0"),
            max_events: 1000,
        },
        Ask {
            from: 2,
            to: current,
            range: KeyRange::new("k06", ""),
            max_events: 1000,
        },
    ];
    for ask in &asks {
        let expected = locked(&h.store, ask);
        assert!(!expected.is_empty(), "{ask:?}");
        // Writes to watched keys and others, deletions, and a watched key
        // recreated: all of them above the view's revision.
        let between = [
            put("k01", "new"),
            put("k29", "new"),
            delete("k28"),
            put("k05a", "inserted"),
            put("k00", "recreated"),
            delete("k07"),
            put("a", "outside"),
        ];
        let (got, chunks) = chunked(&mut h, ask, &between);
        assert!(
            chunks >= expected.len().div_ceil(3),
            "{ask:?}: {chunks} chunks"
        );
        assert_eq!(revisions(&got), revisions(&expected), "{ask:?}");
        assert_eq!(got, expected, "{ask:?}");
    }
    // The limit ends the read at a whole revision, and prev_kv is there.
    let limited = locked(&h.store, &asks[1]);
    assert_eq!(limited.len(), 7);
    let overwrite = locked(&h.store, &asks[3]);
    assert_eq!(overwrite.len(), 3, "put, put again, delete");
    assert_eq!(overwrite[1].prev_kv.as_ref().unwrap().value, "v0");
}

#[test]
fn a_chunked_history_skips_garbage_that_compaction_steps_delete_between_chunks() {
    let mut h = Harness::new();
    thirty_keys(&mut h);
    // Compacting at a deletion makes its row garbage; the steps that
    // delete it and every older garbage row run while the read goes on.
    let deletion = h.store.position().revision - 4;
    h.run(compact(deletion)).unwrap();
    let ask = Ask {
        from: deletion,
        to: h.store.position().revision,
        range: KeyRange::new("", "\0"),
        max_events: 1000,
    };
    let expected = locked(&h.store, &ask);
    assert!(
        !revisions(&expected).contains(&deletion),
        "the compacted deletion is garbage: {:?}",
        revisions(&expected)
    );
    assert_eq!(expected.len(), 4, "three later deletions and z");
    let step = Op::CompactionStep(CompactionStep {});
    let (got, _) = chunked(&mut h, &ask, &[step.clone(), step.clone(), step]);
    assert_eq!(got, expected);
    assert!(!h.store.compaction_pending(), "the steps ran");
}

#[test]
fn a_compaction_between_chunks_races_a_history_read() {
    let mut h = Harness::new();
    thirty_keys(&mut h);
    let store = &h.store;
    let view = ReadView::open(store, Hold::PerChunk { keys: 3 }).unwrap();
    let range = KeyRange::new("k", "l");
    let mut scan = HistoryScan::new(&view, 2, view.revision(), &range, 1000).unwrap();
    scan.step(&view, 3).unwrap();
    // Even a compaction below the read's start changes which rows at its
    // start are garbage.
    apply(store, &mut h.index, compact(2));
    assert!(matches!(scan.step(&view, 3), Err(ViewError::Raced)));
}

#[test]
fn a_raced_history_read_starts_over_on_a_new_view_or_answers_compacted() {
    let mut h = Harness::new();
    thirty_keys(&mut h);
    let first = h.store.position().revision;
    let index = std::cell::Cell::new(h.index);
    let store = &h.store;
    let race = |compact_at: i64| {
        let mut i = index.get();
        apply(store, &mut i, put("k99", "new"));
        apply(store, &mut i, compact(compact_at));
        index.set(i);
    };
    let range = KeyRange::new("k", "l");
    let read = |from: i64, race_attempts: usize, compact_at: &dyn Fn(usize) -> i64| {
        let mut attempts = 0;
        let answer = store.read(|view| {
            attempts += 1;
            if attempts <= race_attempts {
                race(compact_at(attempts));
            }
            scan_all(
                view,
                &Ask {
                    from,
                    to: first + 10,
                    range: range.clone(),
                    max_events: 1000,
                },
            )
        });
        (answer, attempts)
    };

    // Raced once by a compaction below its start: answered from a new
    // view, which holds the put made meanwhile.
    let from = first - 5;
    let (answer, attempts) = read(from, 1, &|_| from - 1);
    let events = answer.unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(events.last().unwrap().kv.as_ref().unwrap().key, "k99");
    assert_eq!(
        events.last().unwrap().kv.as_ref().unwrap().mod_revision,
        first + 1
    );

    // Raced by a compaction past its start: etcd's ErrCompacted.
    let (answer, attempts) = read(from, 1, &|_| from + 1);
    assert!(matches!(answer, Err(KvError::Compacted)), "{answer:?}");
    assert_eq!(attempts, 2);

    // Raced at every attempt (by compactions below its start): the last
    // one holds the lock and answers, with every put made meanwhile.
    let from = store.position().revision;
    let (answer, attempts) = read(from, VIEW_ATTEMPTS, &|attempt| {
        from - 1 - VIEW_ATTEMPTS as i64 + attempt as i64
    });
    assert_eq!(attempts, VIEW_ATTEMPTS + 1);
    assert_eq!(
        revisions(&answer.unwrap()),
        (from..=from + VIEW_ATTEMPTS as i64).collect::<Vec<_>>()
    );
}
