use super::*;

/// A small deterministic generator, so a failure replays exactly.
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    pub(crate) fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// Changes of every tick in `ticks` for every feature and id: the key of id `i` and feature
/// `f` changes once in `paces[(i + f) % 5]` ticks, and goes back to the default once in
/// `default_one_in` changes.
pub(crate) fn random_changes(
    rng: &mut Lcg,
    ticks: std::ops::Range<u64>,
    (features, ids): (&[&'static str], &[&str]),
    paces: [u64; 5],
    default_one_in: u64,
) -> Vec<Change> {
    let mut out = Vec::new();
    for tick in ticks {
        for (f, feature) in features.iter().enumerate() {
            for (i, id) in ids.iter().enumerate() {
                if rng.next(paces[(i + f) % 5]) != 0 {
                    continue;
                }
                let value = (rng.next(default_one_in) != 0).then(|| format!("{}", rng.next(1000)));
                out.push(Change {
                    entity_kind: "viewer",
                    feature,
                    entity_id: (*id).into(),
                    tick_ms: tick * 1000,
                    value: value.map(String::into_bytes),
                });
            }
        }
    }
    out
}

pub(crate) fn change(feature: &'static str, id: &str, tick_ms: u64, value: Option<&str>) -> Change {
    Change {
        entity_kind: "viewer",
        feature,
        entity_id: id.into(),
        tick_ms,
        value: value.map(|v| v.as_bytes().to_vec()),
    }
}

#[test]
fn commit_lands_online_history_offsets_and_dead_letters_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let commit = Commit {
        frontier_ms: 3000,
        changes: vec![
            change("viewer.a", "v_1", 1000, Some("5")),
            change("viewer.a", "v_1", 2000, Some("7")),
            change("viewer.b", "v_1", 2000, Some("1")),
        ],
        next_offsets: vec![("events".into(), 0, 42)],
        dead_letters: vec![DeadLetter {
            topic: "events".into(),
            partition: 0,
            offset: 7,
            reason: "bad json".into(),
            time_ms: None,
        }],
        counters: vec![("events_total", 41)],
        retention_ms: None,
        erasures: Vec::new(),
    };
    store.commit(&commit).unwrap();

    let snap = store.snapshot().unwrap();
    assert_eq!(snap.frontier_ms().unwrap(), Some(3000));
    let online = snap.online("viewer", "v_1").unwrap();
    assert_eq!(online.len(), 2);
    assert_eq!(online[0].feature, "viewer.a");
    assert_eq!(online[0].value_json, b"7");
    assert_eq!(online[0].valid_from_ms, 2000);
    assert!(snap.online("viewer", "v_2").unwrap().is_empty());
    assert_eq!(
        snap.next_offsets().unwrap(),
        vec![("events".to_string(), 0, 42)]
    );
    assert_eq!(snap.dead_letters().unwrap()[0].reason, "bad json");
    assert_eq!(snap.meta_u64("events_total").unwrap(), Some(41));
}

#[test]
fn as_of_reads_the_latest_row_at_or_before_the_tick_and_honours_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let commit = Commit {
        frontier_ms: 10_000,
        changes: vec![
            change("viewer.a", "v_1", 2000, Some("1")),
            change("viewer.a", "v_1", 4000, Some("2")),
            change("viewer.a", "v_1", 6000, None),
        ],
        ..Commit::default()
    };
    store.commit(&commit).unwrap();
    let snap = store.snapshot().unwrap();
    let at = |t| snap.as_of("viewer.a", "v_1", t).unwrap();
    assert_eq!(at(1000), None);
    assert_eq!(at(2000), Some(b"1".to_vec()));
    assert_eq!(at(3999), Some(b"1".to_vec()));
    assert_eq!(at(4000), Some(b"2".to_vec()));
    assert_eq!(at(6000), None);
    assert!(
        snap.online("viewer", "v_1").unwrap().is_empty(),
        "a tombstone removes the online row"
    );
    assert_eq!(snap.history().unwrap().len(), 3);
}

#[test]
fn a_reopened_store_keeps_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.put_meta("tick_ms", &1000u64.to_le_bytes()).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.snapshot().unwrap().meta_u64("tick_ms").unwrap(),
        Some(1000)
    );
    drop(store);
    let ro = ReadOnlyStore::open(dir.path()).unwrap();
    assert_eq!(
        ro.snapshot().unwrap().meta_u64("tick_ms").unwrap(),
        Some(1000)
    );
}

