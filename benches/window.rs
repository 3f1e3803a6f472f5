//! Window updates through the feature dataflow: the cost of one tick, that is, a batch of
//! decoded events inserted at a new time, the input advanced, and the dataflow stepped until
//! every feature's output for the tick is complete. No Kafka, no store: differential alone.
//!
//! Two dataflows: one windowed sum (`viewer.watch_seconds_1h`, an insert now and a
//! retraction an hour later per heartbeat), and the whole built-in library. Each measurement
//! starts from a dataflow already holding a few ticks of state.
//!
//! Run: `cargo bench --bench window`

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use differential_dataflow::input::Input;
use rewind::decode::{decode_event, decode_title};
use rewind::privacy::Pseudonymizer;
use rewind::workload::{GenConfig, Generator};
use rewind_dataflows::{Event, Feature, Sources, Title, build_all, library};

const PER_TICK: usize = 10_000;
/// The features a measured dataflow computes.
type Library = fn() -> Vec<Feature>;
const TICK_MS: u64 = 100;
const WARM_TICKS: usize = 20;

fn inputs(ticks: usize) -> (Vec<Title>, Vec<Vec<Event>>) {
    let door = Pseudonymizer::new(b"the benchmark's pseudonym key");
    let generator = Generator::new(GenConfig {
        viewers: 100_000,
        titles: 2_000,
        ..GenConfig::default()
    });
    let titles = generator
        .title_records()
        .iter()
        .map(|t| decode_title(Some(t.json.as_bytes())).unwrap())
        .collect();
    let events: Vec<Event> = generator
        .take(PER_TICK * ticks)
        .map(|r| decode_event(Some(r.json.as_bytes()), &door).unwrap())
        .collect();
    (
        titles,
        events.chunks(PER_TICK).map(<[Event]>::to_vec).collect(),
    )
}

/// Builds the dataflow of `features`, warms it up, then times `iters` ticks.
fn time_ticks(features: Library, iters: u64) -> Duration {
    let (titles, batches) = inputs(WARM_TICKS + iters as usize);
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

fn window(c: &mut Criterion) {
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

criterion_group!(benches, window);
criterion_main!(benches);
