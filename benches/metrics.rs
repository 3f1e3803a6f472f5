//! `GET /metrics`: what recording a request costs the server, and what one scrape costs,
//! rendered from the engine's shared state and from a real store file (meta and offsets of
//! 8 partitions read in one read transaction), as `rewind run --serve` and `rewind serve` do.
//!
//! Run: `cargo bench --bench metrics`

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rewind::Shared;
use rewind::metrics::{Figures, Metrics};
use rewind_state::{Commit, ReadOnlyStore, Store};

const ENDPOINTS: [&str; 4] = ["get_online_features", "entity", "batch", "health"];

/// A server's worth of series: every endpoint answered with a few statuses.
fn busy(metrics: &Metrics) {
    for (i, endpoint) in ENDPOINTS.iter().enumerate() {
        for status in [200, 400, 404] {
            metrics.http_request(endpoint, status, Duration::from_micros(100 * i as u64 + 50));
        }
    }
    metrics.connection_opened();
}

fn store_with_offsets(dir: &std::path::Path) {
    let store = Store::open(dir).unwrap();
    store
        .commit(&Commit {
            frontier_ms: 1_700_000_001_000,
            next_offsets: (0..8)
                .map(|p| ("events".to_string(), p, 1_000_000))
                .collect(),
            counters: vec![
                ("as_of_ms", 1_700_000_000_000),
                ("events_total", 8_000_000),
                ("late_events_total", 12),
                ("dead_letters_total", 3),
            ],
            ..Commit::default()
        })
        .unwrap();
}

fn bench(c: &mut Criterion) {
    let engine = Metrics::new(Figures::Engine(Arc::new(Shared::default())));
    busy(&engine);
    c.bench_function("http_request", |b| {
        b.iter(|| engine.http_request("get_online_features", 200, Duration::from_micros(120)))
    });
    c.bench_function("render/engine", |b| b.iter(|| engine.render(None).unwrap()));

    let dir = tempfile::tempdir().unwrap();
    store_with_offsets(dir.path());
    let reader = ReadOnlyStore::open(dir.path()).unwrap();
    let store = Metrics::new(Figures::Store(Box::new(move || reader.snapshot())));
    busy(&store);
    c.bench_function("render/store", |b| b.iter(|| store.render(None).unwrap()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
