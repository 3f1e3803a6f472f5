use std::path::Path;

use super::file::{LogFile, LogReader, LogRow, slot_path};
use super::*;

fn value(feature: &'static str, json: &str, valid_from_ms: Option<u64>) -> ServedValue {
    ServedValue {
        feature: feature.into(),
        json: json.into(),
        valid_from_ms,
    }
}

fn viewer(id: &str, plays: i64) -> ServedEntity {
    ServedEntity {
        kind: "viewer".into(),
        id: id.into(),
        values: vec![
            value("viewer.plays_24h", &plays.to_string(), Some(1_000)),
            value(
                "genre_share_90d",
                r#"{"drama":0.25,"comedy":0.75}"#,
                Some(2_000),
            ),
            value("viewer.last_titles_10", "[]", None),
        ],
    }
}

fn response(request_id: &str, served_at_ms: u64, entities: Vec<ServedEntity>) -> Served {
    Served {
        request_id: request_id.into(),
        served_at_ms,
        as_of_ms: served_at_ms - 5_000,
        entities,
    }
}

const V1: &str = "v_00000000000000000000000000000001";
const V2: &str = "v_00000000000000000000000000000002";

fn rows(dir: &Path) -> Vec<LogRow> {
    LogReader::open(dir).unwrap().rows(0).unwrap()
}

#[test]
fn what_is_logged_reads_back_exactly_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let one = response("r1", now, vec![viewer(V1, 3)]);
    let batch = response("r2", now + 1, vec![viewer(V1, 4), viewer(V2, 0)]);
    let log = ServedLog::open(dir.path(), LogConfig::default()).unwrap();
    assert!(log.record(one.clone()));
    assert!(log.record(batch.clone()));
    let stats = log.close().unwrap();
    assert_eq!((stats.logged, stats.dropped, stats.failed), (2, 0, 0));

    let read = rows(dir.path());
    assert_eq!(read.len(), 3);
    let expected = [(&one, 0), (&batch, 0), (&batch, 1)];
    for (row, (served, e)) in read.iter().zip(expected) {
        assert_eq!(row.request_id, served.request_id);
        assert_eq!(row.served_at_ms, served.served_at_ms);
        assert_eq!(row.as_of_ms, served.as_of_ms);
        assert_eq!(*row.kind, *served.entities[e].kind);
        assert_eq!(row.id, served.entities[e].id);
        assert_eq!(row.values, served.entities[e].values);
    }

    // A reopened log takes its file back and continues it.
    let log = ServedLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.path(), slot_path(dir.path(), 0));
    log.record(response("r3", now + 2, vec![viewer(V2, 9)]));
    log.close().unwrap();
    let read = rows(dir.path());
    assert_eq!(read.len(), 4);
    let seqs: std::collections::BTreeSet<u64> = read.iter().map(|r| r.seq).collect();
    assert_eq!(seqs.len(), 4, "sequence numbers continue, never repeat");
}

#[test]
fn the_latest_row_of_an_entity_is_at_or_before_the_time_asked() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let log = ServedLog::open(dir.path(), LogConfig::default()).unwrap();
    log.record(response("a", now - 300, vec![viewer(V1, 1)]));
    log.record(response("b", now - 200, vec![viewer(V1, 2), viewer(V2, 7)]));
    log.record(response("c", now - 100, vec![viewer(V1, 3)]));
    log.close().unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    let at = |id: &str, t: u64| {
        reader
            .latest("viewer", id, t, 0)
            .unwrap()
            .map(|r| r.request_id)
    };
    assert_eq!(at(V1, now - 301), None);
    assert_eq!(at(V1, now - 300).as_deref(), Some("a"));
    assert_eq!(at(V1, now - 101).as_deref(), Some("b"));
    assert_eq!(at(V1, now).as_deref(), Some("c"));
    assert_eq!(at(V2, now).as_deref(), Some("b"));
    assert_eq!(reader.latest("title", V1, now, 0).unwrap(), None);
    // A response whose values are as of a later time than asked is never taken, served when
    // it may: its store's event time ran ahead of the wall clock.
    let ahead = tempfile::tempdir().unwrap();
    let log = ServedLog::open(ahead.path(), LogConfig::default()).unwrap();
    log.record(response("early", now - 300, vec![viewer(V1, 1)]));
    let mut future = response("ahead", now - 200, vec![viewer(V1, 2)]);
    future.as_of_ms = now + 60_000;
    log.record(future);
    log.close().unwrap();
    let reader_ahead = LogReader::open(ahead.path()).unwrap();
    let latest = reader_ahead.latest("viewer", V1, now, 0).unwrap().unwrap();
    assert_eq!(latest.request_id, "early");
    // Past the retention nothing is returned, even before a purge reaches it.
    assert_eq!(
        reader
            .latest("viewer", V1, now, now - 150)
            .unwrap()
            .unwrap()
            .request_id,
        "c"
    );
    assert_eq!(reader.latest("viewer", V2, now, now - 150).unwrap(), None);
}

