use std::collections::BTreeMap;

use std::collections::HashSet;

use crate::tests::{Lcg, random_changes};
use crate::{Change, Commit, EntityId, Erasure, Snapshot, Store, StoreError};

const FEATURES: [&str; 3] = ["viewer.a", "viewer.b", "viewer.c"];
const IDS: [&str; 5] = [
    "v_00000000000000000000000000000001",
    "v_00000000000000000000000000000002",
    "v_0123456789abcdef0123456789abcdef",
    "tt-title",
    "v_000000000000000000000000000000ff",
];

/// Changes of every tick in `ticks`, keys at different paces, sometimes back to the default.
fn changes(rng: &mut Lcg, ticks: std::ops::Range<u64>) -> Vec<Change> {
    random_changes(rng, ticks, (&FEATURES, &IDS), [1, 2, 7, 3, 5], 5)
}

fn token(id: &str) -> [u8; 32] {
    let mut t = [0u8; 32];
    for (i, b) in id.bytes().enumerate() {
        t[i % 32] ^= b.wrapping_mul(31).wrapping_add(i as u8);
    }
    t
}

fn erasure(id: &str, ts_ms: u64, tick_ms: u64) -> Erasure {
    Erasure {
        entity_kind: "viewer",
        entity_id: id.into(),
        ts_ms,
        tick_ms,
        token: token(id),
    }
}

