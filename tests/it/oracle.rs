//! The oracle: a plain recomputation of every feature "as of T" from the raw log, compared
//! with the store's history at many tick boundaries T, and with its online values at the
//! final frontier, for 1 and 2 workers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rewind::TimePolicy;
use std::sync::Arc;

use rewind::decode::{
    ConsentRecord, ErasureRecord, decode_consent, decode_erasure, decode_event, decode_title,
};
use rewind::engine::{self, ConsentConfig, Shared};
use rewind::workload::{
    ConsentShape, ConsentStream, ErasureShape, ErasureStream, GenConfig, Generator, Record,
};
use rewind_dataflows::window::RETENTION_MS;
use rewind_dataflows::{ConsentRules, Purpose};
use rewind_dataflows::{Event, EventKind, F64, Title, Value};
use rewind_state::{ReadOnlyStore, Snapshot};

use crate::common::{self, CONSENT, ERASURE, Raw};

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

/// An event and the logical time the time rule gives it: `t0`, the first tick boundary
/// after `ts`, unless that is below its partition's frontier (`max ts seen - lateness`,
/// floored to a tick, plus a tick), where a late event lands instead.
pub struct Placed<T> {
    pub record: T,
    pub time: u64,
}

/// The time rule, restated plainly: per partition, in log order.
struct Clocks(HashMap<u32, u64>);

impl Clocks {
    fn place(&mut self, partition: u32, ts: u64) -> u64 {
        let TimePolicy {
            tick_ms: tick,
            lateness_ms,
        } = TimePolicy::default();
        let t0 = (ts / tick + 1) * tick;
        let frontier = self
            .0
            .get(&partition)
            .map_or(0, |m| m.saturating_sub(lateness_ms) / tick * tick + tick);
        let newest = self.0.entry(partition).or_insert(ts);
        *newest = (*newest).max(ts);
        t0.max(frontier)
    }
}

/// Every decodable event of the log, placed.
pub fn place(raw: &[Raw]) -> Vec<Placed<Event>> {
    let door = common::door();
    let mut clocks = Clocks(HashMap::new());
    let mut placed = Vec::new();
    for record in raw {
        let Ok(event) = decode_event(record.payload.as_deref(), &door) else {
            continue;
        };
        placed.push(Placed {
            time: clocks.place(record.partition, event.ts_ms),
            record: event,
        });
    }
    placed
}

/// Every title record of the log, placed at its Kafka timestamp by the same rule; a later
/// record of a title never takes effect before an earlier one.
pub fn place_titles(raw: &[Raw]) -> Vec<Placed<Title>> {
    let mut clocks = Clocks(HashMap::new());
    let mut latest: HashMap<rewind_dataflows::event::TitleId, u64> = HashMap::new();
    let mut placed = Vec::new();
    for record in raw {
        let Ok(title) = decode_title(record.payload.as_deref()) else {
            continue;
        };
        let ts = record.timestamp_ms.expect("the tests stamp every title") as u64;
        let previous = latest.get(&title.title_id).copied().unwrap_or(0);
        let time = clocks.place(record.partition, ts).max(previous);
        latest.insert(title.title_id.clone(), time);
        placed.push(Placed {
            time,
            record: title,
        });
    }
    placed
}

/// The log as the oracle sees it.
pub struct World {
    pub events: Vec<Placed<Event>>,
    pub titles: Vec<Placed<Title>>,
}

impl World {
    pub fn read(brokers: &str) -> World {
        let events = place(&common::read_back(brokers, common::EVENTS));
        let titles = place_titles(&common::read_back(brokers, common::TITLES));
        World { events, titles }
    }

    /// Each title's metadata in force at `t`: its last record placed at or before `t`.
    fn titles_at(&self, t: u64) -> HashMap<&str, &Title> {
        let mut current = HashMap::new();
        for p in self.titles.iter().filter(|p| p.time <= t) {
            current.insert(&*p.record.title_id, &p.record);
        }
        current
    }
}

pub type Values = BTreeMap<(String, String), String>;

#[derive(Default)]
struct Tally {
    watch_1h: BTreeMap<String, u64>,
    completes_1h: BTreeMap<String, i64>,
    plays_24h: BTreeMap<String, i64>,
    searches_1h: BTreeMap<String, i64>,
    genre_ms: BTreeMap<String, BTreeMap<String, u64>>,
    last_play: BTreeMap<String, BTreeMap<String, u64>>,
    lifetime: BTreeMap<String, u64>,
    title_viewers: BTreeMap<String, BTreeSet<String>>,
    clicks: BTreeMap<String, i64>,
    impressions: BTreeMap<String, i64>,
}