#[test]
fn the_writer_purges_rows_older_than_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let hour = 3_600_000;
    let config = LogConfig {
        retention_ms: 10 * hour,
        ..LogConfig::default()
    };
    // Rows served 20 h and 5 h ago, written by a first log that keeps them.
    let log = ServedLog::open(dir.path(), LogConfig::default()).unwrap();
    log.record(response(
        "old",
        now - 20 * hour,
        vec![viewer(V1, 1), viewer(V2, 1)],
    ));
    log.record(response("new", now - 5 * hour, vec![viewer(V1, 2)]));
    log.close().unwrap();
    assert_eq!(rows(dir.path()).len(), 3);

    // A log opened with a 10 h retention purges as it starts.
    let log = ServedLog::open(dir.path(), config).unwrap();
    let stats = log.close().unwrap();
    assert_eq!(stats.purged, 2);
    let read = rows(dir.path());
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].request_id, "new");
    // The entity index went with the rows: only the kept row is found.
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.latest("viewer", V2, now, 0).unwrap(), None);
    let latest = reader.latest("viewer", V1, now - 6 * hour, 0).unwrap();
    assert_eq!(latest, None);
}

#[test]
fn an_idle_file_of_another_process_is_purged_too() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    // Slot 1 holds an old row, and nobody holds slot 1.
    let mut idle = LogFile::open_slot(&slot_path(dir.path(), 1))
        .unwrap()
        .unwrap();
    idle.append(&[response("old", now - 100_000, vec![viewer(V1, 1)])], 0)
        .unwrap();
    idle.close();
    let log = ServedLog::open(
        dir.path(),
        LogConfig {
            retention_ms: 50_000,
            ..LogConfig::default()
        },
    )
    .unwrap();
    assert_eq!(log.path(), slot_path(dir.path(), 0));
    assert_eq!(log.close().unwrap().purged, 1);
    assert!(rows(dir.path()).is_empty());
}

#[test]
fn a_full_queue_drops_counts_and_records_the_drop_and_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let config = LogConfig {
        queue: 4,
        ..LogConfig::default()
    };
    let log = ServedLog::open(dir.path(), config).unwrap();
    let (release, until) = std::sync::mpsc::channel();
    log.hold(until);
    // The writer may take the hold message before or after the first records: wait until
    // the queue refuses, then count.
    let mut sent = 0;
    let mut refused = 0;
    while refused < 10 {
        match log.record(response(&format!("r{sent}"), now, vec![viewer(V1, sent)])) {
            true => sent += 1,
            false => refused += 1,
        }
        assert!(sent < 1000, "the held writer must fill the queue");
    }
    assert_eq!(log.stats().dropped, 10);
    drop(release);
    let stats = log.close().unwrap();
    assert_eq!(stats.logged, sent as u64);
    assert_eq!(stats.dropped, 10);
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.rows(0).unwrap().len(), sent as usize);
    assert_eq!(
        reader.dropped_total().unwrap(),
        10,
        "the file says responses were lost"
    );
}