/// What a replay that knew the erasures from the start hands the store: an erased entity's
/// changes before its (latest) erasure tick go, and so do its returns to the default before
/// its first value after it.
fn filtered(
    changes: &[Change],
    erased: &BTreeMap<String, u64>,
    valued: &mut HashSet<(&'static str, EntityId)>,
) -> Vec<Change> {
    let mut sorted: Vec<&Change> = changes.iter().collect();
    sorted.sort_by_key(|c| c.tick_ms);
    let mut out = Vec::new();
    for c in sorted {
        if let Some(&t) = erased.get(&c.entity_id.to_string()) {
            let key = (c.feature, c.entity_id.clone());
            if c.tick_ms < t || (c.value.is_none() && !valued.contains(&key)) {
                continue;
            }
            valued.insert(key);
        }
        out.push(c.clone());
    }
    out
}

/// Asserts two lists are equal, showing only the rows that differ.
fn same<T: PartialEq + std::fmt::Debug>(live: Vec<T>, fresh: Vec<T>, case: Option<u64>) {
    let only_live: Vec<_> = live.iter().filter(|r| !fresh.contains(r)).collect();
    let only_fresh: Vec<_> = fresh.iter().filter(|r| !live.contains(r)).collect();
    assert!(
        only_live.is_empty() && only_fresh.is_empty(),
        "retention {case:?}: only live {only_live:#?}, only fresh {only_fresh:#?}"
    );
}

type Reads = BTreeMap<(u64, &'static str, &'static str), Option<Vec<u8>>>;

/// Every key's value as of every tick from `from_ms` to `until_ms`.
fn reads(snap: &Snapshot, from_ms: u64, until_ms: u64) -> Reads {
    let lookup = snap.history_lookup().unwrap();
    let mut out = BTreeMap::new();
    for t in (from_ms..=until_ms).step_by(1000) {
        for feature in FEATURES {
            for id in IDS {
                out.insert((t, feature, id), lookup.as_of(feature, id, t).unwrap());
            }
        }
    }
    out
}

/// A store given erasures mid-stream (several viewers, one twice, one it never held) equals a
/// store fed from the start only what a replay that knew them would produce: in history,
/// online values and every point-in-time read, with and without retention.
#[test]
fn an_erased_store_equals_a_replay_that_knew_the_erasures() {
    let cases = [
        (None, 11),
        (Some(25_000), 11),
        (None, 12),
        (Some(9_000), 13),
    ];
    for (retention_ms, seed) in cases {
        let live_dir = tempfile::tempdir().unwrap();
        let live = Store::open(live_dir.path()).unwrap();
        let mut valued = HashSet::new();
        let mut rng = Lcg(seed);
        let mut tick = 1;
        // Commit number → the erasures it carries, as (id, E, offset of T_e in its ticks).
        let plan: BTreeMap<u64, Vec<(&str, u64)>> = BTreeMap::from([
            (6, vec![(IDS[0], 1)]),
            (
                9,
                vec![
                    (IDS[2], 0),
                    (IDS[4], 2),
                    ("v_000000000000000000000000000000aa", 0),
                ],
            ),
            (14, vec![(IDS[0], 1)]),
        ]);
        let mut erased: BTreeMap<String, u64> = BTreeMap::new();
        let mut all_changes = Vec::new();
        for step in 0..20u64 {
            let ticks = 3 + rng.next(3);
            let batch = changes(&mut rng, tick..tick + ticks);
            let mut erasures = Vec::new();
            for (id, offset) in plan.get(&step).into_iter().flatten() {
                let t_e = (tick + offset) * 1000;
                erasures.push(erasure(id, t_e - 1500, t_e));
                erased.insert(id.to_string(), t_e);
                // A second erasure starts the viewer afresh again.
                valued.retain(|(_, e): &(&str, EntityId)| e.to_string() != *id);
            }
            tick += ticks;
            all_changes.extend(batch.iter().cloned());
            // The live store gets the erasure commit's changes raw (it filters them), the later
            // ones as a pipeline that filters the erased viewers' old events hands them.
            let piped = filtered(&batch, &erased, &mut valued);
            let live_changes = match erasures.is_empty() {
                true => piped,
                false => batch.clone(),
            };
            let commit = Commit {
                frontier_ms: tick * 1000,
                changes: live_changes,
                retention_ms,
                erasures,
                ..Commit::default()
            };
            live.commit(&commit).unwrap();
        }
        // What a replay knowing every erasure from the start is fed: the whole stream filtered.
        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh = Store::open(fresh_dir.path()).unwrap();
        let mut by_tick: BTreeMap<u64, Vec<Change>> = BTreeMap::new();
        for c in filtered(&all_changes, &erased, &mut HashSet::new()) {
            by_tick.entry(c.tick_ms).or_default().push(c);
        }
        for (t, changes) in by_tick {
            let commit = Commit {
                frontier_ms: t + 1000,
                changes,
                retention_ms,
                ..Commit::default()
            };
            fresh.commit(&commit).unwrap();
        }
        let frontier = tick * 1000;
        fresh
            .commit(&Commit {
                frontier_ms: frontier,
                retention_ms,
                ..Commit::default()
            })
            .unwrap();
        let (l, f) = (live.snapshot().unwrap(), fresh.snapshot().unwrap());
        same(l.history().unwrap(), f.history().unwrap(), retention_ms);
        assert_eq!(l.online_all().unwrap(), f.online_all().unwrap());
        let from = l.retained_from_ms().unwrap();
        assert_eq!(from, f.retained_from_ms().unwrap());
        assert_eq!(reads(&l, from, frontier), reads(&f, from, frontier));
        // Four erasures applied; the repeat of the first viewer is a later one, so it counts.
        assert_eq!(l.erasures_applied().unwrap(), 5);
        assert_eq!(l.erasures().unwrap().len(), 4);
        let first = l.erasure(token(IDS[0])).unwrap().unwrap();
        assert_eq!(first.tick_ms, erased[IDS[0]]);
    }
}

#[test]
fn an_erased_viewer_reads_as_never_seen_and_others_are_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut rng = Lcg(3);
    for step in 0..10u64 {
        let changes = changes(&mut rng, step * 4 + 1..step * 4 + 5);
        let commit = Commit {
            frontier_ms: (step * 4 + 5) * 1000,
            changes,
            ..Commit::default()
        };
        store.commit(&commit).unwrap();
    }
    let frontier = 41_000;
    let before = reads(&store.snapshot().unwrap(), 0, frontier);
    let gone = IDS[2];
    assert!(
        !store
            .snapshot()
            .unwrap()
            .online("viewer", gone)
            .unwrap()
            .is_empty()
    );
    let commit = Commit {
        frontier_ms: frontier,
        erasures: vec![erasure(gone, 40_500, frontier)],
        ..Commit::default()
    };
    let purged = store.commit(&commit).unwrap();
    assert_eq!(purged.erased.erasures, 1);
    assert_eq!(purged.erased.online_rows, 1);
    assert!(purged.erased.history_entries > 20, "{:?}", purged.erased);
    let snap = store.snapshot().unwrap();
    assert!(snap.online("viewer", gone).unwrap().is_empty());
    assert!(snap.history().unwrap().iter().all(|r| r.entity_id != gone));
    let after = reads(&snap, 0, frontier);
    for (key, value) in &before {
        let want = if key.2 == gone { &None } else { value };
        assert_eq!(&after[key], want, "{key:?}");
    }
    assert_eq!(snap.erasures_applied().unwrap(), 1);
    assert_eq!(snap.latest_erasure().unwrap(), Some((40_500, frontier)));
    // Again: a repeat, skipped.
    let purged = store.commit(&commit).unwrap();
    assert_eq!((purged.erased.erasures, purged.erased.repeats), (0, 1));
    assert_eq!(store.snapshot().unwrap().erasures_applied().unwrap(), 1);
    // A viewer the store never held: recorded, and nothing to scrub.
    let unknown = "v_fedcba9876543210fedcba9876543210";
    let commit = Commit {
        frontier_ms: frontier,
        erasures: vec![erasure(unknown, 1, frontier)],
        ..Commit::default()
    };
    let erased = store.commit(&commit).unwrap().erased;
    assert_eq!((erased.erasures, erased.online_rows), (1, 0));
    assert_eq!(erased.scrub, crate::Scrubbed::default());
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.erasures_applied().unwrap(), 2);
    assert!(snap.erasure(token(unknown)).unwrap().is_some());
    assert!(
        snap.meta(crate::erase::META_SCRUB_PENDING)
            .unwrap()
            .is_none()
    );
}

