//! Store commits: one write transaction landing N history rows and online values, with
//! offsets and counters, as the writer does once per commit interval. Entity ids, features
//! and values have the built-in library's shapes; each iteration writes a new tick, so the
//! history grows as it does in a run. A real redb file in a temporary directory.
//!
//! `store_commit_purging` compares the same commits with and without the retention purge.
//!
//! Run: `cargo bench --bench store`

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rewind_state::{Change, Commit, Store};

const FEATURES: [&str; 3] = [
    "viewer.watch_seconds_1h",
    "viewer.lifetime_watch_s",
    "viewer.genre_share_90d",
];

fn commit_of(n: usize, tick: u64, viewers: u64) -> Commit {
    let changes = (0..n as u64)
        .map(|i| {
            let viewer = (i * 7919 + tick * 104_729) % viewers;
            let feature = FEATURES[(i % 3) as usize];
            let value = if feature.ends_with("90d") {
                r#"{"comedy":0.25,"drama":0.75}"#.to_string()
            } else {
                format!("{}.0", i % 3600)
            };
            Change {
                entity_kind: "viewer",
                feature,
                entity_id: format!("v_{:032x}", viewer.wrapping_mul(0x9e37_79b9_7f4a_7c15)).into(),
                tick_ms: tick,
                value: Some(value.into_bytes()),
            }
        })
        .collect();
    Commit {
        frontier_ms: tick + 1000,
        changes,
        next_offsets: (0..8).map(|p| ("events".to_string(), p, tick)).collect(),
        dead_letters: Vec::new(),
        counters: vec![("events_total", tick)],
        retention_ms: None,
        erasures: Vec::new(),
    }
}

fn store(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_commit");
    group.sample_size(20);
    for n in [1_000usize, 10_000, 50_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut tick = 1_767_225_600_000u64;
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_batched(
                || {
                    tick += 1000;
                    commit_of(n, tick, 100_000)
                },
                |commit| store.commit(&commit).unwrap(),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// The same commits once the history spans more than the retention, with the purge (each
/// key changes about every 30 ticks, and the retention is 30 ticks, so each commit purges
/// about as many entries as it writes) and without it, side by side.
fn purging(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_commit_purging");
    group.sample_size(20);
    let n = 10_000usize;
    group.throughput(Throughput::Elements(n as u64));
    for retention_ms in [None, Some(30_000u64)] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut tick = 1_767_225_600_000u64;
        let commit = |tick: u64| {
            let commit = Commit {
                retention_ms,
                ..commit_of(n, tick, 100_000)
            };
            store.commit(&commit).unwrap()
        };
        let mut purged = Vec::new();
        for _ in 0..60 {
            tick += 1000;
            purged.push(commit(tick));
        }
        if retention_ms.is_some() {
            let last = &purged[40..];
            let per = |f: fn(&rewind_state::Purged) -> u64| {
                last.iter().map(f).sum::<u64>() / last.len() as u64
            };
            eprintln!(
                "steady state, per commit: {} entries purged, {} blocks rewritten, {} removed",
                per(|p| p.history_entries),
                per(|p| p.blocks_rewritten),
                per(|p| p.blocks_removed)
            );
        }
        let name = match retention_ms {
            None => "keep everything".to_string(),
            Some(ms) => format!("retention {} ticks", ms / 1000),
        };
        group.bench_function(BenchmarkId::new(name, n), |b| {
            b.iter(|| {
                tick += 1000;
                commit(tick)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, store, purging);
criterion_main!(benches);