#[test]
fn read_only_open_of_a_missing_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let err = ReadOnlyStore::open(dir.path()).err().unwrap();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
}

fn file(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join(FILE_NAME)
}

#[test]
fn an_empty_or_foreign_file_is_refused_and_left_as_it_was() {
    for content in [&b""[..], b"some other program's data"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(file(dir.path()), content).unwrap();
        let err = Store::open(dir.path()).err().unwrap();
        assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
        let err = ReadOnlyStore::open(dir.path()).err().unwrap();
        assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
        assert!(err.to_string().contains("rewind.redb"), "{err}");
        assert_eq!(std::fs::read(file(dir.path())).unwrap(), content);
    }
}

#[test]
fn a_fresh_store_records_its_format_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, vec![crate::COMMITS_FILE, FILE_NAME]);
    let snap = ReadOnlyStore::open(dir.path()).unwrap().snapshot().unwrap();
    assert_eq!(
        snap.meta_u64(layout::META_FORMAT).unwrap(),
        Some(FORMAT_VERSION)
    );
}

/// A store as rewind wrote it before values were sealed: no format entry.
fn write_unsealed_store(dir: &std::path::Path, format: Option<u64>) {
    let db = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .create(file(dir))
        .unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(layout::META).unwrap();
        meta.insert("tick_ms", 1000u64.to_le_bytes().as_slice())
            .unwrap();
        if let Some(format) = format {
            let sealed = layout::meta_row(layout::META_FORMAT).seal(&format.to_le_bytes());
            meta.insert(layout::META_FORMAT, sealed.as_slice()).unwrap();
        }
    }
    txn.commit().unwrap();
}

#[test]
fn a_store_of_another_format_is_refused_by_writer_and_reader() {
    let cases = [
        (None, "format 1"),
        (Some(2), "format 2"),
        (Some(FORMAT_VERSION + 1), "format 4"),
    ];
    for (format, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_unsealed_store(dir.path(), format);
        for err in [
            Store::open(dir.path()).err().unwrap(),
            ReadOnlyStore::open(dir.path()).err().unwrap(),
        ] {
            assert!(matches!(err, StoreError::Format { .. }), "{err}");
            assert!(err.to_string().contains(says), "{err}");
            assert!(err.to_string().contains("rewind replay"), "{err}");
        }
    }
}

#[test]
fn a_value_that_fails_its_checksum_is_damage_named_by_file_table_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let commit = Commit {
        frontier_ms: 3000,
        changes: vec![
            change("viewer.a", "v_1", 1000, Some("15")),
            change("viewer.a", "v_1", 2000, Some("17")),
        ],
        next_offsets: vec![("events".into(), 0, 42)],
        ..Commit::default()
    };
    store.commit(&commit).unwrap();
    drop(store);
    // Rewrite the value behind the store's back, as a flipped bit would: "15" → "16".
    use redb::ReadableTable;
    let db = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .open(file(dir.path()))
        .unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut history = txn.open_table(layout::HISTORY).unwrap();
        let (key, mut stored) = {
            let (key, stored) = history.first().unwrap().unwrap();
            let (tick, first) = key.value();
            ((tick, first.to_vec()), stored.value().to_vec())
        };
        let at = stored.windows(2).position(|w| w == b"15").unwrap();
        stored[at + 1] = b'6';
        history
            .insert((key.0, key.1.as_slice()), stored.as_slice())
            .unwrap();
        let mut offsets = txn.open_table(layout::OFFSETS).unwrap();
        offsets
            .insert(("events", 0), 43u64.to_le_bytes().as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
    drop(db);

    let snap = ReadOnlyStore::open(dir.path()).unwrap().snapshot().unwrap();
    // The online row holds the latest value, whole; lookups before it walk into history.
    assert_eq!(snap.online("viewer", "v_1").unwrap()[0].value_json, b"17");
    assert_eq!(
        snap.as_of("viewer.a", "v_1", 2000).unwrap(),
        Some(b"17".to_vec())
    );
    for err in [
        snap.history().err().unwrap(),
        snap.as_of("viewer.a", "v_1", 1500).err().unwrap(),
        snap.next_offsets().err().unwrap(),
    ] {
        assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("rewind.redb") && text.contains("checksum"),
            "{text}"
        );
    }
    let text = snap.history().err().unwrap().to_string();
    assert!(
        text.contains("history") && text.contains("tick 1000") && text.contains("\"v_1\""),
        "{text}"
    );
}