#[test]
fn an_erasure_outside_its_commit_is_refused_and_nothing_lands() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut rng = Lcg(5);
    let commit = Commit {
        frontier_ms: 10_000,
        changes: changes(&mut rng, 1..10),
        ..Commit::default()
    };
    store.commit(&commit).unwrap();
    for tick_ms in [5_000, 21_000] {
        let commit = Commit {
            frontier_ms: 20_000,
            erasures: vec![erasure(IDS[0], 1, tick_ms)],
            ..Commit::default()
        };
        let err = store.commit(&commit).unwrap_err();
        assert!(matches!(err, StoreError::ErasureTick { .. }), "{err}");
    }
    let snap = store.snapshot().unwrap();
    assert!(!snap.online("viewer", IDS[0]).unwrap().is_empty());
    assert_eq!(snap.erasures_applied().unwrap(), 0);
    assert_eq!(snap.frontier_ms().unwrap(), Some(10_000));
}

/// Every byte pattern that would betray `id`: the packed entity key, its 16 bytes alone, the
/// pseudonym as text and its hex digits.
fn traces(id: &str) -> Vec<Vec<u8>> {
    let key = crate::layout::entity_key(id);
    let hex = id.strip_prefix("v_").unwrap();
    vec![
        key.clone(),
        key[1..].to_vec(),
        id.as_bytes().to_vec(),
        hex.as_bytes().to_vec(),
    ]
}

/// The files of `dir` that hold any of `patterns`.
fn files_holding(dir: &std::path::Path, patterns: &[Vec<u8>]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for p in patterns {
            if bytes.windows(p.len()).any(|w| w == p.as_slice()) {
                found.push(format!("{} holds {p:02x?}", path.display()));
            }
        }
    }
    found
}

/// A store of several viewers, written over many commits (so pages are freed and reused), one
/// of them erased.
fn written_store(dir: &std::path::Path) -> (Store, u64) {
    let store = Store::open(dir).unwrap();
    let mut rng = Lcg(21);
    let mut tick = 1;
    for _ in 0..30u64 {
        let ticks = 2 + rng.next(4);
        let commit = Commit {
            frontier_ms: (tick + ticks) * 1000,
            changes: changes(&mut rng, tick..tick + ticks),
            retention_ms: Some(60_000),
            ..Commit::default()
        };
        tick += ticks;
        store.commit(&commit).unwrap();
    }
    (store, tick * 1000)
}