#[test]
fn a_clean_stop_writes_everything_queued() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let log = ServedLog::open(dir.path(), LogConfig::default()).unwrap();
    let (release, until) = std::sync::mpsc::channel();
    log.hold(until);
    for i in 0..500 {
        assert!(log.record(response(
            &format!("r{i}"),
            now + i,
            vec![viewer(V1, i as i64)]
        )));
    }
    // Everything is still queued behind the hold when the stop begins.
    let closing = std::thread::spawn(move || log.close().unwrap());
    std::thread::sleep(std::time::Duration::from_millis(50));
    drop(release);
    let stats = closing.join().unwrap();
    assert_eq!((stats.logged, stats.dropped), (500, 0));
    assert_eq!(rows(dir.path()).len(), 500);
}

#[test]
fn two_logs_of_one_store_write_two_files() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let first = ServedLog::open(dir.path(), LogConfig::default()).unwrap();
    let second = ServedLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(first.path(), slot_path(dir.path(), 0));
    assert_eq!(second.path(), slot_path(dir.path(), 1));
    first.record(response("a", now, vec![viewer(V1, 1)]));
    second.record(response("b", now + 1, vec![viewer(V1, 2)]));
    first.close().unwrap();
    second.close().unwrap();
    let ids: Vec<String> = rows(dir.path()).into_iter().map(|r| r.request_id).collect();
    assert_eq!(ids, ["a", "b"]);
    let reader = LogReader::open(dir.path()).unwrap();
    let latest = reader.latest("viewer", V1, now + 1, 0).unwrap().unwrap();
    assert_eq!(latest.request_id, "b", "the latest over both files");
}

#[test]
fn erasure_deletes_every_row_of_the_entity_in_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let log = ServedLog::open(dir.path(), LogConfig::default()).unwrap();
    log.record(response("a", now, vec![viewer(V1, 1), viewer(V2, 1)]));
    log.record(response("b", now + 1, vec![viewer(V1, 2)]));
    // Queued before the erasure, so erased with it.
    assert_eq!(log.erase("viewer", V1).unwrap(), 2);
    assert_eq!(log.erase("viewer", V1).unwrap(), 0);
    log.close().unwrap();
    let read = rows(dir.path());
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].id, V2);
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.latest("viewer", V1, now + 1, 0).unwrap(), None);
}

#[test]
fn a_foreign_or_damaged_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = slot_path(dir.path(), 0);
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = ServedLog::open(dir.path(), LogConfig::default()).unwrap_err();
    assert!(matches!(err, ServedLogError::NotALog { .. }), "{err}");
    assert!(err.to_string().contains("served-0.redb"), "{err}");
    let err = LogReader::open(dir.path()).err().unwrap();
    assert!(err.to_string().contains("served-0.redb"), "{err}");

    // A flipped byte inside a logged value fails the row's seal.
    std::fs::remove_file(&path).unwrap();
    let log = ServedLog::open(dir.path(), LogConfig::default()).unwrap();
    log.record(response("marker-request-id", now_ms(), vec![viewer(V1, 1)]));
    log.close().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(17)
        .position(|w| w == b"marker-request-id")
        .unwrap();
    bytes[at] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = LogReader::open(dir.path()).unwrap().rows(0).unwrap_err();
    assert!(matches!(err, ServedLogError::Damaged { .. }), "{err}");
}

#[test]
fn no_log_is_an_error_saying_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let err = LogReader::open(dir.path()).err().unwrap();
    assert!(err.to_string().contains("--log-served"), "{err}");
}

