//! The served-feature log's costs: the background writer's per logged response (rows in
//! `served-N.redb`), for 1 viewer × every viewer feature and for a batch of 100 viewers, one
//! response per durable commit (a quiet server) and 64 per commit (a busy one, whose writer
//! finds many queued), synced to disk (as the log runs) and unsynced (the layout's own cost,
//! apart from the disk's); what the request path pays to hand a response to the log; and HTTP
//! request latency through `rewind serve`'s server with the log off and on, on a store built by
//! `rewind gen` and `rewind replay`. (The Parquet-per-hour layout it was measured against is in
//! the history: commit 6325e68, and BENCHMARKS.md.)
//!
//! ```text
//! cargo bench --bench served_log -- --warm-up-time 1 --measurement-time 5
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rewind::served::file::LogFile;
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

const KEY: &str = "the served-log bench's pseudonym key";

fn rewind(args: &[&str]) {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args(args)
        .env("REWIND_PSEUDONYM_KEY", KEY)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "rewind {args:?} failed");
}

/// 2,000 viewers, 400 titles, 60,000 events, replayed and sealed.
fn build_store(dir: &std::path::Path) -> std::path::PathBuf {
    let events = dir.join("events.jsonl");
    let e = events.to_str().unwrap();
    let sizes = ["--viewers", "2000", "--titles", "400", "--events", "60000"];
    rewind(&[&["gen", "--out", e][..], &sizes].concat());
    let store = dir.join("store");
    let titles = dir.join("events.titles.jsonl");
    let t = titles.to_str().unwrap();
    let s = store.to_str().unwrap();
    rewind(&[
        "replay",
        "--file",
        e,
        "--titles-file",
        t,
        "--store",
        s,
        "--seal",
    ]);
    store
}

/// One keep-alive connection's request latency, the log off and on: `GET /v1/viewers/{id}`
/// (1 entity × every feature) and `POST /v1/batch` of 100 viewers.
fn http(c: &mut Criterion) {
    use rewind::serve::{Limits, NoHooks, ServeConfig, ServeHooks, Server, Source};
    let dir = tempfile::tempdir().unwrap();
    let store = build_store(dir.path());
    let door = rewind::privacy::Pseudonymizer::new(KEY.as_bytes());
    let viewers: Vec<String> = (0..100)
        .map(|u| door.viewer_id(&format!("u{u:07}")).to_string())
        .collect();
    let batch = serde_json::json!({ "viewers": viewers }).to_string();
    let mut group = c.benchmark_group("served_log_http");
    for logged in [false, true] {
        let log = logged.then(|| Arc::new(ServedLog::open(&store, LogConfig::default()).unwrap()));
        let hooks: Arc<dyn ServeHooks> = match &log {
            Some(log) => log.clone(),
            None => Arc::new(NoHooks),
        };
        let config = ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: None,
            door: None,
            limits: Limits::default(),
            threads: 1,
            purpose: None,
        };
        let server = Server::start(config, Source::Dir(store.clone()), hooks).unwrap();
        let base = format!("http://{}", server.addr());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let get = |path: &str| agent.get(format!("{base}{path}")).call().unwrap();
        while get("/health").status() != 200 {
            std::thread::sleep(Duration::from_millis(50));
        }
        let label = if logged { "logged" } else { "not logged" };
        let one = format!("/v1/viewers/{}", viewers[7]);
        assert_eq!(get(&one).status(), 200);
        group.bench_function(format!("1 entity/{label}"), |b| {
            b.iter(|| get(&one).into_body().read_to_vec().unwrap())
        });
        group.bench_function(format!("100 entities/{label}"), |b| {
            b.iter(|| {
                let response = agent.post(format!("{base}/v1/batch")).send(&batch).unwrap();
                response.into_body().read_to_vec().unwrap()
            })
        });
        server.stop();
        if let Some(log) = log {
            let stats = log.close().unwrap();
            eprintln!("served log: {stats:?}");
        }
    }
    group.finish();
}

criterion_group!(benches, write, enqueue, http);
criterion_main!(benches);