/// Every feature's non-default value as of tick `t`, computed from scratch.
pub fn expected(world: &World, t: u64) -> Values {
    let within = |time: u64, window: u64| time <= t && t < time + window;
    let titles = world.titles_at(t);
    let mut tally = Tally::default();
    for Placed {
        record: event,
        time,
    } in &world.events
    {
        let viewer = event.viewer.to_string();
        let bump = |map: &mut BTreeMap<String, i64>, key: &str| {
            *map.entry(key.to_string()).or_default() += 1
        };
        match &event.kind {
            EventKind::Heartbeat {
                title, interval_ms, ..
            } => {
                if within(*time, HOUR) {
                    *tally.watch_1h.entry(viewer.clone()).or_default() += interval_ms;
                }
                if within(*time, RETENTION_MS) {
                    *tally.lifetime.entry(viewer.clone()).or_default() += interval_ms;
                }
                if let (true, Some(meta)) = (within(*time, 90 * DAY), titles.get(&**title)) {
                    for genre in &meta.genres {
                        let genres = tally.genre_ms.entry(viewer.clone()).or_default();
                        *genres.entry(genre.clone()).or_default() += interval_ms;
                    }
                }
            }
            EventKind::Complete { .. } if within(*time, HOUR) => {
                bump(&mut tally.completes_1h, &viewer)
            }
            EventKind::Search { .. } if within(*time, HOUR) => {
                bump(&mut tally.searches_1h, &viewer)
            }
            EventKind::PlayStart { title, .. } => {
                if within(*time, DAY) {
                    bump(&mut tally.plays_24h, &viewer);
                }
                if within(*time, HOUR) {
                    tally
                        .title_viewers
                        .entry(title.to_string())
                        .or_default()
                        .insert(viewer.clone());
                }
                if within(*time, RETENTION_MS) {
                    let last = tally
                        .last_play
                        .entry(viewer)
                        .or_default()
                        .entry(title.to_string())
                        .or_default();
                    *last = (*last).max(event.ts_ms);
                }
            }
            EventKind::Click { title, .. } if within(*time, DAY) => bump(&mut tally.clicks, title),
            EventKind::Impression { title, .. } if within(*time, DAY) => {
                bump(&mut tally.impressions, title)
            }
            _ => {}
        }
    }
    render(tally)
}

fn render(tally: Tally) -> Values {
    let mut values = Values::new();
    let mut put = |feature: &str, entity: &str, value: Option<Value>| {
        if let Some(value) = value {
            values.insert((feature.to_string(), entity.to_string()), value.to_json());
        }
    };
    let seconds = |ms: u64| (ms > 0).then(|| Value::seconds_from_ms(ms as i64));
    let count = |n: i64| (n > 0).then_some(Value::Int(n));
    for (v, ms) in &tally.watch_1h {
        put("viewer.watch_seconds_1h", v, seconds(*ms));
    }
    for (v, ms) in &tally.lifetime {
        put("viewer.lifetime_watch_s", v, seconds(*ms));
    }
    for (v, n) in &tally.completes_1h {
        put("viewer.completes_1h", v, count(*n));
    }
    for (v, n) in &tally.plays_24h {
        put("viewer.plays_24h", v, count(*n));
    }
    for (v, n) in &tally.searches_1h {
        put("viewer.searches_1h", v, count(*n));
    }
    for (v, genres) in &tally.genre_ms {
        let sum: u64 = genres.values().sum();
        let shares = genres
            .iter()
            .map(|(g, ms)| (g.as_str(), F64::new(*ms as f64 / sum as f64)));
        put(
            "viewer.genre_share_90d",
            v,
            (sum > 0).then(|| Value::map(shares)),
        );
    }
    for (v, last) in &tally.last_play {
        let mut titles: Vec<(&String, &u64)> = last.iter().collect();
        titles.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let list = titles.into_iter().take(10).map(|(t, _)| t.as_str());
        put("viewer.last_titles_10", v, Some(Value::list(list)));
    }
    for (t, viewers) in &tally.title_viewers {
        put("title.plays_1h", t, count(viewers.len() as i64));
    }
    for (t, shown) in &tally.impressions {
        let clicked = tally.clicks.get(t).copied().unwrap_or(0);
        put(
            "title.ctr_24h",
            t,
            Some(Value::Float(F64::new(clicked as f64 / *shown as f64))),
        );
    }
    values
}