#[test]
fn a_second_writer_is_told_the_store_is_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).err().unwrap();
    assert!(matches!(err, StoreError::Busy { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("is being written by another process")
    );
    // Readers are not writers: they still get in.
    assert!(ReadOnlyStore::open(dir.path()).is_ok());
}

fn viewer(n: u64) -> String {
    format!("v_{:032x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// A block is cut so that the B-tree row holding it (key, block, seal, the leaf's own header)
/// fits in `BLOCK_BYTES`. One a few bytes over takes redb's next allocation size, twice as
/// large, and half the history's pages were then empty space, written at every commit.
#[test]
fn history_blocks_fill_their_pages() {
    use redb::ReadableTableMetadata;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Ticks of about 30 full blocks each, values of the sizes the library writes, and now and
    // then one larger than a block (it gets a block of its own, and the next entry a new one).
    let value = |n: u64, t: u64| match n % 3 {
        _ if n % 5_000 == 17 => "x".repeat(40_000 + n as usize),
        0 => format!("{}", n * t),
        1 => format!("{{\"comedy\":0.{n},\"drama\":0.{t}}}"),
        _ => format!("[\"tt{n:05}\",\"tt{t:05}\"]"),
    };
    let mut want = Vec::new();
    for t in 1..=4u64 {
        let changes = (0..20_000u64)
            .map(|n| change("viewer.a", &viewer(n), t * 1000, Some(&value(n, t))))
            .collect();
        let commit = Commit {
            frontier_ms: t * 1000 + 1000,
            changes,
            ..Commit::default()
        };
        store.commit(&commit).unwrap();
        want.extend((0..20_000u64).map(|n| HistoryRow {
            feature: "viewer.a".into(),
            entity_id: viewer(n),
            valid_from_ms: t * 1000,
            value_json: Some(value(n, t).into_bytes()),
        }));
    }
    // Every entry reads back, whichever block the cut put it in.
    want.sort_unstable();
    let snap = store.snapshot().unwrap();
    assert!(
        snap.history().unwrap() == want,
        "history differs from what was written"
    );
    for n in [16, 17, 18, 5_017, 19_999] {
        let got = snap.as_of("viewer.a", &viewer(n), 2_500).unwrap();
        assert_eq!(got, Some(value(n, 2).into_bytes()), "viewer {n} as of 2500");
    }
    drop((snap, store));
    let db = redb::ReadOnlyDatabase::open(file(dir.path())).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let stats = txn.open_table(layout::HISTORY).unwrap().stats().unwrap();
    // What is left is each tick's last, partly filled block.
    assert!(
        stats.fragmented_bytes() * 10 < stats.stored_bytes(),
        "history pages are {} bytes of blocks and {} empty",
        stats.stored_bytes(),
        stats.fragmented_bytes()
    );
}

/// Commits of random changes (values, tombstones, ids of both shapes, blocks split within a
/// tick) checked against a plain map of every row: `history()`, `online`, every `as_of` and
/// `rows`, and a sweep, at every tick.
#[test]
fn history_and_online_match_a_model_across_blocks_ticks_and_tombstones() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut rng = Lcg(7);
    let features = ["viewer.a", "viewer.b", "title.c"];
    // (feature, entity) → tick → value at that tick (None: back to the default).
    type Model = BTreeMap<(String, String), BTreeMap<u64, Option<Vec<u8>>>>;
    let mut model: Model = BTreeMap::new();
    // Enough ids that a large tick holds more than a block of distinct keys.
    let ids: Vec<String> = (0..400)
        .map(|n| match n % 4 {
            0 => format!("tt{n:04}"),
            _ => viewer(n),
        })
        .collect();
    let mut tick = 1000;
    for _ in 0..12 {
        let mut changes = Vec::new();
        for _ in 0..1 + rng.next(4) {
            tick += 1000 * (1 + rng.next(3));
            // Now and then a tick far larger than a block.
            let n = if rng.next(5) == 0 { 2500 } else { rng.next(30) };
            for _ in 0..n {
                let feature = features[rng.next(3) as usize];
                let id = &ids[rng.next(ids.len() as u64) as usize];
                let value = match rng.next(6) {
                    0 => None,
                    v => Some(format!(
                        "{{\"x\":{v},\"pad\":\"{}\"}}",
                        "p".repeat(v as usize * 9)
                    )),
                };
                let kind = if feature.starts_with("title") {
                    "title"
                } else {
                    "viewer"
                };
                changes.push(Change {
                    entity_kind: kind,
                    feature,
                    entity_id: id.as_str().into(),
                    tick_ms: tick,
                    value: value.clone().map(String::into_bytes),
                });
                let rows = model.entry((feature.to_string(), id.clone())).or_default();
                rows.insert(tick, value.map(String::into_bytes));
            }
        }
        store
            .commit(&Commit {
                frontier_ms: tick + 1000,
                changes,
                ..Commit::default()
            })
            .unwrap();
    }
    let snap = store.snapshot().unwrap();
    let want: Vec<HistoryRow> = model
        .iter()
        .flat_map(|((feature, id), rows)| {
            rows.iter().map(move |(t, v)| HistoryRow {
                feature: feature.clone(),
                entity_id: id.clone(),
                valid_from_ms: *t,
                value_json: v.clone(),
            })
        })
        .collect();
    assert_eq!(snap.history().unwrap(), want);
    let lookup = snap.history_lookup().unwrap();
    for ((feature, id), rows) in &model {
        for t in (0..=tick + 1000).step_by(1000) {
            let expected = rows.range(..=t).next_back().and_then(|(_, v)| v.clone());
            assert_eq!(
                lookup.as_of(feature, id, t).unwrap(),
                expected,
                "{feature} {id} {t}"
            );
            let upto: Vec<_> = rows.range(..=t).map(|(t, v)| (*t, v.clone())).collect();
            assert_eq!(
                lookup.rows(feature, id, t).unwrap(),
                upto,
                "{feature} {id} {t}"
            );
        }
        let kind = if feature.starts_with("title") {
            "title"
        } else {
            "viewer"
        };
        let latest = rows.iter().next_back().unwrap();
        let online = snap.online(kind, id).unwrap();
        let row = online.iter().find(|r| &r.feature == feature);
        let got = row.map(|r| (r.valid_from_ms, r.value_json.clone()));
        assert_eq!(
            got,
            latest.1.clone().map(|v| (*latest.0, v)),
            "{feature} {id}"
        );
    }
    let mut sweep = snap.sweep(0, u64::MAX).unwrap();
    let (mut last, mut swept) = ((0, Vec::new()), 0);
    let mut blocks_of_tick: BTreeMap<u64, usize> = BTreeMap::new();
    while let Some(block) = sweep.next_block().unwrap() {
        *blocks_of_tick.entry(block.tick_ms).or_default() += 1;
        for entry in block.entries() {
            let key = (block.tick_ms, entry.unwrap().key.to_vec());
            assert!(key > last, "the sweep goes in (tick, key) order");
            last = key;
            swept += 1;
        }
    }
    assert_eq!(swept, want.len());
    let split = blocks_of_tick.values().filter(|n| **n > 1).count();
    assert!(split >= 2, "ticks split into several blocks: {split}");
}

#[test]
fn a_long_chain_finds_any_time_in_few_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ticks: Vec<u64> = (1..=3000).map(|n| n * 1000).collect();
    for chunk in ticks.chunks(500) {
        let changes = chunk
            .iter()
            .map(|t| change("viewer.a", "v_1", *t, Some(&t.to_string())))
            .collect();
        let frontier_ms = chunk.last().unwrap() + 1000;
        let commit = Commit {
            frontier_ms,
            changes,
            ..Commit::default()
        };
        store.commit(&commit).unwrap();
    }
    let snap = store.snapshot().unwrap();
    for t in [999, 1000, 1500, 2_000_000, 2_999_999, 3_000_000] {
        let want = (t >= 1000).then(|| (t / 1000 * 1000).to_string().into_bytes());
        assert_eq!(snap.as_of("viewer.a", "v_1", t).unwrap(), want, "{t}");
    }
}

#[test]
fn a_tick_already_in_history_is_refused_and_nothing_lands() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = Commit {
        frontier_ms: 3000,
        changes: vec![change("viewer.a", "v_1", 2000, Some("1"))],
        ..Commit::default()
    };
    store.commit(&first).unwrap();
    let again = Commit {
        frontier_ms: 4000,
        changes: vec![
            change("viewer.a", "v_2", 3000, Some("2")),
            change("viewer.b", "v_3", 2000, Some("3")),
        ],
        ..Commit::default()
    };
    let err = store.commit(&again).err().unwrap();
    assert!(matches!(err, StoreError::TickWritten { .. }), "{err}");
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.frontier_ms().unwrap(), Some(3000));
    assert_eq!(snap.history().unwrap().len(), 1);
    // The catalog did not keep the feature of the failed commit either.
    assert_eq!(snap.catalog().unwrap().len(), 1);
    let later = Commit {
        frontier_ms: 5000,
        changes: vec![change("viewer.b", "v_3", 4000, Some("3"))],
        ..Commit::default()
    };
    store.commit(&later).unwrap();
    let names: Vec<_> = (0..2)
        .map(|i| {
            store
                .snapshot()
                .unwrap()
                .catalog()
                .unwrap()
                .feature(i)
                .unwrap()
                .1
                .to_string()
        })
        .collect();
    assert_eq!(names, ["viewer.a", "viewer.b"]);
}