#[test]
fn after_an_erasure_no_byte_of_the_viewer_remains_in_the_store_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, frontier) = written_store(dir.path());
    let gone = IDS[2];
    let from = store.snapshot().unwrap().retained_from_ms().unwrap();
    let before = reads(&store.snapshot().unwrap(), from, frontier);
    assert!(!files_holding(dir.path(), &traces(gone)).is_empty());
    // Without the scrub, the deleted rows live on in the file's free pages.
    store.scrub_after_erasure = false;
    let commit = Commit {
        frontier_ms: frontier,
        erasures: vec![erasure(gone, frontier - 10, frontier)],
        ..Commit::default()
    };
    store.commit(&commit).unwrap();
    assert!(
        store
            .snapshot()
            .unwrap()
            .online("viewer", gone)
            .unwrap()
            .is_empty()
    );
    assert!(
        !files_holding(dir.path(), &traces(gone)).is_empty(),
        "redb zeroed its free pages: the scrub may no longer be needed"
    );
    let scrubbed = store.scrub().unwrap();
    assert!(scrubbed.bytes_after > 0);
    assert_eq!(
        files_holding(dir.path(), &traces(gone)),
        Vec::<String>::new()
    );
    // Every other viewer reads exactly as before, at every tick.
    let after = reads(&store.snapshot().unwrap(), from, frontier);
    for (key, value) in &before {
        let want = if key.2 == gone { &None } else { value };
        assert_eq!(&after[key], want, "{key:?}");
    }
    // The store goes on: a commit after the scrub lands in the fresh file.
    let mut rng = Lcg(1);
    let commit = Commit {
        frontier_ms: frontier + 5000,
        changes: changes(&mut rng, frontier / 1000..frontier / 1000 + 5),
        ..Commit::default()
    };
    store.commit(&commit).unwrap();
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.frontier_ms().unwrap(), Some(frontier + 5000));
    assert_eq!(snap.erasures_applied().unwrap(), 1);
    assert!(
        snap.meta(crate::erase::META_SCRUB_PENDING)
            .unwrap()
            .is_none()
    );
}

#[test]
fn readers_follow_the_scrubbed_file_and_old_snapshots_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (store, frontier) = written_store(dir.path());
    let gone = IDS[4];
    let other = IDS[1];
    let peer = crate::ReadOnlyStore::open(dir.path()).unwrap();
    let reader = crate::Reader::open(dir.path()).unwrap();
    let held = peer.snapshot().unwrap();
    let other_before = held.online("viewer", other).unwrap();
    assert!(
        reader
            .view()
            .unwrap()
            .entity("viewer", gone)
            .unwrap()
            .is_some()
    );
    let commit = Commit {
        frontier_ms: frontier,
        erasures: vec![erasure(gone, frontier, frontier)],
        ..Commit::default()
    };
    let purged = store.commit(&commit).unwrap();
    assert!(purged.erased.scrub.bytes_after > 0, "{:?}", purged.erased);
    // A snapshot taken before still reads its commit, from the old file.
    assert!(!held.online("viewer", gone).unwrap().is_empty());
    drop(held);
    // New reads follow the fresh file: the viewer is gone, the others unchanged.
    let snap = peer.snapshot().unwrap();
    assert!(snap.online("viewer", gone).unwrap().is_empty());
    assert_eq!(snap.online("viewer", other).unwrap(), other_before);
    assert_eq!(snap.erasures_applied().unwrap(), 1);
    let mut view = reader.view().unwrap();
    assert_eq!(view.entity("viewer", gone).unwrap(), None);
    assert!(view.entity("viewer", other).unwrap().is_some());
    drop(view);
    // The writer's own reader too.
    let store = std::sync::Arc::new(store);
    let own = crate::Reader::of_store(store.clone());
    assert_eq!(own.view().unwrap().entity("viewer", gone).unwrap(), None);
}

/// Everything a store holds, as readers see it, but the scrub's own bookkeeping.
fn contents(dir: &std::path::Path) -> String {
    let snap = crate::ReadOnlyStore::open(dir).unwrap().snapshot().unwrap();
    let mut meta = snap.meta_all().unwrap();
    meta.retain(|(k, _)| k != crate::META_REPLACED);
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        snap.online_all().unwrap(),
        snap.history().unwrap(),
        meta,
        snap.erasures().unwrap(),
        snap.next_offsets().unwrap(),
    )
}

