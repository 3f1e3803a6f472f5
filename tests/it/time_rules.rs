//! Nothing different: the same log gives the same history whatever the run's circumstances:
//! a live run that starts on a backlog, a caught-up run continued later over a longer log,
//! a producer clock far ahead, a broker that goes away for a while.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rewind::engine::{self, RunSummary, Shared};
use rewind::workload::{GenConfig, Record};
use rewind_dataflows::window::visible_at;
use rewind_state::ReadOnlyStore;

use crate::common;

/// History rows strictly below `frontier_ms`, and the online table when it is the store's
/// frontier: what two stores must agree on up to a frontier they both reached.
fn history_below(dir: &Path, frontier_ms: u64) -> Vec<rewind_state::HistoryRow> {
    let snap = ReadOnlyStore::open(dir).unwrap().snapshot().unwrap();
    let mut rows = snap.history().unwrap();
    rows.retain(|r| r.valid_from_ms < frontier_ms);
    rows
}

fn tables(dir: &Path) -> impl PartialEq + std::fmt::Debug {
    let snap = ReadOnlyStore::open(dir).unwrap().snapshot().unwrap();
    let meta: Vec<_> = ["frontier_ms", "events_total", "late_events_total"]
        .iter()
        .map(|k| snap.meta_u64(k).unwrap())
        .collect();
    (snap.history().unwrap(), snap.online_all().unwrap(), meta)
}

fn late_workload() -> GenConfig {
    GenConfig {
        viewers: 300,
        titles: 40,
        seed: 17,
        late: 0.003,
        ..GenConfig::default()
    }
}

/// A live run started on a backlog, with partitions that the old rule called idle after
/// no time at all: time must wait for every partition with records left to read, so the run
/// places every event where a replay does.
#[test]
fn a_live_run_on_a_backlog_writes_what_a_replay_writes() {
    let config = late_workload();
    let (titles, events) = common::workload(config.clone(), 45_000);
    let log = common::log(3);
    common::produce_workload(&log.brokers, &titles, &events, config.start_ms);

    let live_dir = tempfile::tempdir().unwrap();
    let shared = Arc::new(Shared::default());
    let mut live = common::config(&log.brokers, live_dir.path(), 2);
    live.until_caught_up = false;
    // The harshest setting: a partition that is read to its end is idle at once.
    live.idle = Duration::ZERO;
    let watcher = {
        let shared = shared.clone();
        let all = (titles.len() + events.len()) as u64;
        std::thread::spawn(move || common::stop_when_settled(&shared, all))
    };
    let live_run = engine::run(live, shared).unwrap();
    watcher.join().unwrap();

    let replay_dir = tempfile::tempdir().unwrap();
    let replay = common::run_caught_up(&log.brokers, replay_dir.path(), 1);
    assert_eq!(live_run.counters.events, 45_000);
    assert_eq!(
        live_run.counters.late_events, replay.counters.late_events,
        "the live run turned on-time events late"
    );
    assert!(live_run.frontier_ms > config.start_ms + 60_000);
    assert_eq!(
        history_below(live_dir.path(), live_run.frontier_ms),
        history_below(replay_dir.path(), live_run.frontier_ms)
    );
}

fn caught_up(brokers: &str, store: &Path, seal: bool) -> RunSummary {
    let mut config = common::config(brokers, store, 2);
    config.seal = seal;
    engine::run(config, Arc::new(Shared::default())).unwrap()
}

/// A caught-up run ends at the partitions' watermarks unless told to seal: a second run over
/// the longer log then equals one run over all of it, with no event turned late.
#[test]
fn caught_up_then_continued_equals_one_run_unless_sealed() {
    let config = late_workload();
    let (titles, events) = common::workload(config.clone(), 40_000);
    let log = common::log(3);
    common::produce_workload(&log.brokers, &titles, &events[..20_000], config.start_ms);
    let split = tempfile::tempdir().unwrap();
    let sealed = tempfile::tempdir().unwrap();
    let first = caught_up(&log.brokers, split.path(), false);
    caught_up(&log.brokers, sealed.path(), true);
    common::produce(&log.brokers, common::EVENTS, &events[20_000..]);
    let second = caught_up(&log.brokers, split.path(), false);
    let resealed = caught_up(&log.brokers, sealed.path(), false);

    let whole = tempfile::tempdir().unwrap();
    let one = caught_up(&log.brokers, whole.path(), false);
    assert!(first.frontier_ms > config.start_ms);
    assert_eq!(second.resumed_from_ms, first.frontier_ms);
    assert_eq!(second.counters.late_events, one.counters.late_events);
    assert_eq!(tables(split.path()), tables(whole.path()));
    // Sealing is the documented trade: the ticks it closed early see later events as late.
    assert!(resealed.counters.late_events > one.counters.late_events);
}

