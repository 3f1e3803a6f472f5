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