/// redb keeps deleted rows in free pages: after an erasure the scrub leaves no byte of the
/// viewer in the file, and every other row as it was.
#[test]
fn a_scrub_after_an_erasure_leaves_no_byte_of_the_viewer() {
    const GONE: &str = "v_8f3a9c1e5b7d2f4a6c8e0b1d3f5a7c9e";
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let mut file = LogFile::claim(dir.path()).unwrap();
    for i in 0..200u64 {
        let batch = response(
            &format!("r{i}"),
            now + i,
            vec![viewer(GONE, 1), viewer(V2, 2)],
        );
        file.append(&[batch], 0).unwrap();
    }
    let holds = |path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        bytes.windows(GONE.len()).any(|w| w == GONE.as_bytes())
    };
    let path = file.path().to_path_buf();
    assert_eq!(file.erase("viewer", GONE).unwrap(), 200);
    assert!(
        holds(&path),
        "redb zeroed its free pages: the scrub may no longer be needed"
    );
    let before = rows(dir.path());
    file.scrub().unwrap();
    assert!(!holds(&path));
    assert_eq!(rows(dir.path()), before);
    assert_eq!(before.len(), 200);
    // The slot is still this process's, and takes more rows.
    file.append(&[response("after", now + 500, vec![viewer(V2, 3)])], 0)
        .unwrap();
    file.close();
    assert_eq!(rows(dir.path()).len(), 201);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// A store beside the log, as `rewind run` writes it, and the log following it.
mod following {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use rewind_dataflows::ViewerId;
    use rewind_state::{Commit, Erasure, Reader, Store};

    use super::*;
    use crate::privacy::Pseudonymizer;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const V3: &str = "v_00000000000000000000000000000003";

    fn door() -> Pseudonymizer {
        Pseudonymizer::new(KEY)
    }

    fn erase(store: &Store, viewer: &str, tick_ms: u64) {
        let id = ViewerId::parse(viewer).unwrap();
        let commit = Commit {
            frontier_ms: tick_ms,
            erasures: vec![Erasure {
                entity_kind: "viewer",
                entity_id: viewer.to_string().into(),
                ts_ms: tick_ms,
                tick_ms,
                token: door().erasure_token(&id),
            }],
            ..Commit::default()
        };
        store.commit(&commit).unwrap();
    }

    fn at(
        request_id: &str,
        served_at_ms: u64,
        as_of_ms: u64,
        entities: Vec<ServedEntity>,
    ) -> Served {
        Served {
            as_of_ms,
            ..response(request_id, served_at_ms, entities)
        }
    }