#[test]
fn a_reader_in_another_handle_follows_each_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let reader = ReadOnlyStore::open(dir.path()).unwrap();
    let before = reader.snapshot().unwrap();
    for (n, tick) in [1000u64, 2000, 3000].into_iter().enumerate() {
        let commit = Commit {
            frontier_ms: tick + 1000,
            changes: vec![change("viewer.a", "v_1", tick, Some(&n.to_string()))],
            ..Commit::default()
        };
        store.commit(&commit).unwrap();
        let snap = reader.snapshot().unwrap();
        assert_eq!(snap.frontier_ms().unwrap(), Some(tick + 1000));
        let online = snap.online("viewer", "v_1").unwrap();
        assert_eq!(online[0].value_json, n.to_string().into_bytes());
        assert_eq!(snap.history().unwrap().len(), n + 1);
    }
    // A snapshot taken earlier stays as it was: one commit, whole.
    assert_eq!(before.frontier_ms().unwrap(), None);
    assert!(before.history().unwrap().is_empty());
}

#[test]
fn a_reopened_writer_continues_the_chains_it_left() {
    let dir = tempfile::tempdir().unwrap();
    for tick in [1000u64, 2000, 3000, 4000] {
        let store = Store::open(dir.path()).unwrap();
        let commit = Commit {
            frontier_ms: tick + 1000,
            changes: vec![change("viewer.a", "v_1", tick, Some(&tick.to_string()))],
            ..Commit::default()
        };
        store.commit(&commit).unwrap();
    }
    let snap = ReadOnlyStore::open(dir.path()).unwrap().snapshot().unwrap();
    for tick in [1000u64, 2000, 3000, 4000] {
        let got = snap.as_of("viewer.a", "v_1", tick + 500).unwrap();
        assert_eq!(got, Some(tick.to_string().into_bytes()));
    }
}