fn event(user: &str, ts_ms: u64) -> Record {
    Record {
        key: user.into(),
        json: format!(
            r#"{{"event_id":"x","type":"play_start","user_id":"{user}","ts":{ts_ms},"title_id":"t1"}}"#
        ),
        ts_ms,
        due_ms: ts_ms,
    }
}

/// An event stamped far ahead of its partition, even as the partition's very first, is a
/// dead letter with its reason; it never drags the watermark, so the events after it stay on
/// time. A real jump in time (the next event follows it) is kept.
#[test]
fn an_event_far_ahead_is_a_dead_letter_and_never_drags_the_watermark() {
    let config = GenConfig {
        viewers: 50,
        titles: 10,
        seed: 5,
        ..GenConfig::default()
    };
    let (titles, events) = common::workload(config.clone(), 4_000);
    let year_2099 = 4_070_908_800_000;
    let mut poisoned = events.clone();
    poisoned.insert(0, event("u1", year_2099));
    poisoned.insert(2_001, event("u2", config.start_ms + 30 * 86_400_000));
    // A real gap: two days with no traffic, then traffic again.
    let gap = config.start_ms + 2 * 86_400_000;
    let after: Vec<Record> = (0..20).map(|i| event("u3", gap + i * 1000)).collect();
    poisoned.extend(after.iter().cloned());

    let log = common::log(1);
    common::produce_workload(&log.brokers, &titles, &poisoned, config.start_ms);
    let store = tempfile::tempdir().unwrap();
    let run = common::run_caught_up(&log.brokers, store.path(), 1);
    assert_eq!(run.counters.late_events, 0, "nothing became late");
    assert_eq!(run.counters.events, (events.len() + after.len()) as u64);
    let snap = ReadOnlyStore::open(store.path())
        .unwrap()
        .snapshot()
        .unwrap();
    let dead = snap.dead_letters().unwrap();
    let reasons: Vec<(u64, &str)> = dead.iter().map(|d| (d.offset, d.reason.as_str())).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!((reasons[0].0, reasons[1].0), (0, 2_001));
    for (_, reason) in reasons {
        assert!(reason.contains("ahead of the next event"), "{reason}");
    }
    assert_eq!(
        run.frontier_ms,
        visible_at(gap + 19_000, 1000) + 1000,
        "the sealed store ends a tick past the last real event"
    );

    let clean_log = common::log(1);
    let mut clean = events.clone();
    clean.extend(after);
    common::produce_workload(&clean_log.brokers, &titles, &clean, config.start_ms);
    let clean_store = tempfile::tempdir().unwrap();
    common::run_caught_up(&clean_log.brokers, clean_store.path(), 1);
    let clean_snap = ReadOnlyStore::open(clean_store.path())
        .unwrap()
        .snapshot()
        .unwrap();
    assert_eq!(snap.history().unwrap(), clean_snap.history().unwrap());
}