fn json(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The store's history as of `t`, for every (feature, entity) it or the oracle knows.
fn history_as_of(snap: &Snapshot, keys: &BTreeSet<(String, String)>, t: u64) -> Values {
    let mut values = Values::new();
    for (feature, entity) in keys {
        if let Some(bytes) = snap.as_of(feature, entity, t).unwrap() {
            values.insert((feature.clone(), entity.clone()), json(&bytes));
        }
    }
    values
}

/// Checks history at each of `times` and online values at the frontier against the oracle.
pub fn check_store(store: &Path, world: &World, times: &[u64]) {
    let tick = TimePolicy::default().tick_ms;
    let snap = ReadOnlyStore::open(store).unwrap().snapshot().unwrap();
    let frontier = snap
        .frontier_ms()
        .unwrap()
        .expect("the run committed output");
    let last = world.events.iter().map(|p| p.time).max().unwrap();
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
    // Ticks more than the retention (365 days) before the frontier were purged: refused.
    let horizon = snap.retained_from_ms().unwrap();
    for &t in times {
        assert!(t < frontier, "tick {t} is not final in the store");
        if t < horizon {
            let refused = snap.as_of("viewer.plays_24h", "any", t).unwrap_err();
            assert!(refused.to_string().contains("purged"), "{refused}");
            continue;
        }
        let want = expected(world, t);
        keys.extend(want.keys().cloned());
        let got = history_as_of(&snap, &keys, t);
        assert_eq!(got, want, "history as of {t} differs from the oracle");
    }
    let online: Values = snap
        .online_all()
        .unwrap()
        .into_iter()
        .map(|(_, id, row)| ((row.feature, id), json(&row.value_json)))
        .collect();
    assert_eq!(
        online,
        expected(world, frontier - tick),
        "online values differ from the oracle"
    );
    assert_eq!(snap.meta_u64("as_of_ms").unwrap(), Some(frontier - tick));
}

/// `n` seeded tick boundaries between the first event and the end, plus `extra`.
pub fn sample_times(world: &World, n: usize, seed: u64, extra: &[u64]) -> Vec<u64> {
    let tick = TimePolicy::default().tick_ms;
    let first = world.events.iter().map(|p| p.time).min().unwrap() - tick;
    let last = world.events.iter().map(|p| p.time).max().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut times: Vec<u64> = (0..n)
        .map(|_| rng.random_range(first / tick..=last / tick) * tick)
        .collect();
    times.extend_from_slice(extra);
    times.push(last);
    times
}

/// Produces a workload, runs it with 1 and 2 workers, and checks both stores.
fn check_workload(config: GenConfig, events: usize, retitle_at: Option<u64>) {
    let (titles, records) = common::workload(config.clone(), events);
    // Six partitions keep each well under the mock cluster's 5 MiB.
    let log = common::log(6);
    common::produce_workload(&log.brokers, &titles, &records, config.start_ms);
    if let Some(at) = retitle_at {
        // The same titles with other genres, taking effect mid-stream.
        let other = Generator::new(GenConfig {
            seed: config.seed + 1000,
            ..config.clone()
        });
        let changed: Vec<Record> = other
            .title_records()
            .into_iter()
            .map(|t| Record { ts_ms: at, ..t })
            .collect();
        common::produce(&log.brokers, common::TITLES, &changed);
    }
    let world = World::read(&log.brokers);
    assert_eq!(world.events.len(), records.len());
    let hour_later = config.start_ms + HOUR;
    let mut extra: Vec<u64> = (0..20).map(|i| hour_later - 10_000 + i * 1000).collect();
    if let Some(at) = retitle_at {
        extra.extend((0..5).map(|i| at / 1000 * 1000 - 2000 + i * 1000));
    }
    let times = sample_times(&world, 80, config.seed, &extra);
    for workers in [1, 2] {
        let store = tempfile::tempdir().unwrap();
        let summary = common::run_caught_up(&log.brokers, store.path(), workers);
        assert_eq!(summary.counters.events, records.len() as u64);
        let late = if config.late > 0.0 {
            summary.counters.late_events > 0
        } else {
            summary.counters.late_events == 0
        };
        assert!(
            late,
            "late events: {} with late fraction {}",
            summary.counters.late_events, config.late
        );
        check_store(store.path(), &world, &times);
    }
}

fn workload(seed: u64) -> GenConfig {
    // 150 viewers for over an hour of event time: long enough for 1 h windows to expire.
    GenConfig {
        viewers: 150,
        titles: 40,
        seed,
        ..GenConfig::default()
    }
}

#[test]
fn a_default_workload_equals_the_oracle_for_1_and_2_workers() {
    check_workload(workload(7), 60_000, None);
}

#[test]
fn title_metadata_changing_mid_stream_equals_the_oracle() {
    let config = workload(8);
    let at = config.start_ms + 40 * 60_000 + 500;
    check_workload(config, 60_000, Some(at));
}

#[test]
fn late_events_beyond_the_lateness_equal_the_oracle() {
    check_workload(
        GenConfig {
            late: 0.01,
            ..workload(9)
        },
        60_000,
        None,
    );
}

fn record(viewer: &str, ts_ms: u64, body: &str) -> Record {
    let json = format!(r#"{{"event_id":"x","user_id":"{viewer}","ts":{ts_ms},{body}}}"#);
    Record {
        key: viewer.to_string(),
        json,
        ts_ms,
        due_ms: ts_ms,
    }
}

fn title(id: &str, genres: &str, ts_ms: u64) -> Record {
    let json = format!(r#"{{"title_id":"{id}","genres":[{genres}],"kind":"movie"}}"#);
    Record {
        key: id.to_string(),
        json,
        ts_ms,
        due_ms: ts_ms,
    }
}

/// Hand-placed events at tick edges, the 24 h, 90 d and retention expiries, and events
/// beyond the lateness.
#[test]
fn windows_and_late_events_at_the_edges() {
    let s = 1_767_225_600_000; // a tick boundary
    let play = |title: &str| format!(r#""type":"play_start","title_id":"{title}""#);
    let beat = |title: &str| {
        format!(r#""type":"heartbeat","title_id":"{title}","position_s":0,"interval_s":10"#)
    };
    let events = vec![
        record("u1", s, &play("a")),
        record("u1", s + 999, &play("a")),
        record("u2", s + 1000, &play("a")),
        record("u1", s + 500, &beat("a")),
        record("u1", s + 700, &beat("b")),
        record("u2", s + HOUR - 1, &beat("a")),
        record("u2", s + HOUR, &beat("b")),
        record("u1", s + HOUR + 1000, &play("b")),
        record(
            "u1",
            s + HOUR + 1000,
            r#""type":"impression","title_id":"a","row":"r","rank":1"#,
        ),
        record("u2", s + HOUR + 1500, r#""type":"click","title_id":"a""#),
        record("u2", s + HOUR + 1600, r#""type":"click","title_id":"b""#),
        // 40 s behind the newest: beyond the 5 s lateness, so it lands at the frontier.
        record("u3", s + HOUR - 40_000, &play("b")),
        record("u1", s + DAY - 1, &play("a")),
        record("u1", s + DAY + 1500, &beat("a")),
        record("u2", s + DAY + 2 * HOUR, &play("c")),
        record("u1", s + 91 * DAY, &beat("b")),
        record("u2", s + 366 * DAY, r#""type":"search","query":"q""#),
    ];
    let titles = vec![
        title("a", r#""drama","comedy""#, s - 60_000),
        title("b", r#""drama""#, s - 60_000),
        title("b", r#""horror""#, s + HOUR + 500),
    ];
    // The log spans 366 days, one more than the retention: the store keeps the last 365 days
    // of history only. The edges of the first days are checked on a log that ends there.
    let first_days = events.iter().position(|e| e.ts_ms > s + 2 * DAY).unwrap();
    let logs = [&events[..first_days], &events[..]].map(|events| {
        let log = common::log(1);
        common::produce(&log.brokers, common::TITLES, &titles);
        common::produce(&log.brokers, common::EVENTS, events);
        log
    });
    for log in &logs {
        check_edges(log, s);
    }
}

fn check_edges(log: &common::Log, s: u64) {
    let world = World::read(&log.brokers);
    let mut times = Vec::new();
    let edges = [
        s,
        s + HOUR,
        s + HOUR + 1000,
        s + DAY,
        s + DAY + HOUR,
        s + DAY + 2 * HOUR,
        s + 90 * DAY,
        s + 91 * DAY,
        s + 365 * DAY,
        s + 366 * DAY,
    ];
    for edge in edges {
        times.extend((0..5).map(|i| edge - 2000 + i * 1000));
    }
    // Only ticks the store has completed: the last event's tick is the last.
    let last = world.events.iter().map(|p| p.time).max().unwrap();
    times.retain(|t| *t <= last);
    for workers in [1, 2] {
        let store = tempfile::tempdir().unwrap();
        let summary = common::run_caught_up(&log.brokers, store.path(), workers);
        assert_eq!(summary.counters.late_events, 1);
        check_store(store.path(), &world, &times);
    }
}

/// Consent as the oracle sees it: every decodable consent record, at its own tick (a finished
/// log's consent is read before time moves, so none is late), and the rules it is read under.
pub struct ConsentWorld {
    pub records: Vec<Placed<ConsentRecord>>,
    pub purposes: Vec<Purpose>,
    pub max_age_ms: u64,
}

impl ConsentWorld {
    pub fn read(brokers: &str, purposes: &[Purpose], max_age_ms: u64) -> ConsentWorld {
        let door = common::door();
        let tick = TimePolicy::default().tick_ms;
        let mut records = Vec::new();
        for raw in common::read_back(brokers, CONSENT) {
            let payload = raw.payload.as_deref();
            let Ok(record) = decode_consent(payload, &door, &Purpose::BUILT_IN) else {
                continue;
            };
            records.push(Placed {
                time: (record.ts_ms / tick + 1) * tick,
                record,
            });
        }
        ConsentWorld {
            records,
            purposes: purposes.to_vec(),
            max_age_ms,
        }
    }

    /// The rule, plainly: as of `t`, a (viewer, purpose) consents when the latest record in
    /// force (placed at or before `t`, less than the max age before it), by (tick, ts, a
    /// revocation after a grant), is a grant.
    fn consenting_at(&self, t: u64) -> BTreeSet<(String, Purpose)> {
        let mut latest: BTreeMap<(String, Purpose), (u64, u64, bool)> = BTreeMap::new();
        let in_force = self.records.iter();
        for p in in_force.filter(|p| p.time <= t && t < p.time + self.max_age_ms) {
            let r = &p.record;
            let order = (p.time, r.ts_ms, !r.granted);
            let entry = latest
                .entry((r.viewer.to_string(), r.purpose))
                .or_insert(order);
            *entry = (*entry).max(order);
        }
        let granted = latest.into_iter().filter(|(_, (_, _, revoked))| !revoked);
        granted.map(|(key, _)| key).collect()
    }
}

/// The oracle's values as of `t` with consent: a viewer feature keeps a viewer's value only
/// while the viewer consents to its gated purposes; a title feature counts only the events
/// of viewers consenting then.
pub fn expected_with_consent(world: &World, consent: &ConsentWorld, t: u64) -> Values {
    let consenting = consent.consenting_at(t);
    // Both title features serve personalization and analytics: one rule fits both.
    let both = [Purpose::Personalization, Purpose::Analytics];
    let gated = |e: &Placed<Event>| {
        let viewer = e.record.viewer.to_string();
        both.iter()
            .filter(|p| consent.purposes.contains(p))
            .all(|p| consenting.contains(&(viewer.clone(), *p)))
    };
    // Title features: from the consenting viewers' events alone (both serve the same gated
    // purposes, so one filter fits both).
    let titles_world = World {
        events: world.events.iter().filter(|e| gated(e)).map(copy).collect(),
        titles: world.titles.iter().map(copy).collect(),
    };
    let mut values = expected(world, t);
    let library = rewind_dataflows::library();
    let gated_of = |feature: &str| -> Vec<Purpose> {
        let feature = library.iter().find(|f| f.name == feature).unwrap();
        let gated = feature
            .purposes
            .iter()
            .filter(|p| consent.purposes.contains(p));
        gated.copied().collect()
    };
    values.retain(|(feature, entity), _| {
        let gated = gated_of(feature);
        !feature.starts_with("title.")
            && gated
                .iter()
                .all(|p| consenting.contains(&(entity.clone(), *p)))
    });
    let titles = expected(&titles_world, t);
    values.extend(
        titles
            .into_iter()
            .filter(|((f, _), _)| f.starts_with("title.")),
    );
    // The consent in force, as the store records it for reads: per viewer, the gated
    // purposes consented, by name, ascending.
    let mut consented: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (viewer, purpose) in consenting
        .iter()
        .filter(|(_, p)| consent.purposes.contains(p))
    {
        consented
            .entry(viewer.clone())
            .or_default()
            .push(purpose.as_str());
    }
    for (viewer, mut names) in consented {
        names.sort_unstable();
        let feature = rewind_dataflows::consent::CONSENT_FEATURE.to_string();
        values.insert((feature, viewer), serde_json::to_string(&names).unwrap());
    }
    values
}

fn copy<T: Clone>(p: &Placed<T>) -> Placed<T> {
    Placed {
        record: p.record.clone(),
        time: p.time,
    }
}

/// Checks history at `times` and online values at the frontier against the consent oracle.
fn check_consent_store(store: &Path, world: &World, consent: &ConsentWorld, times: &[u64]) {
    let tick = TimePolicy::default().tick_ms;
    let snap = ReadOnlyStore::open(store).unwrap().snapshot().unwrap();
    let frontier = snap.frontier_ms().unwrap().expect("output committed");
    let mut keys: BTreeSet<_> = snap
        .history()
        .unwrap()
        .into_iter()
        .map(|r| (r.feature, r.entity_id))
        .collect();
    for &t in times.iter().filter(|t| **t < frontier) {
        let want = expected_with_consent(world, consent, t);
        keys.extend(want.keys().cloned());
        let got = history_as_of(&snap, &keys, t);
        assert_eq!(
            got, want,
            "history as of {t} differs from the consent oracle"
        );
    }
    let online: Values = snap
        .online_all()
        .unwrap()
        .into_iter()
        .map(|(_, id, row)| ((row.feature, id), json(&row.value_json)))
        .collect();
    let want = expected_with_consent(world, consent, frontier - tick);
    assert_eq!(online, want, "online values differ from the consent oracle");
}

fn consent_config(max_age_ms: u64) -> ConsentConfig {
    ConsentConfig {
        topic: CONSENT.into(),
        rules: ConsentRules {
            purposes: vec![Purpose::Personalization, Purpose::Analytics],
            max_age_ms,
        },
    }
}

/// Generated consent over a generated workload: grants, revocations, re-grants and renewals
/// minutes apart, a max age short enough to expire grants mid-stream, and records reordered
/// within the lateness, for 1 and 2 workers.
#[test]
fn consent_gating_equals_the_oracle_for_1_and_2_workers() {
    let config = workload(21);
    // Shorter than most gaps between records: grants expire mid-stream, and renewals too.
    let max_age_ms = 6 * 60_000;
    let (titles, records) = common::workload(config.clone(), 60_000);
    let shape = ConsentShape {
        mean_gap_ms: 8 * 60_000,
        ..ConsentShape::default()
    };
    let last_due = records.last().unwrap().due_ms;
    let consent: Vec<Record> = ConsentStream::new(&config, shape)
        .take_while(|c| c.due_ms <= last_due)
        .collect();
    // Six partitions keep each well under the mock cluster's 5 MiB.
    let log = common::log(6);
    log.create_topic(CONSENT, 2);
    common::produce_workload(&log.brokers, &titles, &records, config.start_ms);
    common::produce(&log.brokers, CONSENT, &consent);
    let world = World::read(&log.brokers);
    let purposes = [Purpose::Personalization, Purpose::Analytics];
    let consent_world = ConsentWorld::read(&log.brokers, &purposes, max_age_ms);
    assert_eq!(consent_world.records.len(), consent.len());
    let revoked = consent.iter().filter(|c| c.json.contains("false")).count();
    assert!(revoked > 100, "{revoked} revocations");
    // Ticks right where grants placed at the start expire: exactly the max age later.
    let first = consent_world.records.iter().map(|p| p.time).min().unwrap();
    let extra: Vec<u64> = (0..4)
        .map(|i| first + max_age_ms - 2000 + i * 1000)
        .collect();
    let times = sample_times(&world, 40, config.seed, &extra);
    for workers in [1, 2] {
        let store = tempfile::tempdir().unwrap();
        let mut run = common::config(&log.brokers, store.path(), workers);
        run.consent = Some(consent_config(max_age_ms));
        let summary = engine::run(run, Arc::new(Shared::default())).unwrap();
        assert_eq!(summary.counters.consent_records, consent.len() as u64);
        check_consent_store(store.path(), &world, &consent_world, &times);
    }
}

/// Erasure as the oracle sees it: every decodable erasure record, taking effect as it is
/// read. A run reads the erasure topic to its end before time moves, so an erasure lands at
/// the start (time 0), or, for a record new to a store built before (at or past the store's
/// next offset `resume.0`), at that store's frontier `resume.1`.
pub struct ErasureWorld {
    pub erasures: Vec<Placed<ErasureRecord>>,
}

impl ErasureWorld {
    pub fn read(brokers: &str, resume: Option<(u64, u64)>) -> ErasureWorld {
        let door = common::door();
        let mut erasures = Vec::new();
        for raw in common::read_back(brokers, ERASURE) {
            let Ok(record) = decode_erasure(raw.payload.as_deref(), &door) else {
                continue;
            };
            let time = resume.map_or(
                0,
                |(next, frontier)| {
                    if raw.offset >= next { frontier } else { 0 }
                },
            );
            erasures.push(Placed { time, record });
        }
        ErasureWorld { erasures }
    }

    /// Per viewer, the largest erasure `ts` of the erasures placed at or before `t`.
    fn erased_at(&self, t: u64) -> HashMap<String, u64> {
        let mut erased: HashMap<String, u64> = HashMap::new();
        for p in self.erasures.iter().filter(|p| p.time <= t) {
            let e = erased.entry(p.record.viewer.to_string()).or_default();
            *e = (*e).max(p.record.ts_ms);
        }
        erased
    }

    /// Per erased viewer, the tick of the erasure the store keeps (the latest by (ts, tick)):
    /// the store holds none of the viewer's rows from before it.
    fn kept_ticks(&self) -> HashMap<String, u64> {
        let mut kept: HashMap<String, (u64, u64)> = HashMap::new();
        for p in &self.erasures {
            let k = kept.entry(p.record.viewer.to_string()).or_default();
            *k = (*k).max((p.record.ts_ms, p.time));
        }
        kept.into_iter().map(|(v, (_, tick))| (v, tick)).collect()
    }
}

/// The oracle's values as of `t` with erasures (and consent, when given), as the store holds
/// them once the run is over: a viewer feature computed without the events of viewers erased
/// by `t` from before their erasure, absent before the tick of a viewer's erasure (the store
/// deleted those rows), and title features from every event.
pub fn expected_with_erasure(
    world: &World,
    erasures: &ErasureWorld,
    consent: Option<&ConsentWorld>,
    t: u64,
) -> Values {
    let erased = erasures.erased_at(t);
    let kept = |e: &&Placed<Event>| {
        let viewer = e.record.viewer.to_string();
        erased
            .get(&viewer)
            .is_none_or(|from| e.record.ts_ms >= *from)
    };
    let viewers_world = World {
        events: world.events.iter().filter(kept).map(copy).collect(),
        titles: world.titles.iter().map(copy).collect(),
    };
    let compute = |world: &World, consent: Option<&ConsentWorld>| match consent {
        Some(consent) => expected_with_consent(world, consent, t),
        None => expected(world, t),
    };
    // The viewers' values, and the consent in force recorded for reads, forget an erased
    // viewer's consent records from before the erasure as they forget the events; title
    // features count under the consent in force then, as they keep their aggregates.
    let kept_consent = consent.map(|consent| ConsentWorld {
        records: consent
            .records
            .iter()
            .filter(|p| {
                let viewer = p.record.viewer.to_string();
                erased
                    .get(&viewer)
                    .is_none_or(|from| p.record.ts_ms >= *from)
            })
            .map(copy)
            .collect(),
        purposes: consent.purposes.clone(),
        max_age_ms: consent.max_age_ms,
    });
    let deleted = erasures.kept_ticks();
    let mut values = compute(&viewers_world, kept_consent.as_ref());
    values.retain(|(feature, entity), _| {
        !feature.starts_with("title.") && deleted.get(entity).is_none_or(|tick| t >= *tick)
    });
    let titles = compute(world, consent);
    values.extend(
        titles
            .into_iter()
            .filter(|((f, _), _)| f.starts_with("title.")),
    );
    values
}

/// Checks history at `times` and online values at the frontier against the erasure oracle,
/// and that the store applied each erased viewer's erasure.
fn check_erasure_store(
    store: &Path,
    world: &World,
    erasures: &ErasureWorld,
    consent: Option<&ConsentWorld>,
    times: &[u64],
) {
    let tick = TimePolicy::default().tick_ms;
    let snap = ReadOnlyStore::open(store).unwrap().snapshot().unwrap();
    let frontier = snap.frontier_ms().unwrap().expect("output committed");
    let mut keys: BTreeSet<_> = snap
        .history()
        .unwrap()
        .into_iter()
        .map(|r| (r.feature, r.entity_id))
        .collect();
    for &t in times.iter().filter(|t| **t < frontier) {
        let want = expected_with_erasure(world, erasures, consent, t);
        keys.extend(want.keys().cloned());
        let got = history_as_of(&snap, &keys, t);
        assert_eq!(
            got, want,
            "history as of {t} differs from the erasure oracle"
        );
    }
    // No row of an erased viewer before the erasure the store keeps.
    let kept = erasures.kept_ticks();
    for row in snap.history().unwrap() {
        if let Some(tick) = kept.get(&row.entity_id) {
            assert!(
                row.valid_from_ms >= *tick,
                "{} of {} at {} survived its erasure at {tick}",
                row.feature,
                row.entity_id,
                row.valid_from_ms
            );
        }
    }
    let online: Values = snap
        .online_all()
        .unwrap()
        .into_iter()
        .map(|(_, id, row)| ((row.feature, id), json(&row.value_json)))
        .collect();
    let want = expected_with_erasure(world, erasures, consent, frontier - tick);
    assert_eq!(online, want, "online values differ from the erasure oracle");
    let viewers: BTreeSet<_> = erasures.erasures.iter().map(|p| p.record.viewer).collect();
    assert!(snap.erasures_applied().unwrap() >= viewers.len() as u64);
    let door = common::door();
    for viewer in &viewers {
        let record = snap.erasure(door.erasure_token(viewer)).unwrap();
        assert!(record.is_some(), "no suppression record of {viewer}");
    }
    // Erased and not back since: no byte of the pseudonym is left in the store directory.
    let back: BTreeSet<String> = snap
        .history()
        .unwrap()
        .into_iter()
        .map(|r| r.entity_id)
        .collect();
    for viewer in viewers.iter().map(|v| v.to_string()) {
        if !back.contains(&viewer) {
            let traces = crate::erasure::traces(&viewer);
            let found = crate::erasure::files_holding(store, &traces);
            assert_eq!(found, Vec::<String>::new(), "{viewer}");
        }
    }
}

/// Sample times plus the ticks around every erasure.
fn erasure_times(world: &World, erasures: &ErasureWorld, n: usize, seed: u64) -> Vec<u64> {
    let tick = TimePolicy::default().tick_ms;
    let extra: Vec<u64> = erasures
        .erasures
        .iter()
        .filter(|p| p.time > 0)
        .flat_map(|p| [p.time - tick, p.time, p.time + tick])
        .collect();
    sample_times(world, n, seed, &extra)
}

/// Generated erasures over a generated workload: viewers erased mid-stream who keep sending
/// events after it, some of them stamped before the erasure (the events' disorder) and some
/// beyond the lateness (late events still arriving), for 1 and 2 workers. The store is built
/// in two runs, the second over the longer log, so that erasures in the second delete rows
/// the first committed, and the restart re-reads the erasures the first applied.
#[test]
fn erasure_equals_the_oracle_for_1_and_2_workers() {
    let config = GenConfig {
        late: 0.01,
        ..workload(41)
    };
    let (titles, records) = common::workload(config.clone(), 60_000);
    let last_due = records.last().unwrap().due_ms;
    let shape = ErasureShape {
        mean_gap_ms: 3 * 60_000,
    };
    let erasures: Vec<Record> = ErasureStream::new(&config, shape)
        .take_while(|e| e.due_ms <= last_due)
        .collect();
    let log = common::log(6);
    log.create_topic(ERASURE, 1);
    let (half, due) = (records.len() / 2, records[records.len() / 2].due_ms);
    let split = erasures.iter().position(|e| e.due_ms > due).unwrap();
    common::produce_workload(&log.brokers, &titles, &records[..half], config.start_ms);
    common::produce(&log.brokers, ERASURE, &erasures[..split]);
    let stores = [1, 2].map(|workers| {
        let store = tempfile::tempdir().unwrap();
        let mut first = common::config(&log.brokers, store.path(), workers);
        first.seal = false;
        let summary = engine::run(first, Arc::new(Shared::default())).unwrap();
        (workers, store, summary.frontier_ms)
    });
    // The erasures of the second run are new to the store: they land at its frontier.
    let frontier = stores[0].2;
    assert_eq!(stores[1].2, frontier);
    common::produce(&log.brokers, common::EVENTS, &records[half..]);
    common::produce(&log.brokers, ERASURE, &erasures[split..]);
    let world = World::read(&log.brokers);
    let erasure_world = ErasureWorld::read(&log.brokers, Some((split as u64, frontier)));
    assert!(erasure_world.erasures.len() > 10, "{}", erasures.len());
    let times = erasure_times(&world, &erasure_world, 40, config.seed);
    for (workers, store, _) in stores {
        let summary = common::run_caught_up(&log.brokers, store.path(), workers);
        assert_eq!(summary.counters.erasure_records, erasures.len() as u64);
        let erased = summary.purged.erased;
        assert!(
            erased.history_entries > 0 && erased.online_rows > 0,
            "{erased:?}"
        );
        check_erasure_store(store.path(), &world, &erasure_world, None, &times);
    }
}

/// Erasures beside consent gating: the two filters apply together.
#[test]
fn erasure_with_consent_gating_equals_the_oracle() {
    let config = workload(42);
    let max_age_ms = 20 * 60_000;
    let (titles, records) = common::workload(config.clone(), 40_000);
    let last_due = records.last().unwrap().due_ms;
    let consent: Vec<Record> = ConsentStream::new(&config, ConsentShape::default())
        .take_while(|c| c.due_ms <= last_due)
        .collect();
    let shape = ErasureShape {
        mean_gap_ms: 3 * 60_000,
    };
    let erasures: Vec<Record> = ErasureStream::new(&config, shape)
        .take_while(|e| e.due_ms <= last_due)
        .collect();
    let log = common::log(6);
    log.create_topic(CONSENT, 2);
    log.create_topic(ERASURE, 1);
    common::produce_workload(&log.brokers, &titles, &records, config.start_ms);
    common::produce(&log.brokers, CONSENT, &consent);
    common::produce(&log.brokers, ERASURE, &erasures);
    let world = World::read(&log.brokers);
    let purposes = [Purpose::Personalization, Purpose::Analytics];
    let consent_world = ConsentWorld::read(&log.brokers, &purposes, max_age_ms);
    let erasure_world = ErasureWorld::read(&log.brokers, None);
    let times = erasure_times(&world, &erasure_world, 30, config.seed);
    for workers in [1, 2] {
        let store = tempfile::tempdir().unwrap();
        let mut run = common::config(&log.brokers, store.path(), workers);
        run.consent = Some(consent_config(max_age_ms));
        engine::run(run, Arc::new(Shared::default())).unwrap();
        let consent = Some(&consent_world);
        check_erasure_store(store.path(), &world, &erasure_world, consent, &times);
    }
}

/// Hand-placed erasures, read by a second run over a store the first built (so they land
/// mid-stream, at its frontier): late events from before an erasure still arriving, events
/// after it stamped before it (ignored) and after it (counted), two erasures of one viewer,
/// an erasure of a viewer never seen, and one stamped a day ahead.
#[test]
fn erasures_at_the_edges_equal_the_oracle() {
    let s = 1_767_225_600_000; // a tick boundary
    let play = |title: &str| format!(r#""type":"play_start","title_id":"{title}""#);
    let beat = |title: &str| {
        format!(r#""type":"heartbeat","title_id":"{title}","position_s":0,"interval_s":10"#)
    };
    let mut events = vec![
        record("u1", s + 100, &play("a")),
        record("u1", s + 200, &beat("a")),
        record("u2", s + 300, &play("b")),
        record("u2", s + 400, &beat("b")),
        record("u3", s + 500, &play("a")),
    ];
    // The clock moves on, a second at a time, with a viewer no erasure touches.
    events.extend((1..200).map(|i| record("u9", s + i * 1000, &beat("c"))));
    events.extend([
        // Right after u1's erasure (ts s+10_500): counted.
        record("u1", s + 10_600, &play("a")),
        // Stamped before the erasure, arriving after it, within the lateness: ignored.
        record("u1", s + 10_400, &beat("a")),
        // Beyond the lateness (40 s behind), from before the erasure: late, and ignored.
        record("u1", s + 40_000, &beat("a")),
        record("u1", s + 2_000, &beat("b")),
        // After the erasure: counted.
        record("u1", s + 41_000, &beat("b")),
        // u2: erased twice; what came between the two counts until the second.
        record("u2", s + 60_000, &beat("b")),
        record("u2", s + 90_000, &play("c")),
        record("u2", s + 150_000, &beat("a")),
        // u3 is erased while its only event is late still: it arrives after the erasure.
        record("u3", s + 170_000, &beat("a")),
        record("u3", s + 120_000, &beat("b")),
    ]);
    events.sort_by_key(|e| e.due_ms);
    let erasure = |user: &str, ts_ms: u64| Record {
        key: user.to_string(),
        json: format!(r#"{{"user_id":"{user}","ts":{ts_ms}}}"#),
        ts_ms,
        due_ms: ts_ms,
    };
    let erasures = vec![
        erasure("u1", s + 10_500),
        erasure("u2", s + 70_000),
        erasure("u2", s + 100_000),
        erasure("u3", s + 160_000),
        erasure("never_seen", s + 161_000),
        // Stamped a day ahead: it erases what the viewer sent before it, and drags nothing.
        erasure("never_seen_either", s + DAY),
    ];
    let titles = vec![
        title("a", r#""drama""#, s - 60_000),
        title("b", r#""comedy""#, s - 60_000),
        title("c", r#""horror""#, s - 60_000),
    ];
    let log = common::log(1);
    log.create_topic(ERASURE, 1);
    common::produce(&log.brokers, common::TITLES, &titles);
    // The first run reads the events up to u1's erasure, the second the rest and the erasures.
    let split = events.iter().position(|e| e.ts_ms == s + 10_600).unwrap();
    common::produce(&log.brokers, common::EVENTS, &events[..split]);
    let stores = [1, 2].map(|workers| {
        let store = tempfile::tempdir().unwrap();
        let mut first = common::config(&log.brokers, store.path(), workers);
        first.seal = false;
        let summary = engine::run(first, Arc::new(Shared::default())).unwrap();
        (workers, store, summary.frontier_ms)
    });
    let frontier = stores[0].2;
    assert!(frontier > s && frontier < s + 10_500, "{frontier}");
    common::produce(&log.brokers, common::EVENTS, &events[split..]);
    common::produce(&log.brokers, ERASURE, &erasures);
    let world = World::read(&log.brokers);
    let erasure_world = ErasureWorld::read(&log.brokers, Some((0, frontier)));
    let last = world.events.iter().map(|p| p.time).max().unwrap();
    let times: Vec<u64> = (1..=last / 1000 - s / 1000).map(|i| s + i * 1000).collect();
    for (workers, store, first_frontier) in stores {
        assert_eq!(first_frontier, frontier);
        let summary = common::run_caught_up(&log.brokers, store.path(), workers);
        assert_eq!(summary.counters.erasure_records, erasures.len() as u64);
        assert_eq!(summary.counters.dead_letters, 0);
        check_erasure_store(store.path(), &world, &erasure_world, None, &times);
    }
}
