use std::collections::BTreeMap;

use super::*;
use crate::tests::{Lcg, random_changes};
use crate::{Change, Commit, DeadLetter, ReadOnlyStore, Store};

const FEATURES: [&str; 3] = ["viewer.a", "viewer.b", "viewer.c"];
const IDS: [&str; 5] = [
    "v_00000000000000000000000000000001",
    "v_00000000000000000000000000000002",
    "v_00000000000000000000000000000003",
    "tt-title",
    "v_000000000000000000000000000000ff",
];

/// Changes of every tick in `ticks`: keys change at different paces (feature a of id 0 every
/// tick, the rest once in 2 to 60 ticks), sometimes back to the default.
fn changes(rng: &mut Lcg, ticks: std::ops::Range<u64>) -> Vec<Change> {
    random_changes(rng, ticks, (&FEATURES, &IDS), [1, 2, 7, 20, 60], 8)
}

fn dead_letter(offset: u64) -> DeadLetter {
    DeadLetter {
        topic: "events".into(),
        partition: (offset % 2) as u32,
        offset,
        reason: "bad json".into(),
        time_ms: None,
    }
}

type Values = BTreeMap<(&'static str, &'static str), Option<Vec<u8>>>;

fn values_as_of(snap: &crate::Snapshot, t: u64) -> Values {
    let lookup = snap.history_lookup().unwrap();
    let mut values = BTreeMap::new();
    for feature in FEATURES {
        for id in IDS {
            values.insert((feature, id), lookup.as_of(feature, id, t).unwrap());
        }
    }
    values
}

/// Every history entry before the horizon must be the latest change of its key at or before
/// it; `all` is the same history unpurged.
fn check_nothing_older_survives(purged: &crate::Snapshot, all: &crate::Snapshot) {
    let horizon = purged.retained_from_ms().unwrap();
    let full = all.history().unwrap();
    for row in purged.history().unwrap() {
        if row.valid_from_ms >= horizon {
            continue;
        }
        let next = full.iter().find(|r| {
            r.feature == row.feature
                && r.entity_id == row.entity_id
                && r.valid_from_ms > row.valid_from_ms
        });
        assert!(
            next.is_none_or(|n| n.valid_from_ms > horizon),
            "{row:?} ended at {:?}, before the horizon {horizon}",
            next.map(|n| n.valid_from_ms)
        );
    }
}

/// The store with a retention and one without, fed the same commits (some of them after the
/// retention was lowered, then raised, and some after reopening the store), agree at every
/// tick at or after the horizon; nothing older than the horizon survives; reads before it are
/// refused.
#[test]
fn the_purge_keeps_every_value_inside_the_retention_and_nothing_older() {
    let kept = tempfile::tempdir().unwrap();
    let all = tempfile::tempdir().unwrap();
    let mut store = Store::open(kept.path()).unwrap();
    let full = Store::open(all.path()).unwrap();
    let mut rng = Lcg(7);
    let mut tick = 1;
    let mut offset = 0;
    let mut total = Purged::default();
    for step in 0..90u64 {
        let retention_ms = match step {
            0..40 => 40_000,
            40..60 => 15_000,
            _ => 30_000,
        };
        let ticks = 1 + rng.next(6);
        let changes = changes(&mut rng, tick..tick + ticks);
        tick += ticks;
        let dead_letters: Vec<DeadLetter> = (0..rng.next(3))
            .map(|_| {
                offset += 1;
                // Some with the event time they were read at, some landing at the commit's.
                let time_ms =
                    (offset % 3 != 0).then(|| (tick * 1000).saturating_sub(rng.next(20_000)));
                DeadLetter {
                    time_ms,
                    ..dead_letter(offset)
                }
            })
            .collect();
        let commit = Commit {
            frontier_ms: tick * 1000,
            changes,
            dead_letters,
            retention_ms: Some(retention_ms),
            ..Commit::default()
        };
        let purged = store.commit(&commit).unwrap();
        total.add(&purged);
        full.commit(&Commit {
            retention_ms: None,
            ..commit
        })
        .unwrap();
        if step % 25 == 24 {
            drop(store);
            store = Store::open(kept.path()).unwrap();
        }

        let snap = store.snapshot().unwrap();
        let whole = full.snapshot().unwrap();
        let horizon = snap.retained_from_ms().unwrap();
        let frontier = tick * 1000;
        // The horizon follows the retention down, and stands still when it is raised.
        let want = match step {
            60.. => (frontier - 30_000).max(snap.meta_u64(META_RETAINED_FROM).unwrap().unwrap()),
            _ => frontier.saturating_sub(retention_ms),
        };
        assert_eq!(horizon, want, "step {step}");
        assert_eq!(snap.retention_ms().unwrap(), Some(retention_ms));
        for t in (horizon..frontier).step_by(500) {
            assert_eq!(values_as_of(&snap, t), values_as_of(&whole, t), "as of {t}");
        }
        assert_eq!(snap.online_all().unwrap(), whole.online_all().unwrap());
        check_nothing_older_survives(&snap, &whole);
        if horizon > 0 {
            let err = snap.as_of("viewer.a", IDS[0], horizon - 1).unwrap_err();
            assert!(matches!(err, StoreError::Purged { .. }), "{err}");
            let err = snap
                .history_lookup()
                .unwrap()
                .rows("viewer.a", IDS[0], horizon - 1);
            assert!(matches!(err, Err(StoreError::Purged { .. })));
        }
        // The rows a lookup lists start at the value as of the horizon.
        let rows = snap
            .history_lookup()
            .unwrap()
            .rows("viewer.a", IDS[0], frontier)
            .unwrap();
        assert!(rows.iter().skip(1).all(|(t, _)| *t > horizon), "{rows:?}");
        let times = snap.dead_letter_times().unwrap();
        assert!(times.iter().all(|(t, ..)| *t >= horizon), "{times:?}");
        assert_eq!(times.len(), snap.dead_letters().unwrap().len());
    }
    assert!(total.history_entries > 500, "{total:?}");
    assert!(total.blocks_removed > 10, "{total:?}");
    assert!(total.dead_letters > 10, "{total:?}");
}