/// The broker goes away for a few seconds in the middle of a live run: the run waits and
/// goes on, and reads everything.
#[test]
fn a_broker_outage_is_waited_out() {
    let config = GenConfig {
        viewers: 100,
        titles: 10,
        seed: 8,
        ..GenConfig::default()
    };
    let (titles, events) = common::workload(config.clone(), 10_000);
    let log = common::log(2);
    let brokers = log.brokers.clone();
    common::produce_workload(&brokers, &titles, &events[..5_000], config.start_ms);

    let store = tempfile::tempdir().unwrap();
    let shared = Arc::new(Shared::default());
    let mut live = common::config(&brokers, store.path(), 1);
    live.until_caught_up = false;
    live.idle = Duration::from_secs(3600);
    live.max_outage = Duration::from_secs(60);
    let engine = {
        let shared = shared.clone();
        std::thread::spawn(move || engine::run(live, shared))
    };
    while shared.counters().records < (titles.len() + 5_000) as u64 {
        std::thread::sleep(Duration::from_millis(20));
    }
    log.set_broker_up(false);
    let mut saw_outage = false;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(20));
        saw_outage |= shared.outage().is_some();
    }
    log.set_broker_up(true);
    assert!(!engine.is_finished(), "the run gave up during the outage");
    common::produce(&brokers, common::EVENTS, &events[5_000..]);
    common::stop_when_settled(&shared, (titles.len() + events.len()) as u64);
    let run = engine.join().unwrap().unwrap();
    assert_eq!(run.counters.events, 10_000);
    assert!(saw_outage, "the outage was reported while it lasted");
    assert!(
        shared.outage().is_none(),
        "and cleared once the broker was back"
    );
}

/// An outage longer than the configured limit ends the run with an error saying so.
#[test]
fn an_outage_past_the_limit_ends_the_run_clearly() {
    let config = GenConfig {
        viewers: 10,
        ..GenConfig::default()
    };
    let (titles, events) = common::workload(config.clone(), 100);
    let log = common::log(1);
    common::produce_workload(&log.brokers, &titles, &events, config.start_ms);
    let store = tempfile::tempdir().unwrap();
    let mut live = common::config(&log.brokers, store.path(), 1);
    live.until_caught_up = false;
    live.max_outage = Duration::from_secs(1);
    let shared = Arc::new(Shared::default());
    let engine = {
        let shared = shared.clone();
        std::thread::spawn(move || engine::run(live, shared))
    };
    // Down only once the run is reading (its start-up needs the cluster's metadata).
    while shared.counters().records < 100 {
        std::thread::sleep(Duration::from_millis(20));
    }
    log.set_broker_up(false);
    let err = engine.join().unwrap().unwrap_err().to_string();
    assert!(err.contains("has not answered for"), "{err}");
    assert!(err.contains("--max-outage-s"), "{err}");
}