    /// Waits for the log's writer to have erased `n` rows in all.
    fn wait_erased(log: &ServedLog, n: u64) {
        let started = Instant::now();
        while log.stats().erased < n {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the log erased {} rows, not {n}",
                log.stats().erased
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn file_holds(dir: &Path, needle: &str) -> bool {
        let bytes = std::fs::read(slot_path(dir, 0)).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    #[test]
    fn a_store_erasure_deletes_the_viewers_rows_served_before_it_and_scrubs_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let now = now_ms();
        let log = ServedLog::open(dir.path(), LogConfig::default()).unwrap();
        // In the file before the log follows: found by hashing the file's viewers.
        log.record(at(
            "before-1",
            now,
            1_000,
            vec![viewer(V1, 111_111), viewer(V2, 2)],
        ));
        let reader = Arc::new(Reader::of_store(store.clone()));
        let key = Box::new(|| Ok(Some(door())));
        log.follow(Box::new(move || Some(reader.clone())), key)
            .unwrap();
        // Found by hashing the file's viewers.
        erase(&store, V1, 1_200);
        wait_erased(&log, 1);
        // A viewer new to the file after the hashing: noted as its row is written.
        log.record(at("before-2", now + 1, 1_500, vec![viewer(V3, 222_222)]));
        log.record(at("other", now + 2, 1_500, vec![viewer(V2, 3)]));
        erase(&store, V3, 2_000);
        wait_erased(&log, 2);
        // Served before the erasure, written after the log handled it: kept out.
        log.record(at("late", now + 3, 1_900, vec![viewer(V3, 444_444)]));
        // Served after the erasure landed: what the store held then, kept.
        log.record(at("after", now + 4, 2_500, vec![viewer(V3, 0)]));
        let stats = log.close().unwrap();
        assert_eq!(stats.erased, 3);

        let kept: Vec<(String, String)> = rows(dir.path())
            .into_iter()
            .map(|r| (r.request_id, r.id))
            .collect();
        let expected = [("before-1", V2), ("other", V2), ("after", V3)];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(r, v)| (r.to_string(), v.to_string()))
            .collect();
        assert_eq!(kept, expected);
        for gone in ["111111", "222222", "444444"] {
            assert!(!file_holds(dir.path(), gone), "{gone} is still in the file");
        }
    }

    #[test]
    fn a_scrub_that_fails_is_tried_again_until_no_byte_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let log = ServedLog::open(dir.path(), LogConfig::default()).unwrap();
        log.record(at(
            "r",
            now_ms(),
            1_000,
            vec![viewer(V1, 555_555), viewer(V2, 1)],
        ));
        let reader = Arc::new(Reader::of_store(store.clone()));
        log.follow(
            Box::new(move || Some(reader.clone())),
            Box::new(|| Ok(Some(door()))),
        )
        .unwrap();
        // The scrub's fresh file cannot be made while a directory holds its name.
        let name = format!("served-0.redb.{}.scrub", std::process::id());
        let blocker = dir.path().join(name);
        std::fs::create_dir(&blocker).unwrap();
        std::fs::write(blocker.join("in the way"), b"").unwrap();
        erase(&store, V1, 2_000);
        wait_erased(&log, 1);
        std::thread::sleep(FOLLOW_EVERY * 3);
        assert!(
            file_holds(dir.path(), "555555"),
            "scrubbed past the blocker?"
        );
        std::fs::remove_dir_all(&blocker).unwrap();
        let started = Instant::now();
        while file_holds(dir.path(), "555555") {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "never scrubbed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        log.close().unwrap();
        let ids: Vec<String> = rows(dir.path()).into_iter().map(|r| r.id).collect();
        assert_eq!(ids, [V2]);
    }

    #[test]
    fn an_erasure_waits_for_the_key_and_is_applied_once_there_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let log = ServedLog::open(dir.path(), LogConfig::default()).unwrap();
        log.record(at("r", now_ms(), 1_000, vec![viewer(V1, 333_333)]));
        let key_there = Arc::new(Mutex::new(false));
        let there = key_there.clone();
        let key = Box::new(move || Ok(there.lock().unwrap().then(door)));
        let reader = Arc::new(Reader::of_store(store.clone()));
        log.follow(Box::new(move || Some(reader.clone())), key)
            .unwrap();
        erase(&store, V1, 2_000);
        // Looked at (and found wanting) at least once before the key comes.
        std::thread::sleep(FOLLOW_EVERY * 3);
        assert_eq!(log.stats().erased, 0);
        *key_there.lock().unwrap() = true;
        wait_erased(&log, 1);
        log.close().unwrap();
        assert!(rows(dir.path()).is_empty());
        assert!(!file_holds(dir.path(), "333333"));
    }

    #[test]
    fn the_stores_retention_becomes_the_logs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let now = now_ms();
        let day = 86_400_000;
        let log = ServedLog::open(dir.path(), LogConfig::default()).unwrap();
        log.record(response("old", now - 40 * day, vec![viewer(V1, 1)]));
        log.record(response("new", now - day, vec![viewer(V1, 2)]));
        store
            .put_meta(META_RETENTION, &(30 * day).to_le_bytes())
            .unwrap();
        let reader = Arc::new(Reader::of_store(store.clone()));
        log.follow(
            Box::new(move || Some(reader.clone())),
            Box::new(|| Ok(Some(door()))),
        )
        .unwrap();
        let started = Instant::now();
        while log.stats().purged == 0 {
            assert!(started.elapsed() < Duration::from_secs(60), "never purged");
            std::thread::sleep(Duration::from_millis(20));
        }
        log.close().unwrap();
        let ids: Vec<String> = rows(dir.path()).into_iter().map(|r| r.request_id).collect();
        assert_eq!(ids, ["new"]);
    }
}
