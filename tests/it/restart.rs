//! Restart: a run stopped in the middle and started again on the same store ends with the
//! same store as one uninterrupted run.

use std::sync::Arc;
use std::time::Duration;

use rewind::engine::{self, Shared};
use rewind::workload::GenConfig;
use rewind_state::ReadOnlyStore;

use crate::common;

/// Every table of the store, as comparable rows.
fn tables(dir: &std::path::Path) -> impl PartialEq + std::fmt::Debug {
    let snap = ReadOnlyStore::open(dir).unwrap().snapshot().unwrap();
    let meta: Vec<_> = [
        "frontier_ms",
        "as_of_ms",
        "events_total",
        "late_events_total",
        "dead_letters_total",
    ]
    .iter()
    .map(|k| snap.meta_u64(k).unwrap())
    .collect();
    (
        snap.history().unwrap(),
        snap.online_all().unwrap(),
        snap.next_offsets().unwrap(),
        snap.dead_letters().unwrap().len(),
        meta,
    )
}

/// A live run over the first half of the log is stopped once it has read it all; the rest
/// arrives; a second run finishes. The store must equal one run over the whole log.
#[test]
fn a_stopped_and_restarted_run_equals_an_uninterrupted_one() {
    let config = GenConfig {
        viewers: 300,
        titles: 50,
        seed: 11,
        late: 0.002,
        ..GenConfig::default()
    };
    let (titles, mut events) = common::workload(config.clone(), 60_000);
    events.insert(
        500,
        rewind::workload::Record {
            key: "u".into(),
            json: "{broken".into(),
            ts_ms: 0,
            due_ms: 0,
        },
    );
    let log = common::log(4);
    common::produce_workload(&log.brokers, &titles, &events[..30_000], config.start_ms);

    let split = tempfile::tempdir().unwrap();
    let shared = Arc::new(Shared::default());
    let mut live = common::config(&log.brokers, split.path(), 2);
    live.until_caught_up = false;
    // Never idle: a stop must not seal ticks that the rest of the log still feeds.
    live.idle = Duration::from_secs(3600);
    let watcher = {
        let shared = shared.clone();
        let all = (titles.len() + 30_000) as u64;
        std::thread::spawn(move || common::stop_when_settled(&shared, all))
    };
    let first = engine::run(live, shared).unwrap();
    watcher.join().unwrap();
    common::produce(&log.brokers, common::EVENTS, &events[30_000..]);
    let second = common::run_caught_up(&log.brokers, split.path(), 2);

    let whole = tempfile::tempdir().unwrap();
    common::run_caught_up(&log.brokers, whole.path(), 2);
    assert!(
        first.frontier_ms > config.start_ms,
        "the first run committed output"
    );
    assert!(
        first.frontier_ms < second.frontier_ms,
        "the first run stopped in the middle"
    );
    assert_eq!(second.resumed_from_ms, first.frontier_ms);
    assert_eq!(second.counters.events, 60_000);
    assert_eq!(tables(split.path()), tables(whole.path()));
}

#[test]
fn a_store_refuses_a_log_it_has_read_past() {
    let config = GenConfig {
        viewers: 20,
        titles: 5,
        ..GenConfig::default()
    };
    let (titles, events) = common::workload(config.clone(), 2_000);
    let long = common::log(1);
    common::produce_workload(&long.brokers, &titles, &events, config.start_ms);
    let store = tempfile::tempdir().unwrap();
    common::run_caught_up(&long.brokers, store.path(), 1);

    let short = common::log(1);
    common::produce_workload(&short.brokers, &titles, &events[..100], config.start_ms);
    let err = engine::run(
        common::config(&short.brokers, store.path(), 1),
        Arc::new(Shared::default()),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("another log"), "{err}");
}

#[test]
fn a_store_refuses_another_tick() {
    let log = common::log(1);
    let store = tempfile::tempdir().unwrap();
    common::run_caught_up(&log.brokers, store.path(), 1);
    let mut config = common::config(&log.brokers, store.path(), 1);
    config.policy.tick_ms = 60_000;
    let err = engine::run(config, Arc::new(Shared::default()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tick_ms 1000") && err.contains("60000"),
        "{err}"
    );
}

/// A restart re-reads the erasure topic from its start: one that lost records while the store
/// had applied erasures is refused (the events they erased would come back), saying why.
#[test]
fn a_restart_refuses_an_erasure_topic_trimmed_under_applied_erasures() {
    let s = 1_767_225_600_000u64;
    let record = |key: &str, json: String, ts_ms| rewind::workload::Record {
        key: key.into(),
        json,
        ts_ms,
        due_ms: ts_ms,
    };
    let events: Vec<_> = (0..20)
        .map(|i| {
            let ts = s + i * 1000;
            let json = format!(
                r#"{{"event_id":"e{i}","type":"play_start","user_id":"u1","ts":{ts},"title_id":"t"}}"#
            );
            record("u1", json, ts)
        })
        .collect();
    let erase = |i: u64| {
        record(
            "u1",
            format!(r#"{{"user_id":"u{i}","ts":{}}}"#, s + 5000),
            s,
        )
    };
    let log = common::log(1);
    log.create_topic(common::ERASURE, 1);
    common::produce(&log.brokers, common::EVENTS, &events);
    common::produce(&log.brokers, common::ERASURE, &[erase(1), erase(2)]);
    let store = tempfile::tempdir().unwrap();
    common::run_caught_up(&log.brokers, store.path(), 1);
    let snap = ReadOnlyStore::open(store.path())
        .unwrap()
        .snapshot()
        .unwrap();
    assert_eq!(snap.erasures_applied().unwrap(), 2);
    drop(snap);

    // The embedded cluster keeps the newest ~5 MiB of a partition: the first erasures go.
    let source = rewind_connectors::KafkaSource::connect(&log.brokers).unwrap();
    let mut more = 3;
    while source.topic_info(common::ERASURE).unwrap().watermarks[0].0 == 0 {
        let batch: Vec<_> = (more..more + 20_000).map(erase).collect();
        common::produce(&log.brokers, common::ERASURE, &batch);
        more += 20_000;
        assert!(
            more < 1_000_000,
            "the cluster never trimmed the erasure topic"
        );
    }
    let config = common::config(&log.brokers, store.path(), 1);
    let err = engine::run(config, Arc::new(Shared::default()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("erasure topic") && err.contains("applied erasures"),
        "{err}"
    );
    assert!(err.contains("Keep the erasure topic's records"), "{err}");
}