/// A catalogue produced today, with ordinary record timestamps, is in force only from today:
/// every earlier event finds no title. The run counts them, in its summary and the store, and
/// says what to do; `titles_from_start` makes a title's first record valid for all history.
#[test]
fn events_without_a_title_are_counted_and_titles_from_start_fixes_them() {
    let config = GenConfig {
        viewers: 50,
        titles: 10,
        seed: 6,
        ..GenConfig::default()
    };
    let (titles, events) = common::workload(config.clone(), 3_000);
    let door = common::door();
    let titled = events
        .iter()
        .filter(|r| {
            let e = rewind::decode::decode_event(Some(r.json.as_bytes()), &door).unwrap();
            e.kind.title().is_some()
        })
        .count() as u64;
    let log = common::log(2);
    let today = rewind::embedded::now_ms();
    let stamped_today: Vec<Record> = titles
        .iter()
        .map(|t| Record {
            ts_ms: today,
            ..t.clone()
        })
        .collect();
    common::produce(&log.brokers, common::TITLES, &stamped_today);
    common::produce(&log.brokers, common::EVENTS, &events);

    let plain = tempfile::tempdir().unwrap();
    let run = common::run_caught_up(&log.brokers, plain.path(), 2);
    assert_eq!(run.counters.untitled_events, titled);
    let snap = ReadOnlyStore::open(plain.path())
        .unwrap()
        .snapshot()
        .unwrap();
    assert_eq!(
        snap.meta_u64("untitled_events_total").unwrap(),
        Some(titled)
    );
    let shares = |snap: &rewind_state::Snapshot| {
        let rows = snap.history().unwrap().into_iter();
        rows.filter(|r| r.feature == "viewer.genre_share_90d" && r.value_json.is_some())
            .count()
    };
    assert_eq!(shares(&snap), 0, "no event saw a title");

    let fixed = tempfile::tempdir().unwrap();
    let mut from_start = common::config(&log.brokers, fixed.path(), 2);
    from_start.titles_from_start = true;
    let run = engine::run(from_start, Arc::new(Shared::default())).unwrap();
    assert_eq!(run.counters.untitled_events, 0);
    let snap = ReadOnlyStore::open(fixed.path())
        .unwrap()
        .snapshot()
        .unwrap();
    assert!(shares(&snap) > 0);

    let cli = tempfile::tempdir().unwrap();
    let out = common::rewind(&[
        "run",
        "--brokers",
        &log.brokers,
        "--store",
        cli.path().to_str().unwrap(),
        "--until-caught-up",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unsealed, the run counts the events of the ticks it committed: what the store says.
    let snap = ReadOnlyStore::open(cli.path()).unwrap().snapshot().unwrap();
    let counted = snap.meta_u64("untitled_events_total").unwrap().unwrap();
    assert!(counted > titled / 2, "{counted} of {titled}");
    assert!(
        stderr.contains(&format!("{counted} without a title"))
            && stderr.contains("--titles-from-start"),
        "{stderr}"
    );
}

/// Keys the partitioner sends to partition 0 and to partition 1 of a two-partition topic
/// (librdkafka's default partitioner hashes the key, the same on every cluster).
fn keys_for_two_partitions() -> (String, String) {
    let probe = common::log(2);
    let candidates: Vec<Record> = (0..16).map(|i| event(&format!("k{i}"), 1)).collect();
    common::produce(&probe.brokers, common::EVENTS, &candidates);
    let raw = common::read_back(&probe.brokers, common::EVENTS);
    let key_in = |partition: u32| {
        let record = raw.iter().find(|r| r.partition == partition).unwrap();
        let json = String::from_utf8(record.payload.clone().unwrap()).unwrap();
        let at = json.find("\"user_id\":\"").unwrap() + 11;
        json[at..at + json[at..].find('"').unwrap()].to_string()
    };
    (key_in(0), key_in(1))
}

/// A partition whose only event is still held when a caught-up run ends: the event holds
/// time back where it would once placed (the other partition must not carry time past it),
/// and the store does not record it as read, so the next run places it as one run does.
#[test]
fn an_event_held_at_the_end_of_a_run_is_read_again_by_the_next() {
    let (quiet, busy) = keys_for_two_partitions();
    let s = 1_767_225_600_000;
    let log = common::log(2);
    common::produce(&log.brokers, common::EVENTS, &[event(&quiet, s + 1000)]);
    let traffic: Vec<Record> = (0..600).map(|i| event(&busy, s + i * 1000)).collect();
    common::produce(&log.brokers, common::EVENTS, &traffic);

    let split = tempfile::tempdir().unwrap();
    let first = caught_up(&log.brokers, split.path(), false);
    assert!(first.frontier_ms <= s, "the held event holds time back");
    let more: Vec<Record> = (0..10)
        .map(|i| event(&quiet, s + 2000 + i * 1000))
        .collect();
    common::produce(&log.brokers, common::EVENTS, &more);
    let second = caught_up(&log.brokers, split.path(), false);
    let whole = tempfile::tempdir().unwrap();
    let one = caught_up(&log.brokers, whole.path(), false);
    assert_eq!(second.counters.events, one.counters.events);
    assert_eq!(second.counters.late_events, 0);
    assert_eq!(tables(split.path()), tables(whole.path()));
    let plays = |dir: &Path| {
        let snap = ReadOnlyStore::open(dir).unwrap().snapshot().unwrap();
        let rows = snap.history().unwrap().into_iter();
        let quiet_id = common::door().viewer_id(&quiet).to_string();
        rows.filter(|r| r.feature == "viewer.plays_24h" && r.entity_id == quiet_id)
            .filter_map(|r| r.value_json)
            .map(|v| String::from_utf8(v).unwrap().parse::<u64>().unwrap())
            .max()
    };
    // The quiet viewer's plays are there, up to the ticks the watermark has closed.
    assert!(plays(split.path()).is_some_and(|n| n >= 5));
}
