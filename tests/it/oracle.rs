//! The oracle: a plain recomputation of every feature "as of T" from the raw log, compared
//! with the store's history at many tick boundaries T, and with its online values at the
//! final frontier, for 1 and 2 workers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rewind::TimePolicy;
use rewind::decode::decode_event;
use rewind::workload::{GenConfig, Record};
use rewind_dataflows::{Event, EventKind};
use rewind_state::{ReadOnlyStore, Snapshot};

use crate::common::{self, Raw};

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

/// An event and the logical time DESIGN.md's rule gives it: `t0`, the first tick boundary
/// after `ts`, unless that is below its partition's frontier (`max ts seen - lateness`,
/// floored to a tick, plus a tick), where a late event lands instead.
pub struct Placed {
    pub event: Event,
    pub time: u64,
}

pub fn place(raw: &[Raw], policy: TimePolicy) -> Vec<Placed> {
    let door = common::door();
    let tick = policy.tick_ms;
    let mut max_ts: HashMap<u32, u64> = HashMap::new();
    let mut placed = Vec::new();
    for record in raw {
        let Ok(event) = decode_event(record.payload.as_deref(), &door) else {
            continue;
        };
        let t0 = (event.ts_ms / tick + 1) * tick;
        let frontier = max_ts.get(&record.partition).map_or(0, |m| {
            m.saturating_sub(policy.lateness_ms) / tick * tick + tick
        });
        let newest = max_ts.entry(record.partition).or_insert(event.ts_ms);
        *newest = (*newest).max(event.ts_ms);
        placed.push(Placed {
            time: t0.max(frontier),
            event,
        });
    }
    placed
}

type Values = BTreeMap<(String, String), f64>;

/// Every feature's non-default value as of tick `t`, computed from scratch.
pub fn expected(placed: &[Placed], t: u64) -> Values {
    let within = |time: u64, window: u64| time <= t && t < time + window;
    let mut watch_ms: BTreeMap<String, u64> = BTreeMap::new();
    let mut plays: BTreeMap<String, u64> = BTreeMap::new();
    let mut title_viewers: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for Placed { event, time } in placed {
        match &event.kind {
            EventKind::Heartbeat { interval_ms, .. } if within(*time, HOUR) => {
                *watch_ms.entry(event.viewer.to_string()).or_default() += interval_ms;
            }
            EventKind::PlayStart { title, .. } => {
                if within(*time, DAY) {
                    *plays.entry(event.viewer.to_string()).or_default() += 1;
                }
                if within(*time, HOUR) {
                    title_viewers
                        .entry(title)
                        .or_default()
                        .insert(event.viewer.to_string());
                }
            }
            _ => {}
        }
    }
    let mut values = Values::new();
    let mut put = |feature: &str, entity: &str, value: f64| {
        if value != 0.0 {
            values.insert((feature.to_string(), entity.to_string()), value);
        }
    };
    watch_ms
        .iter()
        .for_each(|(v, ms)| put("viewer.watch_seconds_1h", v, *ms as f64 / 1000.0));
    plays
        .iter()
        .for_each(|(v, n)| put("viewer.plays_24h", v, *n as f64));
    title_viewers
        .iter()
        .for_each(|(t, vs)| put("title.plays_1h", t, vs.len() as f64));
    values
}

fn number(json: &[u8]) -> f64 {
    serde_json::from_slice::<serde_json::Value>(json)
        .unwrap()
        .as_f64()
        .unwrap()
}

/// The store's history as of `t`, for every (feature, entity) it or the oracle knows.
fn history_as_of(snap: &Snapshot, keys: &BTreeSet<(String, String)>, t: u64) -> Values {
    let mut values = Values::new();
    for (feature, entity) in keys {
        if let Some(json) = snap.as_of(feature, entity, t).unwrap() {
            values.insert((feature.clone(), entity.clone()), number(&json));
        }
    }
    values
}

/// Checks history at each of `times` and online values at the frontier against the oracle.
pub fn check_store(store: &Path, placed: &[Placed], times: &[u64]) {
    let tick = TimePolicy::default().tick_ms;
    let snap = ReadOnlyStore::open(store).unwrap().snapshot().unwrap();
    let frontier = snap
        .frontier_ms()
        .unwrap()
        .expect("the run committed output");
    let last = placed.iter().map(|p| p.time).max().unwrap();
    assert_eq!(
        frontier,
        last + tick,
        "a caught-up run ends one tick past the last event"
    );
    let mut keys: BTreeSet<_> = snap
        .history()
        .unwrap()
        .into_iter()
        .map(|r| (r.feature, r.entity_id))
        .collect();
    for &t in times {
        let want = expected(placed, t);
        keys.extend(want.keys().cloned());
        let got = history_as_of(&snap, &keys, t);
        assert_eq!(got, want, "history as of {t} differs from the oracle");
    }
    let online: Values = snap
        .online_all()
        .unwrap()
        .into_iter()
        .map(|(_, id, row)| ((row.feature, id), number(&row.value_json)))
        .collect();
    assert_eq!(
        online,
        expected(placed, frontier - tick),
        "online values differ from the oracle"
    );
    assert_eq!(snap.meta_u64("as_of_ms").unwrap(), Some(frontier - tick));
}

