//! Bad records among good ones: every good event counted, every bad one kept as a dead
//! letter with its position and reason, no panic, nothing good lost. From a file too: what
//! `rewind produce` loads, bad lines included.

use std::path::{Path, PathBuf};

use rewind::decode::MAX_PAYLOAD_BYTES;
use rewind::workload::{GenConfig, Record};
use rewind_state::ReadOnlyStore;

use crate::common;

fn bad(json: String) -> Record {
    Record {
        key: "u9".into(),
        json,
        ts_ms: 0,
        due_ms: 0,
    }
}

#[test]
fn each_kind_of_bad_record_becomes_a_dead_letter_and_good_ones_count() {
    let config = GenConfig {
        viewers: 30,
        titles: 10,
        seed: 3,
        ..GenConfig::default()
    };
    let (titles, good) = common::workload(config.clone(), 3_000);
    let ts = config.start_ms + 5_000;
    let cases: Vec<(Record, &str)> = vec![
        (bad("{\"event_id\": \"e\", \"type\":".into()), "bad JSON"),
        (
            bad(format!(
                r#"{{"event_id":"e","type":"click","ts":{ts},"title_id":"t"}}"#
            )),
            "missing required field `user_id`",
        ),
        (
            bad(format!(
                r#"{{"event_id":"e","type":"click","user_id":7,"ts":{ts},"title_id":"t"}}"#
            )),
            "field `user_id` is not a string",
        ),
        (
            bad(format!(
                r#"{{"event_id":"e","type":"teleport","user_id":"u9","ts":{ts}}}"#
            )),
            "unknown event `type`",
        ),
        (
            bad(r#"{"event_id":"e","type":"click","user_id":"u9","ts":-5,"title_id":"t"}"#.into()),
            "field `ts` is not",
        ),
        (
            bad(r#"{"event_id":"e","type":"click","user_id":"u9","ts":99,"title_id":"t"}"#.into()),
            "not a plausible time",
        ),
        (
            bad(format!(
                r#"{{"event_id":"e","type":"click","user_id":"u9","ts":{ts},"title_id":"{}"}}"#,
                "x".repeat(MAX_PAYLOAD_BYTES)
            )),
            "exceeds",
        ),
        (bad(String::new()), "empty payload"),
    ];
    let bad_title = Record {
        key: "tt-bad".into(),
        json: r#"{"title_id":"tt-bad"}"#.into(),
        ts_ms: 0,
        due_ms: 0,
    };
    let (store, letters) = run_with_bad_records(&config, &titles, &good, &cases, bad_title);
    let snap = ReadOnlyStore::open(store.path())
        .unwrap()
        .snapshot()
        .unwrap();
    let title = letters.iter().find(|l| l.topic == common::TITLES).unwrap();
    assert!(title.reason.contains("`kind`"), "{}", title.reason);
    assert_eq!(
        snap.meta_u64("events_total").unwrap(),
        Some(good.len() as u64)
    );
    assert_eq!(
        snap.meta_u64("dead_letters_total").unwrap(),
        Some(cases.len() as u64 + 1)
    );
    // Nothing of a dead letter but its position and reason is kept.
    assert!(
        letters
            .iter()
            .all(|l| !l.reason.contains("u9") && l.reason.len() < 200)
    );
}

fn event(ts: u64, user: &str, body: &str) -> Record {
    Record {
        key: user.into(),
        json: format!(r#"{{"event_id":"e","user_id":"{user}","ts":{ts},{body}}}"#),
        ts_ms: ts,
        due_ms: ts,
    }
}

/// Oversized ids and strings are stopped at the door: each becomes a dead letter naming the
/// field and its limit, and none of it reaches the store.
#[test]
fn oversized_fields_become_dead_letters_naming_the_field_and_the_limit() {
    let config = GenConfig {
        viewers: 30,
        titles: 10,
        seed: 4,
        ..GenConfig::default()
    };
    let (titles, good) = common::workload(config.clone(), 3_000);
    let ts = config.start_ms + 5_000;
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(Record, &str)> = vec![
        (
            event(
                ts,
                "u9",
                &format!(r#""type":"play_start","title_id":"{}""#, long(300)),
            ),
            "`title_id` exceeds the 256-byte limit",
        ),
        (
            event(ts, &long(300), r#""type":"play_start","title_id":"t""#),
            "`user_id` exceeds the 256-byte limit",
        ),
        (
            event(
                ts,
                "u9",
                &format!(r#""type":"search","query":"{}""#, long(1025)),
            ),
            "`query` exceeds the 1024-byte limit",
        ),
        (
            event(
                ts,
                "u9",
                &format!(
                    r#""type":"impression","title_id":"t","rank":1,"row":"{}""#,
                    long(257)
                ),
            ),
            "`row` exceeds the 256-byte limit",
        ),
        (
            event(
                ts,
                "u9",
                &format!(r#""type":"play_start","title_id":"{}""#, long(100_000)),
            ),
            "exceeds the 65536-byte limit",
        ),
    ];
    let bad_title = Record {
        key: "tt-long".into(),
        json: format!(
            r#"{{"title_id":"tt-long","kind":"movie","genres":["{}"]}}"#,
            long(200)
        ),
        ts_ms: 0,
        due_ms: 0,
    };
    let (store, letters) = run_with_bad_records(&config, &titles, &good, &cases, bad_title);
    let title = letters.iter().find(|l| l.topic == common::TITLES).unwrap();
    assert!(title.reason.contains("`genres`"), "{}", title.reason);
    assert!(title.reason.contains("128-byte limit"), "{}", title.reason);
    let bytes = std::fs::read(store.path().join(rewind_state::FILE_NAME)).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains(&long(257)));
}

/// Writes `lines` (raw bytes, one a line) to a file in `dir`.
fn lines_file(dir: &Path, name: &str, lines: &[Vec<u8>]) -> PathBuf {
    let path = dir.join(name);
    let mut bytes = Vec::new();
    for line in lines {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `rewind produce` loads a line that is not UTF-8, or has a negative `ts`, like any other
/// bad line: produced as its bytes (a negative `ts` is not made the record's timestamp), then
/// dead-lettered by the pipeline. Nothing stops the load.
#[test]
fn produce_loads_bad_lines_for_the_pipeline_to_dead_letter() {
    let config = GenConfig {
        viewers: 30,
        titles: 10,
        seed: 6,
        ..GenConfig::default()
    };
    let (titles, good) = common::workload(config.clone(), 2_000);
    let mut lines: Vec<Vec<u8>> = good.iter().map(|r| r.json.clone().into_bytes()).collect();
    // "café" in Latin-1: the 0xE9 byte is not UTF-8.
    let not_utf8 = [
        &br#"{"event_id":"e","type":"search","user_id":"u9","ts":1767225605000,"query":"caf"#[..],
        &[0xe9],
        br#""}"#,
    ]
    .concat();
    assert!(std::str::from_utf8(&not_utf8).is_err());
    lines.insert(500, not_utf8.clone());
    let negative = br#"{"event_id":"e","type":"click","user_id":"u9","ts":-5,"title_id":"t"}"#;
    lines.insert(1000, negative.to_vec());
    let dir = tempfile::tempdir().unwrap();
    let events = lines_file(dir.path(), "events.jsonl", &lines);
    let title_lines: Vec<Vec<u8>> = titles.iter().map(|r| r.json.clone().into_bytes()).collect();
    let titles = lines_file(dir.path(), "titles.jsonl", &title_lines);

    let log = common::log(1);
    let titles_ts = (config.start_ms - 60_000).to_string();
    let b = log.brokers.as_str();
    common::produce_files(
        b,
        titles.to_str().unwrap(),
        &titles_ts,
        events.to_str().unwrap(),
    );
    let stored = common::read_back(b, common::EVENTS);
    assert_eq!(stored.len(), lines.len());
    assert_eq!(stored[500].payload.as_deref(), Some(&not_utf8[..]));
    assert_eq!(stored[1000].payload.as_deref(), Some(&negative[..]));
    let stamped = stored[1000].timestamp_ms;
    assert!(stamped.is_some_and(|t| t > 0), "{stamped:?}");

    let store = tempfile::tempdir().unwrap();
    let summary = common::run_caught_up(b, store.path(), 1);
    assert_eq!(summary.counters.events, good.len() as u64);
    let snap = ReadOnlyStore::open(store.path())
        .unwrap()
        .snapshot()
        .unwrap();
    let letters = snap.dead_letters().unwrap();
    let at = |offset| {
        letters
            .iter()
            .find(|l| l.offset == offset)
            .map(|l| &l.reason)
    };
    assert!(
        at(500).is_some_and(|r| r.contains("bad JSON")),
        "{letters:?}"
    );
    assert!(at(1000).is_some_and(|r| r.contains("`ts`")), "{letters:?}");
}

/// A line the broker refuses (larger than any record it takes) stops `produce`; it says how
/// many records are in the topic and after which line it stopped, and those are exactly the
/// lines before.
#[test]
fn produce_says_what_it_delivered_and_where_it_stopped() {
    let config = GenConfig {
        viewers: 10,
        titles: 5,
        seed: 7,
        ..GenConfig::default()
    };
    let (_, good) = common::workload(config, 100);
    let mut lines: Vec<Vec<u8>> = good.iter().map(|r| r.json.clone().into_bytes()).collect();
    // Past the producer's 16 MiB `message.max.bytes`.
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(17 << 20));
    lines.insert(60, huge.into_bytes());
    let dir = tempfile::tempdir().unwrap();
    let events = lines_file(dir.path(), "events.jsonl", &lines);
    let log = common::log(1);
    let out = common::rewind(&[
        "produce",
        "--brokers",
        &log.brokers,
        "--topic",
        common::EVENTS,
        "--file",
        events.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("stopped after line 60"), "{stderr}");
    assert!(stderr.contains("60 records"), "{stderr}");
    assert!(stderr.contains("tail -n +61"), "{stderr}");
    let stored = common::read_back(&log.brokers, common::EVENTS);
    assert_eq!(stored.len(), 60);
    assert_eq!(stored[59].payload.as_deref(), Some(&lines[59][..]));
}

/// Produces `good` with each of `cases` inserted (at offsets 100, 400, ...), after `titles`
/// and one `bad_title`, and runs to the end of the log. Checks that every good event counts
/// and that each bad record is a dead letter at its offset with its reason. Returns the store
/// and its dead letters.
fn run_with_bad_records(
    config: &GenConfig,
    titles: &[Record],
    good: &[Record],
    cases: &[(Record, &str)],
    bad_title: Record,
) -> (tempfile::TempDir, Vec<rewind_state::DeadLetterRow>) {
    let mut events = good.to_vec();
    for (i, (record, _)) in cases.iter().enumerate() {
        events.insert(100 + i * 300, record.clone());
    }
    let mut all_titles = titles.to_vec();
    all_titles.push(bad_title);
    let log = common::log(1);
    common::produce_workload(&log.brokers, &all_titles, &events, config.start_ms);
    let store = tempfile::tempdir().unwrap();
    let summary = common::run_caught_up(&log.brokers, store.path(), 1);

    assert_eq!(summary.counters.events, good.len() as u64);
    assert_eq!(summary.counters.dead_letters, cases.len() as u64 + 1);
    let snap = ReadOnlyStore::open(store.path())
        .unwrap()
        .snapshot()
        .unwrap();
    let letters = snap.dead_letters().unwrap();
    assert_eq!(letters.len(), cases.len() + 1);
    for (i, (_, reason)) in cases.iter().enumerate() {
        let offset = (100 + i * 300) as u64;
        let letter = letters
            .iter()
            .find(|l| l.topic == common::EVENTS && l.offset == offset);
        let letter = letter.unwrap_or_else(|| panic!("no dead letter at offset {offset}"));
        assert!(
            letter.reason.contains(reason),
            "offset {offset}: {:?} lacks {reason:?}",
            letter.reason
        );
    }
    (store, letters)
}

/// Hostile consent records among good ones: each is a dead letter of the consent topic with
/// its reason, and the good ones are read and counted.
#[test]
fn hostile_consent_records_are_dead_letters_with_their_reason() {
    let s = 1_767_225_600_000u64;
    let consent = |body: String, ts_ms| Record {
        key: "u1".into(),
        json: body,
        ts_ms,
        due_ms: ts_ms,
    };
    let good =
        |ts: u64| format!(r#"{{"user_id":"u1","purpose":"analytics","granted":true,"ts":{ts}}}"#);
    let records = vec![
        consent(good(s), s),
        consent("{not json".into(), s),
        consent(
            format!(r#"{{"user_id":"u1","purpose":"marketing","granted":true,"ts":{s}}}"#),
            s,
        ),
        consent(
            format!(r#"{{"user_id":"u1","purpose":"ads","granted":"yes","ts":{s}}}"#),
            s,
        ),
        consent(good(s + 10_000), s + 10_000),
        // A day ahead of everything: it waits for its own tick, and drags nothing.
        consent(good(s + 86_400_000), s + 86_400_000),
        consent(good(s + 20_000), s + 20_000),
    ];
    let events: Vec<Record> = (0..30)
        .map(|i| {
            let ts = s + i * 1000;
            let json = format!(
                r#"{{"event_id":"e{i}","type":"play_start","user_id":"u1","ts":{ts},"title_id":"t"}}"#
            );
            Record { key: "u1".into(), json, ts_ms: ts, due_ms: ts }
        })
        .collect();
    let log = common::log(1);
    log.create_topic(common::CONSENT, 1);
    common::produce(&log.brokers, common::EVENTS, &events);
    common::produce(&log.brokers, common::CONSENT, &records);
    let store = tempfile::tempdir().unwrap();
    let mut config = common::config(&log.brokers, store.path(), 1);
    config.consent = Some(rewind::engine::ConsentConfig {
        topic: common::CONSENT.into(),
        rules: rewind_dataflows::ConsentRules {
            purposes: vec![rewind_dataflows::Purpose::Analytics],
            max_age_ms: 3_600_000,
        },
    });
    let shared = std::sync::Arc::new(rewind::engine::Shared::default());
    let summary = rewind::engine::run(config, shared).unwrap();
    assert_eq!(summary.counters.consent_records, 4);
    assert_eq!(summary.counters.late_consent, 0);
    assert_eq!(summary.counters.late_events, 0);
    let snap = ReadOnlyStore::open(store.path())
        .unwrap()
        .snapshot()
        .unwrap();
    let letters: Vec<(u64, String)> = snap
        .dead_letters()
        .unwrap()
        .into_iter()
        .filter(|l| l.topic == common::CONSENT)
        .map(|l| (l.offset, l.reason))
        .collect();
    let reasons = [
        "bad JSON",
        "unknown `purpose`",
        "`granted` is not true or false",
    ];
    assert_eq!(letters.len(), reasons.len(), "{letters:?}");
    for ((offset, reason), (want_offset, want)) in letters.iter().zip([1, 2, 3].iter().zip(reasons))
    {
        assert_eq!(offset, want_offset, "{letters:?}");
        assert!(reason.contains(want), "{reason}");
    }
}

/// Hostile erasure records among good ones: each is a dead letter of the erasure topic with
/// its reason; the good ones are applied, an erasure of a viewer never seen among them (a
/// no-op besides its record).
#[test]
fn hostile_erasure_records_are_dead_letters_with_their_reason() {
    let s = 1_767_225_600_000u64;
    let erasure = |json: String, ts_ms| Record {
        key: "u1".into(),
        json,
        ts_ms,
        due_ms: ts_ms,
    };
    let good = |user: &str, ts: u64| erasure(format!(r#"{{"user_id":"{user}","ts":{ts}}}"#), ts);
    let records = vec![
        good("u1", s + 5_000),
        erasure("{not json".into(), s),
        erasure(r#"{"user_id":"u1","ts":"now"}"#.into(), s),
        erasure(format!(r#"{{"user_id":9,"ts":{s}}}"#), s),
        erasure(
            format!(
                r#"{{"user_id":"u1","ts":{s},"pad":"{}"}}"#,
                "p".repeat(70_000)
            ),
            s,
        ),
        good(&"u".repeat(300), s),
        good("u1", 4_102_444_800_000),
        good("nobody", s + 10_000),
        // A day ahead of everything: applied at once, it erases what u2 sent before it (all of
        // it), and drags nothing.
        good("u2", s + 86_400_000),
        good("u1", s + 20_000),
    ];
    let events: Vec<Record> = (0..30)
        .map(|i| {
            let ts = s + i * 1000;
            let json = format!(
                r#"{{"event_id":"e{i}","type":"play_start","user_id":"u1","ts":{ts},"title_id":"t"}}"#
            );
            Record { key: "u1".into(), json, ts_ms: ts, due_ms: ts }
        })
        .collect();
    let log = common::log(1);
    log.create_topic(common::ERASURE, 1);
    common::produce(&log.brokers, common::EVENTS, &events);
    common::produce(&log.brokers, common::ERASURE, &records);
    let store = tempfile::tempdir().unwrap();
    let summary = common::run_caught_up(&log.brokers, store.path(), 1);
    assert_eq!(summary.counters.erasure_records, 4);
    assert_eq!(summary.counters.late_events, 0);
    let snap = ReadOnlyStore::open(store.path())
        .unwrap()
        .snapshot()
        .unwrap();
    let letters: Vec<(u64, String)> = snap
        .dead_letters()
        .unwrap()
        .into_iter()
        .filter(|l| l.topic == common::ERASURE)
        .map(|l| (l.offset, l.reason))
        .collect();
    let reasons = [
        (1, "bad JSON"),
        (2, "field `ts` is not an integer"),
        (3, "field `user_id` is not a string"),
        (4, "exceeds the 65536-byte limit"),
        (5, "field `user_id` exceeds the 256-byte limit"),
        (6, "`ts` is not a plausible time"),
    ];
    assert_eq!(letters.len(), reasons.len(), "{letters:?}");
    for ((offset, reason), (want_offset, want)) in letters.iter().zip(reasons) {
        assert_eq!(*offset, want_offset, "{letters:?}");
        assert!(reason.contains(want), "{reason}");
    }
    // u1, and the viewers never seen, are on the suppression list.
    assert_eq!(snap.erasures().unwrap().len(), 3);
    let door = common::door();
    assert!(
        snap.erasure(door.erasure_token(&door.viewer_id("nobody")))
            .unwrap()
            .is_some()
    );
    // u1's plays from the last erasure on count, and nothing of it before.
    let u1 = door.viewer_id("u1").to_string();
    let online = snap.online("viewer", &u1).unwrap();
    let plays = online
        .iter()
        .find(|r| r.feature == "viewer.plays_24h")
        .unwrap();
    assert_eq!(plays.value_json, b"10");
    let history = snap.history().unwrap();
    let first = history
        .iter()
        .filter(|r| r.entity_id == u1)
        .map(|r| r.valid_from_ms)
        .min();
    assert_eq!(first, Some(s + 21_000));
}