/// A scrub in the background: the writer commits on while it copies (another erasure among the
/// commits), and the store it leaves equals one scrubbed in place, with no byte of either
/// erased viewer in the directory.
#[test]
fn a_background_scrub_leaves_what_a_scrub_in_place_does() {
    let (waited, behind) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let gone = [IDS[2], IDS[4]];
    for (dir, background) in [(&waited, false), (&behind, true)] {
        let (mut store, frontier) = written_store(dir.path());
        if background {
            store.scrub_in_background();
        }
        let mut rng = Lcg(5);
        let mut tick = frontier / 1000;
        for step in 0..6 {
            let erasures = match step {
                0 => vec![erasure(gone[0], tick * 1000 - 10, tick * 1000)],
                1 => vec![erasure(gone[1], tick * 1000 - 10, tick * 1000)],
                _ => vec![],
            };
            // The erased viewers send nothing after: no new byte of theirs lands.
            let mut changes = changes(&mut rng, tick..tick + 3);
            changes.retain(|c| gone.iter().all(|g| c.entity_id != EntityId::from(*g)));
            let commit = Commit {
                frontier_ms: (tick + 3) * 1000,
                changes,
                erasures,
                retention_ms: Some(60_000),
                ..Commit::default()
            };
            store.commit(&commit).unwrap();
            if step == 3 {
                store.put_meta("note", b"landed meanwhile").unwrap();
            }
            tick += 3;
        }
        drop(store);
        assert_eq!(
            files_holding(dir.path(), &[traces(gone[0]), traces(gone[1])].concat()),
            Vec::<String>::new(),
            "background: {background}"
        );
        let snap = crate::ReadOnlyStore::open(dir.path())
            .unwrap()
            .snapshot()
            .unwrap();
        assert!(
            snap.meta(crate::erase::META_SCRUB_PENDING)
                .unwrap()
                .is_none()
        );
        assert_eq!(snap.erasures_applied().unwrap(), 2);
    }
    let (waited, behind) = (contents(waited.path()), contents(behind.path()));
    assert!(waited == behind, "the stores differ:\n{waited}\n{behind}");
}

/// A crash between an erasure's commit and its scrub: the next writer scrubs as it opens, and
/// removes what a scrub cut short left behind.
#[test]
fn a_scrub_cut_short_is_done_by_the_next_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, frontier) = written_store(dir.path());
    // An id whose bytes no integer in the file shares by chance.
    let gone = IDS[2];
    store.scrub_after_erasure = false;
    let commit = Commit {
        frontier_ms: frontier,
        erasures: vec![erasure(gone, frontier, frontier)],
        ..Commit::default()
    };
    store.commit(&commit).unwrap();
    drop(store);
    let leftover = dir.path().join(format!("{}.999.scrub", crate::FILE_NAME));
    std::fs::write(&leftover, b"half a file").unwrap();
    assert!(!files_holding(dir.path(), &traces(gone)).is_empty());
    let store = Store::open(dir.path()).unwrap();
    assert!(!leftover.exists());
    assert_eq!(
        files_holding(dir.path(), &traces(gone)),
        Vec::<String>::new()
    );
    let snap = store.snapshot().unwrap();
    assert!(
        snap.meta(crate::erase::META_SCRUB_PENDING)
            .unwrap()
            .is_none()
    );
    assert_eq!(snap.erasures_applied().unwrap(), 1);
}

/// A restarted run hands an erasure again, maybe at another tick, after the entity wrote new
/// values: it is a repeat, and deletes nothing. A later erasure of the same entity is new.
#[test]
fn an_erasure_handed_again_deletes_nothing_and_a_later_one_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut rng = Lcg(9);
    let id = IDS[2];
    let first = Commit {
        frontier_ms: 10_000,
        changes: changes(&mut rng, 1..10),
        erasures: vec![erasure(id, 9_500, 10_000)],
        ..Commit::default()
    };
    store.commit(&first).unwrap();
    let later = Commit {
        frontier_ms: 20_000,
        changes: vec![crate::tests::change("viewer.a", id, 12_000, Some("7"))],
        ..Commit::default()
    };
    store.commit(&later).unwrap();
    let again = Commit {
        frontier_ms: 30_000,
        // At another tick, even one the store passed long ago.
        erasures: vec![erasure(id, 9_500, 4_000), erasure(id, 9_000, 25_000)],
        ..Commit::default()
    };
    let erased = store.commit(&again).unwrap().erased;
    assert_eq!((erased.erasures, erased.repeats), (0, 2));
    let snap = store.snapshot().unwrap();
    assert_eq!(
        snap.as_of("viewer.a", id, 12_000).unwrap(),
        Some(b"7".to_vec())
    );
    assert_eq!(snap.erasures_applied().unwrap(), 1);
    let newer = Commit {
        frontier_ms: 30_000,
        erasures: vec![erasure(id, 29_000, 30_000)],
        ..Commit::default()
    };
    let erased = store.commit(&newer).unwrap().erased;
    assert_eq!((erased.erasures, erased.online_rows), (1, 1));
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.as_of("viewer.a", id, 12_000).unwrap(), None);
    assert_eq!(snap.latest_erasure().unwrap(), Some((29_000, 30_000)));
    assert_eq!(snap.erasure(token(id)).unwrap().unwrap().ts_ms, 29_000);
}