#[test]
fn a_retention_past_the_limit_is_refused_and_nothing_lands() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let commit = Commit {
        frontier_ms: 2000,
        retention_ms: Some(MAX_RETENTION_MS + 1),
        ..Commit::default()
    };
    let err = store.commit(&commit).unwrap_err();
    assert!(
        matches!(err, StoreError::RetentionPastLimit { .. }),
        "{err}"
    );
    assert_eq!(store.snapshot().unwrap().frontier_ms().unwrap(), None);
}

/// A dead letter the log yields again (a restart reads it again) keeps its first time, so the
/// purge takes it when its first landing is past the retention.
#[test]
fn a_dead_letter_landing_again_keeps_its_first_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for frontier_ms in [1000, 5000] {
        let commit = Commit {
            frontier_ms,
            dead_letters: vec![dead_letter(3)],
            retention_ms: Some(10_000),
            ..Commit::default()
        };
        store.commit(&commit).unwrap();
    }
    let snap = store.snapshot().unwrap();
    let times = snap.dead_letter_times().unwrap();
    assert_eq!(times, vec![(1000, "events".to_string(), 1, 3)]);
    let commit = Commit {
        frontier_ms: 11_001,
        retention_ms: Some(10_000),
        ..Commit::default()
    };
    assert_eq!(store.commit(&commit).unwrap().dead_letters, 1);
    assert!(store.snapshot().unwrap().dead_letters().unwrap().is_empty());
}

/// A store written before dead letters had times gets them when a writer opens it: the
/// store's frontier then, so they go one retention later, never at once.
#[test]
fn an_older_store_gets_its_dead_letters_timed_at_its_frontier() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let commit = Commit {
        frontier_ms: 4000,
        dead_letters: vec![dead_letter(1), dead_letter(2)],
        ..Commit::default()
    };
    store.commit(&commit).unwrap();
    drop(store);
    {
        // Undo what a store of this format written before retention lacks.
        let db = redb::Database::open(dir.path().join(crate::FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(DEAD_LETTER_TIMES).unwrap();
        txn.commit().unwrap();
    }
    let ro = ReadOnlyStore::open(dir.path()).unwrap();
    assert!(
        ro.snapshot()
            .unwrap()
            .dead_letter_times()
            .unwrap()
            .is_empty()
    );
    drop(ro);
    let store = Store::open(dir.path()).unwrap();
    let times: Vec<u64> = store
        .snapshot()
        .unwrap()
        .dead_letter_times()
        .unwrap()
        .iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(times, vec![4000, 4000]);
}

/// Under steady purging, freed pages are reused: the file stops growing.
#[test]
fn the_file_stops_growing_under_steady_purging() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut rng = Lcg(3);
    let size = || {
        std::fs::metadata(dir.path().join(crate::FILE_NAME))
            .unwrap()
            .len()
    };
    let mut sizes = Vec::new();
    for step in 0..1000u64 {
        let tick = step + 1;
        let changes = (0..200u64)
            .map(|i| Change {
                entity_kind: "viewer",
                feature: FEATURES[(i % 3) as usize],
                entity_id: format!("v_{:032x}", i + rng.next(50) * 1000).into(),
                tick_ms: tick * 1000,
                value: Some(format!("{}", rng.next(1 << 20)).into_bytes()),
            })
            .collect();
        let commit = Commit {
            frontier_ms: (tick + 1) * 1000,
            changes,
            retention_ms: Some(50_000),
            ..Commit::default()
        };
        store.commit(&commit).unwrap();
        if [249, 499, 999].contains(&step) {
            sizes.push(size());
        }
    }
    // The first 50 ticks fill the retention; after that every tick purges about as much as it
    // writes. Without the purge the data at the end is four times that at the first size, and
    // redb doubles the file as it fills.
    assert!(
        sizes[2] < sizes[0] + sizes[0] / 2,
        "the file grew from {} to {} bytes: {sizes:?}",
        sizes[0],
        sizes[2]
    );
}
