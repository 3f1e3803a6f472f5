//! The in-process reader (`rewind_state::Reader`): what a Rust model server pays for one
//! entity's features (a new read transaction, the entity's online row, its seal) and for a
//! batch of 100 entities read in one view. On a real store built by the real pipeline:
//! `rewind gen` then `rewind replay` into a temporary directory (or `REWIND_BENCH_STORE=DIR`
//! to read an existing store).
//!
//! Criterion gives means; the run ends with an HDR histogram of 100,000 single reads and
//! 10,000 batches (p50/p99/p99.9), since the targets are percentiles: one entity ≤ 10 µs p99,
//! 100 entities ≤ 0.5 ms.
//!
//! Views share one read transaction while no commit lands, so the last pass reads beside a
//! writer committing every 100 ms, as a live run does.
//!
//! Run: `cargo bench --bench reader -- --warm-up-time 1 --measurement-time 5`

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rewind_state::{ReadOnlyStore, Reader, Store};

const KEY: &str = "the reader bench's pseudonym key";

fn rewind(args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args(args)
        .env("REWIND_PSEUDONYM_KEY", KEY)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "rewind {args:?} failed");
}

/// 10,000 viewers, 2,000 titles, 300,000 events: a store of the scale `rewind bench` uses.
fn build_store(dir: &Path) -> PathBuf {
    let events = dir.join("events.jsonl");
    let e = events.to_str().unwrap();
    rewind(&[
        "gen",
        "--viewers",
        "10000",
        "--titles",
        "2000",
        "--events",
        "300000",
        "--out",
        e,
    ]);
    let store = dir.join("store");
    let titles = dir.join("events.titles.jsonl");
    rewind(&[
        "replay",
        "--file",
        e,
        "--titles-file",
        titles.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--seal",
    ]);
    store
}

fn viewers(store: &Path) -> Vec<String> {
    let store = ReadOnlyStore::open(store).unwrap();
    let all = store.snapshot().unwrap().online_all().unwrap();
    let mut ids: Vec<String> = all
        .into_iter()
        .filter(|(kind, _, _)| kind == "viewer")
        .map(|(_, id, _)| id)
        .collect();
    ids.dedup();
    ids
}

fn one(reader: &Reader, id: &str) -> usize {
    let mut view = reader.view().unwrap();
    view.entity("viewer", id).unwrap().map_or(0, |f| f.len())
}

fn batch(reader: &Reader, ids: &[String]) -> usize {
    let mut view = reader.view().unwrap();
    let rows = view.entities("viewer", ids.iter().map(String::as_str));
    rows.unwrap().iter().flatten().count()
}

fn criterion_benches(c: &mut Criterion, name: &str, reader: &Reader, ids: &[String]) {
    let mut rng = StdRng::seed_from_u64(1);
    let mut group = c.benchmark_group(format!("reader/{name}"));
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_entity", |b| {
        b.iter(|| one(reader, black_box(&ids[rng.random_range(0..ids.len())])))
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("batch_100", |b| {
        b.iter(|| {
            let at = rng.random_range(0..ids.len() - 100);
            batch(reader, black_box(&ids[at..at + 100]))
        })
    });
    group.bench_function("view_only", |b| {
        b.iter(|| reader.view().unwrap().as_of_ms())
    });
    group.finish();
}

fn percentiles(name: &str, reader: &Reader, ids: &[String]) {
    let mut rng = StdRng::seed_from_u64(2);
    let mut single = Histogram::<u64>::new(3).unwrap();
    for _ in 0..100_000 {
        let id = &ids[rng.random_range(0..ids.len())];
        let started = Instant::now();
        black_box(one(reader, id));
        single.record(started.elapsed().as_nanos() as u64).unwrap();
    }
    let mut views = Histogram::<u64>::new(3).unwrap();
    for _ in 0..100_000 {
        let started = Instant::now();
        black_box(reader.view().unwrap().as_of_ms());
        views.record(started.elapsed().as_nanos() as u64).unwrap();
    }
    let mut batches = Histogram::<u64>::new(3).unwrap();
    for _ in 0..10_000 {
        let at = rng.random_range(0..ids.len() - 100);
        let started = Instant::now();
        black_box(batch(reader, &ids[at..at + 100]));
        batches.record(started.elapsed().as_nanos() as u64).unwrap();
    }
    let all = [
        ("one entity", &single),
        ("view alone", &views),
        ("batch of 100", &batches),
    ];
    for (what, h) in all {
        println!(
            "reader/{name} {what}: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs ({} reads)",
            h.value_at_quantile(0.5) as f64 / 1e3,
            h.value_at_quantile(0.99) as f64 / 1e3,
            h.value_at_quantile(0.999) as f64 / 1e3,
            h.max() as f64 / 1e3,
            h.len()
        );
    }
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let store = match std::env::var_os("REWIND_BENCH_STORE") {
        Some(dir) => PathBuf::from(dir),
        None => build_store(tmp.path()),
    };
    let ids = viewers(&store);
    assert!(ids.len() > 100, "the store holds too few viewers");
    let mut c = Criterion::default().configure_from_args();
    // Another process's store, opened read-only: what `rewind serve` and a model server use.
    let reader = Reader::open(&store).unwrap();
    criterion_benches(&mut c, "read_only", &reader, &ids);
    percentiles("read_only", &reader, &ids);
    drop(reader);
    // The writer's own handle, as in `rewind run --serve`.
    let writer = Arc::new(Store::open(&store).unwrap());
    let reader = Reader::of_store(writer.clone());
    criterion_benches(&mut c, "writer", &reader, &ids);
    percentiles("writer", &reader, &ids);
    c.final_summary();
    // Views share a transaction only while no commit lands: the same reads beside a writer
    // committing at the live tick (a bookkeeping commit every 100 ms), so that every commit
    // costs the next read a fresh transaction. Never on a store the bench did not build.
    if std::env::var_os("REWIND_BENCH_STORE").is_none() {
        let frontier_ms = reader.view().unwrap().frontier_ms().unwrap_or(0);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let committing = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut commits = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    commits += 1;
                    let commit = rewind_state::Commit {
                        frontier_ms,
                        counters: vec![("reader_bench_commits", commits)],
                        ..Default::default()
                    };
                    writer.commit(&commit).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                commits
            })
        };
        percentiles("writer, a commit every 100 ms", &reader, &ids);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let commits = committing.join().unwrap();
        println!("reader/writer, a commit every 100 ms: {commits} commits landed meanwhile");
    }
}