/// A written store that scrubs in the background, and a directory in the way of its scrub's
/// fresh file (so every scrub fails until it is removed).
fn store_with_a_blocked_scrub(dir: &std::path::Path) -> (Store, u64, std::path::PathBuf) {
    let (mut store, frontier) = written_store(dir);
    store.scrub_in_background();
    let blocker = dir.join(format!("{}.{}.scrub", crate::FILE_NAME, std::process::id()));
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("in the way"), b"").unwrap();
    (store, frontier, blocker)
}

/// Commits the tick after `tick` (moving it on), erasing `erased` at it when given.
fn commit_next(store: &Store, tick: &mut u64, erased: Option<&str>) -> crate::Result<()> {
    let at = *tick * 1000;
    let commit = Commit {
        frontier_ms: at + 1000,
        erasures: erased.map(|id| erasure(id, at, at)).into_iter().collect(),
        ..Commit::default()
    };
    *tick += 1;
    store.commit(&commit).map(|_| ())
}

/// A background scrub that fails (here its fresh file cannot be made) does not turn the landed
/// commits into errors: they land, the failure is told apart, the file keeps `scrub_pending`,
/// and the next erasure scrubs again.
#[test]
fn a_failed_background_scrub_is_its_own_error_and_the_next_erasure_scrubs_again() {
    let dir = tempfile::tempdir().unwrap();
    let (store, frontier, blocker) = store_with_a_blocked_scrub(dir.path());
    let mut tick = frontier / 1000;
    let mut commit_at = |store: &Store, erased| commit_next(store, &mut tick, erased);
    commit_at(&store, Some(IDS[2])).unwrap();
    // Commits go on landing while (and after) the copy fails.
    let started = std::time::Instant::now();
    let failure = loop {
        commit_at(&store, None).expect("a commit lands whatever the scrub does");
        if let Some(failure) = store.take_scrub_failure() {
            break failure;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(
        matches!(failure, StoreError::ScrubFailed { .. }),
        "{failure}"
    );
    let said = failure.to_string();
    assert!(said.contains("the erased rows are deleted"), "{said}");
    assert!(store.take_scrub_failure().is_none(), "told once");
    let snap = store.snapshot().unwrap();
    assert!(
        snap.meta(crate::erase::META_SCRUB_PENDING)
            .unwrap()
            .is_some()
    );
    assert_eq!(snap.online("viewer", IDS[2]).unwrap(), Vec::new());
    drop(snap);

    // A writer stopping learns of a scrub that fails at the end.
    commit_at(&store, Some(IDS[1])).unwrap();
    let failure = store.settle_scrub().unwrap_err();
    assert!(
        matches!(failure, StoreError::ScrubFailed { .. }),
        "{failure}"
    );

    // Out of the way: the next erasure's scrub takes the first ones' bytes with it.
    std::fs::remove_dir_all(&blocker).unwrap();
    commit_at(&store, Some(IDS[4])).unwrap();
    settled_without(store, dir.path(), &[IDS[2], IDS[4]]);
}

/// `store` settled as a writer stopping settles it: no scrub owed, and no byte of `gone` in
/// `dir`.
fn settled_without(store: Store, dir: &std::path::Path, gone: &[&str]) {
    store.settle_scrub().unwrap();
    let snap = store.snapshot().unwrap();
    let pending = snap.meta(crate::erase::META_SCRUB_PENDING).unwrap();
    assert!(pending.is_none());
    drop((snap, store));
    let traces: Vec<Vec<u8>> = gone.iter().flat_map(|id| traces(id)).collect();
    assert_eq!(files_holding(dir, &traces), Vec::<String>::new());
}

/// A background scrub that failed, with no erasure after it: a writer stopping scrubs in place,
/// and leaves no byte of the viewer.
#[test]
fn a_writer_stopping_after_a_failed_scrub_scrubs_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (store, frontier, blocker) = store_with_a_blocked_scrub(dir.path());
    let mut tick = frontier / 1000;
    commit_next(&store, &mut tick, Some(IDS[2])).unwrap();
    let started = std::time::Instant::now();
    while store.take_scrub_failure().is_none() {
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        commit_next(&store, &mut tick, None).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::remove_dir_all(&blocker).unwrap();
    settled_without(store, dir.path(), &[IDS[2]]);
}
