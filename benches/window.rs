//! Window updates through the feature dataflow: no Kafka, no store, differential alone.
//!
//! - `one_tick`: the cost of one tick, that is, a batch of decoded events inserted at a new
//!   time, the input advanced, and the dataflow stepped until every feature's output for the
//!   tick is complete. Two dataflows: one windowed sum (`viewer.watch_seconds_1h`, an insert
//!   now and a retraction an hour later per heartbeat), and the whole built-in library. Each
//!   measurement starts from a dataflow already holding a few ticks of state.
//! - `replay`: a generated log (`rewind gen --viewers 10000 --titles 2000`, 1M events unless
//!   `REWIND_REPLAY_EVENTS` says otherwise) through the whole library at its natural spread
//!   of 1 s ticks, fed as the engine feeds a replay: 16,384 events per step, time advanced to
//!   the watermark (`max ts - 5 s`), then stepped to completion. Per-tick overheads show here.
//!
//! Run: `cargo bench --bench window`

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use differential_dataflow::input::Input;
use rewind::decode::{decode_event, decode_title};
use rewind::privacy::Pseudonymizer;
use rewind::workload::{GenConfig, Generator};
use rewind_dataflows::window::{floor_tick, visible_at};
use rewind_dataflows::{Event, Feature, Sources, Title, build_all, library};

const PER_TICK: usize = 10_000;
/// The features a measured dataflow computes.
type Library = fn() -> Vec<Feature>;
const TICK_MS: u64 = 100;
const WARM_TICKS: usize = 20;

fn inputs(config: GenConfig, events: usize) -> (Vec<Title>, Vec<Event>) {
    let door = Pseudonymizer::new(b"the benchmark's pseudonym key");
    let generator = Generator::new(config);
    let titles = generator
        .title_records()
        .iter()
        .map(|t| decode_title(Some(t.json.as_bytes())).unwrap())
        .collect();
    let events = generator
        .take(events)
        .map(|r| decode_event(Some(r.json.as_bytes()), &door).unwrap())
        .collect();
    (titles, events)
}

/// Builds the dataflow of `features`, warms it up, then times `iters` ticks.
fn time_ticks(features: Library, iters: u64) -> Duration {
    let config = GenConfig {
        viewers: 100_000,
        titles: 2_000,
        ..GenConfig::default()
    };
    let (titles, events) = inputs(config, PER_TICK * (WARM_TICKS + iters as usize));
    let batches: Vec<Vec<Event>> = events.chunks(PER_TICK).map(<[Event]>::to_vec).collect();
    timely::execute_directly(move |worker| {
        let (mut events, mut titles_in, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (events_in, events) = scope.new_collection::<Event, isize>();
            let (titles_in, titles) = scope.new_collection::<Title, isize>();
            let (probe, _) = build_all(&Sources::new(events, titles), &features()).probe();
            (events_in, titles_in, probe)
        });
        for title in titles {
            titles_in.insert(title);
        }
        let mut elapsed = Duration::ZERO;
        for (i, batch) in batches.into_iter().enumerate() {
            let started = Instant::now();
            for event in batch {
                events.insert(event);
            }
            let next = (i as u64 + 2) * TICK_MS;
            events.advance_to(next);
            titles_in.advance_to(next);
            events.flush();
            titles_in.flush();
            worker.step_while(|| probe.less_than(&next));
            if i >= WARM_TICKS {
                elapsed += started.elapsed();
            }
        }
        // Otherwise the worker would run every pending retraction, up to a year ahead.
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
        elapsed
    })
}

fn watch_seconds_1h() -> Vec<Feature> {
    library()
        .into_iter()
        .filter(|f| f.name == "viewer.watch_seconds_1h")
        .collect()
}

fn one_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_tick");
    group.sample_size(10);
    group.throughput(Throughput::Elements(PER_TICK as u64));
    let dataflows: [(&str, Library); 2] = [
        ("viewer.watch_seconds_1h", watch_seconds_1h),
        ("whole library", library),
    ];
    for (name, features) in dataflows {
        group.bench_function(BenchmarkId::new(name, PER_TICK), |b| {
            b.iter_custom(|iters| time_ticks(features, iters))
        });
    }
    group.finish();
}

/// The replay's tick, lateness and batch: the engine's defaults.
const REPLAY_TICK_MS: u64 = 1000;
const REPLAY_LATENESS_MS: u64 = 5000;
const REPLAY_BATCH: usize = 16_384;

fn replay_events() -> usize {
    std::env::var("REWIND_REPLAY_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000)
}

/// The replayed log, generated and decoded once.
fn replay_log() -> &'static (Vec<Title>, Vec<Event>) {
    static LOG: OnceLock<(Vec<Title>, Vec<Event>)> = OnceLock::new();
    LOG.get_or_init(|| {
        let config = GenConfig {
            viewers: 10_000,
            titles: 2_000,
            ..GenConfig::default()
        };
        inputs(config, replay_events())
    })
}

/// The replayed features: the whole library, or those `REWIND_REPLAY_FEATURES` names
/// (comma-separated), to see what each costs.
fn replayed() -> Vec<Feature> {
    let only = std::env::var("REWIND_REPLAY_FEATURES").unwrap_or_default();
    let names: Vec<&str> = only.split(',').filter(|n| !n.is_empty()).collect();
    let all = library().into_iter();
    all.filter(|f| names.is_empty() || names.contains(&f.name))
        .collect()
}

/// Replays the whole log through the features, as the engine would; returns the wall time.
fn time_replay() -> Duration {
    let (titles, log) = replay_log();
    timely::execute_directly(move |worker| {
        let started = Instant::now();
        let (mut events, mut titles_in, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (events_in, events) = scope.new_collection::<Event, isize>();
            let (titles_in, titles) = scope.new_collection::<Title, isize>();
            let (probe, _) = build_all(&Sources::new(events, titles), &replayed()).probe();
            (events_in, titles_in, probe)
        });
        for title in titles {
            titles_in.insert(title.clone());
        }
        let mut max_ts = 0;
        for batch in log.chunks(REPLAY_BATCH) {
            for event in batch {
                max_ts = max_ts.max(event.ts_ms);
                // Late events land at the current frontier, as the time policy places them.
                let time = visible_at(event.ts_ms, REPLAY_TICK_MS).max(*events.time());
                events.update_at(event.clone(), time, 1);
            }
            let watermark = max_ts.saturating_sub(REPLAY_LATENESS_MS);
            let frontier = floor_tick(watermark, REPLAY_TICK_MS) + REPLAY_TICK_MS;
            if frontier > *events.time() {
                events.advance_to(frontier);
                titles_in.advance_to(frontier);
            }
            events.flush();
            titles_in.flush();
            worker.step();
        }
        let end = visible_at(max_ts, REPLAY_TICK_MS) + REPLAY_TICK_MS;
        events.advance_to(end);
        titles_in.advance_to(end);
        events.flush();
        titles_in.flush();
        worker.step_while(|| probe.less_than(&end));
        let elapsed = started.elapsed();
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
        elapsed
    })
}

fn replay(c: &mut Criterion) {
    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    group.throughput(Throughput::Elements(replay_log().1.len() as u64));
    group.bench_function(BenchmarkId::new("whole library", replay_events()), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| time_replay()).sum())
    });
    group.finish();
}

criterion_group!(benches, one_tick, replay);
criterion_main!(benches);
