use super::*;

fn change(feature: &'static str, id: &str, tick_ms: u64, value: Option<&str>) -> Change {
    Change {
        entity_kind: "viewer",
        feature,
        entity_id: id.to_string(),
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
        }],
        counters: vec![("events_total", 41)],
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
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![FILE_NAME]);
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
    for (format, says) in [(None, "format 1"), (Some(FORMAT_VERSION + 1), "format 3")] {
        let dir = tempfile::tempdir().unwrap();
        write_unsealed_store(dir.path(), format);
        for err in [
            Store::open(dir.path()).err().unwrap(),
            ReadOnlyStore::open(dir.path()).err().unwrap(),
        ] {
            assert!(matches!(err, StoreError::Format { .. }), "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
    }
}

#[test]
fn a_value_that_fails_its_checksum_is_damage_named_by_file_table_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let commit = Commit {
        frontier_ms: 3000,
        changes: vec![change("viewer.a", "v_1", 1000, Some("15"))],
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
        let key = ("viewer.a", "v_1", 1000);
        let mut stored = history.get(key).unwrap().unwrap().value().to_vec();
        stored[1] = b'6';
        history.insert(key, stored.as_slice()).unwrap();
        let mut offsets = txn.open_table(layout::OFFSETS).unwrap();
        offsets
            .insert(("events", 0), 43u64.to_le_bytes().as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
    drop(db);

    let snap = ReadOnlyStore::open(dir.path()).unwrap().snapshot().unwrap();
    assert_eq!(snap.online("viewer", "v_1").unwrap()[0].value_json, b"15");
    for err in [
        snap.history().err().unwrap(),
        snap.as_of("viewer.a", "v_1", 2000).err().unwrap(),
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
        text.contains("history") && text.contains("\"v_1\""),
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
