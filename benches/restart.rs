//! Restart cost: how long a restarted `rewind run` takes to rebuild its in-memory state by
//! replaying the log, for a given number of events.
//!
//! Builds a seeded workload in an in-process Kafka cluster (librdkafka's mock cluster),
//! consumes it to the end into a fresh store (the backfill), then runs again on the same store
//! and log: the second run re-reads everything to rebuild the dataflow's state and writes
//! nothing, because every tick is already in the store.
//!
//! Run: `cargo bench --bench restart -- [--events N] [--workers W] [--partitions P]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use rewind::TimePolicy;
use rewind::engine::{self, LogSource, RunConfig, Shared};
use rewind::privacy::Pseudonymizer;
use rewind::workload::{GenConfig, Generator};
use rewind_connectors::{EmbeddedCluster, Producer};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
}

fn main() {
    let events = arg("--events", 500_000);
    let workers = arg("--workers", 1) as usize;
    // The mock cluster keeps ~5 MiB per partition: spread the log so nothing is trimmed.
    let partitions = arg("--partitions", (events / 15_000).max(4)) as u32;
    let cluster = EmbeddedCluster::start().unwrap();
    cluster.create_topic("events", partitions).unwrap();
    cluster.create_topic("titles", 1).unwrap();
    let brokers = cluster.bootstrap_servers().to_string();

    let config = GenConfig {
        viewers: 20_000,
        titles: 2_000,
        ..GenConfig::default()
    };
    let generator = Generator::new(config.clone());
    let producer = Producer::connect(&brokers).unwrap();
    let titles_ts = Some(config.start_ms as i64 - 60_000);
    for t in generator.title_records() {
        producer
            .send(
                "titles",
                Some(t.key.as_bytes()),
                t.json.as_bytes(),
                titles_ts,
            )
            .unwrap();
    }
    for r in generator.take(events as usize) {
        producer
            .send(
                "events",
                Some(r.key.as_bytes()),
                r.json.as_bytes(),
                Some(r.ts_ms as i64),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(120)).unwrap();

    let store = tempfile::tempdir().unwrap();
    let run = || {
        let config = RunConfig {
            source: LogSource::Kafka {
                brokers: brokers.clone(),
            },
            events_topic: "events".into(),
            titles_topic: Some("titles".into()),
            store_dir: store.path().to_path_buf(),
            policy: TimePolicy::default(),
            workers,
            until_caught_up: true,
            // The whole log, every tick committed: what the replay before this change did.
            seal: true,
            titles_from_start: false,
            idle: Duration::from_secs(2),
            max_outage: Duration::from_secs(300),
            commit_interval: Duration::from_millis(100),
            door: Pseudonymizer::new(b"the benchmark's pseudonym key"),
            consent: None,
            erasures: Default::default(),
            log_id: "kafka:events".into(),
            retention_ms: rewind_state::MAX_RETENTION_MS,
        };
        let started = Instant::now();
        let summary = engine::run(config, Arc::new(Shared::default())).unwrap();
        (started.elapsed(), summary)
    };
    let (backfill, first) = run();
    let (restart, second) = run();
    assert_eq!(second.changes_written, 0, "a restart rewrites nothing");
    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    println!("events {events}, partitions {partitions}, workers {workers}");
    println!(
        "backfill: {:.2} s ({:.0} events/s), {} changes written",
        backfill.as_secs_f64(),
        rate(backfill),
        first.changes_written
    );
    println!(
        "restart rebuild: {:.2} s ({:.0} events/s replayed)",
        restart.as_secs_f64(),
        rate(restart)
    );
}
