//! The served-feature log's costs: writing one logged response in each layout measured (redb
//! rows in `served-N.redb`, or hourly append-only Parquet), for 1 viewer × every viewer feature
//! and for a batch of 100 viewers, one response per durable commit (a quiet server) and 64 per
//! commit (a busy one, whose writer finds many queued), each synced to disk (as the log runs)
//! and unsynced (the layout's own cost, apart from the disk's); and what the request path pays
//! to hand a response to the log.
//!
//! ```text
//! cargo bench --bench served_log -- --warm-up-time 1 --measurement-time 5
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rewind::served::file::LogFile;
use rewind::served::parquet::ParquetLog;
use rewind::served::{LogConfig, Served, ServedEntity, ServedLog, ServedValue};

/// A viewer's six features as the server returns them: counts, a genre map, a title list.
fn viewer(n: usize) -> ServedEntity {
    let value = |feature: &'static str, json: String| ServedValue {
        feature: feature.into(),
        json,
        valid_from_ms: Some(1_767_225_600_000 + n as u64 * 1000),
    };
    let titles: Vec<String> = (0..10).map(|t| format!("\"t{:05}\"", n * 7 + t)).collect();
    ServedEntity {
        kind: "viewer".into(),
        id: format!("v_{n:032x}"),
        values: vec![
            value("viewer.watch_seconds_1h", format!("{}", 600 + n % 3000)),
            value("viewer.completes_1h", format!("{}", n % 4)),
            value("viewer.plays_24h", format!("{}", n % 17)),
            value(
                "genre_share_90d",
                r#"{"comedy":0.25,"drama":0.5,"documentary":0.125,"thriller":0.125}"#.into(),
            ),
            value("viewer.last_titles_10", format!("[{}]", titles.join(","))),
            value("viewer.lifetime_watch_s", format!("{}", 86_400 + n * 13)),
        ],
    }
}

fn response(entities: usize) -> Served {
    Served {
        request_id: "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b".into(),
        served_at_ms: 1_767_225_600_000,
        as_of_ms: 1_767_225_595_000,
        entities: (0..entities).map(viewer).collect(),
    }
}

fn write(c: &mut Criterion) {
    let mut group = c.benchmark_group("served_log");
    group.sample_size(20);
    for (shape, entities) in [("1 entity", 1), ("100 entities", 100)] {
        for (per_commit, sync) in [(1, true), (64, true), (1, false), (64, false)] {
            let batch: Vec<Served> = (0..per_commit).map(|_| response(entities)).collect();
            let disk = if sync { "synced" } else { "unsynced" };
            group.throughput(Throughput::Elements(per_commit as u64));
            group.bench_function(
                format!("redb/{shape}/{per_commit} per commit/{disk}"),
                |b| {
                    let dir = tempfile::tempdir().unwrap();
                    let path = rewind::served::file::slot_path(dir.path(), 0);
                    let mut file = match sync {
                        true => LogFile::open_slot(&path).unwrap().unwrap(),
                        false => LogFile::open_unsynced(&path).unwrap(),
                    };
                    b.iter(|| file.append(black_box(&batch), 0).unwrap());
                    file.close();
                },
            );
            group.bench_function(
                format!("parquet/{shape}/{per_commit} per commit/{disk}"),
                |b| {
                    let dir = tempfile::tempdir().unwrap();
                    let mut log = ParquetLog::new(dir.path(), 0, sync);
                    b.iter(|| log.append(black_box(&batch)).unwrap());
                    log.close().unwrap();
                },
            );
        }
    }
    group.finish();
}

/// The request path's part: building the record of a response and queueing it. Timed in
/// chunks the queue holds, the writer catching up between chunks (untimed), so nothing drops.
fn enqueue(c: &mut Criterion) {
    let mut group = c.benchmark_group("served_log_enqueue");
    for (shape, entities) in [("1 entity", 1), ("100 entities", 100)] {
        let template = response(entities);
        group.bench_function(shape, |b| {
            let dir = tempfile::tempdir().unwrap();
            let config = LogConfig {
                queue: 1024,
                ..LogConfig::default()
            };
            let log = ServedLog::open(dir.path(), config).unwrap();
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let chunk = left.min(1024);
                    let before = log.stats().logged;
                    let started = Instant::now();
                    for _ in 0..chunk {
                        assert!(log.record(black_box(template.clone())));
                    }
                    timed += started.elapsed();
                    while log.stats().logged < before + chunk {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    left -= chunk;
                }
                timed
            });
            log.close().unwrap();
        });
    }
    group.finish();
}

criterion_group!(benches, write, enqueue);
criterion_main!(benches);