/// A block whose tick was damaged into a later one must not end a sweep early: its seal is
/// checked before its key is believed.
#[test]
fn a_block_key_damaged_past_the_sweep_is_an_error_not_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for tick in [1000, 2000, 3000] {
        let commit = Commit {
            frontier_ms: tick + 1000,
            changes: vec![
                change("viewer.a", "v_1", tick, Some("1")),
                change("viewer.b", "v_1", tick, Some("2")),
            ],
            ..Commit::default()
        };
        store.commit(&commit).unwrap();
    }
    drop(store);
    use redb::ReadableTable;
    let db = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .open(file(dir.path()))
        .unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut history = txn.open_table(layout::HISTORY).unwrap();
        let (tick, first, stored) = {
            let mut blocks = history.iter().unwrap();
            let (key, stored) = blocks.nth(1).unwrap().unwrap();
            let (tick, first) = key.value();
            (tick, first.to_vec(), stored.value().to_vec())
        };
        assert_eq!(tick, 2000);
        history.remove((tick, first.as_slice())).unwrap();
        history
            .insert((tick | 1 << 40, first.as_slice()), stored.as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
    drop(db);

    let snap = ReadOnlyStore::open(dir.path()).unwrap().snapshot().unwrap();
    let mut sweep = snap.sweep(0, 5000).unwrap();
    let err = loop {
        match sweep.next_block() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the sweep ended at the damaged block"),
            Err(err) => break err,
        }
    };
    assert!(err.to_string().contains("checksum"), "{err}");
}