/// `n` seeded tick boundaries between the first event and the end, plus `extra`.
pub fn sample_times(placed: &[Placed], n: usize, seed: u64, extra: &[u64]) -> Vec<u64> {
    let tick = TimePolicy::default().tick_ms;
    let first = placed.iter().map(|p| p.time).min().unwrap() - tick;
    let last = placed.iter().map(|p| p.time).max().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut times: Vec<u64> = (0..n)
        .map(|_| rng.random_range(first / tick..=last / tick) * tick)
        .collect();
    times.extend_from_slice(extra);
    times.push(last);
    times
}

fn generated(seed: u64, events: usize) -> (GenConfig, Vec<Record>, Vec<Record>) {
    // 150 viewers for ~2 h of event time: long enough for every 1 h window to expire.
    let config = GenConfig {
        viewers: 150,
        titles: 40,
        seed,
        ..GenConfig::default()
    };
    let (titles, records) = common::workload(config.clone(), events);
    (config, titles, records)
}

#[test]
fn the_store_equals_a_plain_recomputation_for_1_and_2_workers() {
    let (config, titles, events) = generated(7, 90_000);
    // Six partitions keep each well under the mock cluster's 5 MiB.
    let log = common::log(6);
    common::produce_workload(&log.brokers, &titles, &events, config.start_ms);
    let placed = place(
        &common::read_back(&log.brokers, common::EVENTS),
        TimePolicy::default(),
    );
    assert_eq!(placed.len(), events.len());
    let hour_later = config.start_ms + HOUR;
    let extra: Vec<u64> = (0..20).map(|i| hour_later - 10_000 + i * 1000).collect();
    let times = sample_times(&placed, 150, 7, &extra);
    for workers in [1, 2] {
        let store = tempfile::tempdir().unwrap();
        let summary = common::run_caught_up(&log.brokers, store.path(), workers);
        assert_eq!(summary.counters.events, events.len() as u64);
        assert_eq!(
            summary.counters.late_events, 0,
            "the default workload is within lateness"
        );
        assert_eq!(summary.counters.titles, titles.len() as u64);
        check_store(store.path(), &placed, &times);
    }
}

fn record(viewer: &str, ts_ms: u64, body: &str) -> Record {
    let json = format!(r#"{{"event_id":"x","user_id":"{viewer}","ts":{ts_ms},{body}}}"#);
    Record {
        key: viewer.to_string(),
        json,
        ts_ms,
    }
}

/// Hand-placed events at tick edges, a 24 h expiry, and events beyond the lateness.
#[test]
fn windows_and_late_events_at_the_edges() {
    let s = 1_767_225_600_000; // a tick boundary
    let play = |title: &str| format!(r#""type":"play_start","title_id":"{title}""#);
    let beat = r#""type":"heartbeat","title_id":"a","position_s":0,"interval_s":10"#;
    let events = vec![
        record("u1", s, &play("a")),
        record("u1", s + 999, &play("a")),
        record("u2", s + 1000, &play("a")),
        record("u1", s + 500, beat),
        record("u2", s + HOUR - 1, beat),
        record("u2", s + HOUR, beat),
        record("u1", s + HOUR + 1000, &play("b")),
        // 40 s behind the newest: beyond the 5 s lateness, so it lands at the frontier.
        record("u3", s + HOUR - 40_000, &play("b")),
        record("u1", s + DAY - 1, &play("a")),
        record("u1", s + DAY + 1500, beat),
        record("u2", s + DAY + 2 * HOUR, &play("c")),
    ];
    let log = common::log(1);
    common::produce(&log.brokers, common::EVENTS, &events);
    let placed = place(
        &common::read_back(&log.brokers, common::EVENTS),
        TimePolicy::default(),
    );
    let mut times = Vec::new();
    for edge in [
        s,
        s + HOUR,
        s + HOUR + 1000,
        s + DAY,
        s + DAY + HOUR,
        s + DAY + 2 * HOUR,
    ] {
        times.extend((0..5).map(|i| edge - 2000 + i * 1000));
    }
    let store = tempfile::tempdir().unwrap();
    let summary = common::run_caught_up(&log.brokers, store.path(), 1);
    assert_eq!(summary.counters.late_events, 1);
    check_store(store.path(), &placed, &times);
}
