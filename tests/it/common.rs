//! Shared set-up: a mock cluster with the two topics, producing records, running the engine
//! until caught up, and reading a topic back.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rewind::TimePolicy;
use rewind::engine::{self, LogSource, RunConfig, RunSummary, Shared};
use rewind::privacy::Pseudonymizer;
use rewind::workload::{GenConfig, Generator, Record};
use rewind_connectors::{EmbeddedCluster, KafkaSource, Polled, Producer};

pub const KEY: &[u8] = b"the integration tests' pseudonym key";
pub const EVENTS: &str = "events";
pub const TITLES: &str = "titles";
pub const CONSENT: &str = "consent";
pub const ERASURE: &str = "erasure";

pub fn door() -> Pseudonymizer {
    Pseudonymizer::new(KEY)
}

/// A mock cluster with an `events` topic of `partitions` partitions and a one-partition
/// `titles` topic. Dropping it drops the log.
pub struct Log {
    cluster: EmbeddedCluster,
    pub brokers: String,
}

impl Log {
    /// Adds a topic of `partitions` partitions to the cluster.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        self.cluster.create_topic(topic, partitions).unwrap();
    }

    /// Takes the cluster's broker down, or brings it back.
    pub fn set_broker_up(&self, up: bool) {
        self.cluster.set_broker_up(up).unwrap();
    }
}

pub fn log(partitions: u32) -> Log {
    let cluster = EmbeddedCluster::start().unwrap();
    cluster.create_topic(EVENTS, partitions).unwrap();
    cluster.create_topic(TITLES, 1).unwrap();
    let brokers = cluster.bootstrap_servers().to_string();
    Log { cluster, brokers }
}

/// A generated workload: titles first, then events.
pub fn workload(config: GenConfig, events: usize) -> (Vec<Record>, Vec<Record>) {
    let generator = Generator::new(config);
    let titles = generator.title_records();
    (titles, generator.take(events).collect())
}

/// Produces `records` (keyed, with their `ts` as Kafka timestamp when non-zero).
pub fn produce(brokers: &str, topic: &str, records: &[Record]) {
    let producer = Producer::connect(brokers).unwrap();
    for r in records {
        let ts = (r.ts_ms > 0).then_some(r.ts_ms as i64);
        producer
            .send(topic, Some(r.key.as_bytes()), r.json.as_bytes(), ts)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Produces titles stamped a minute before `start_ms`, then events.
pub fn produce_workload(brokers: &str, titles: &[Record], events: &[Record], start_ms: u64) {
    let titles: Vec<Record> = titles
        .iter()
        .map(|t| Record {
            ts_ms: start_ms - 60_000,
            ..t.clone()
        })
        .collect();
    produce(brokers, TITLES, &titles);
    produce(brokers, EVENTS, events);
}

pub fn config(brokers: &str, store: &Path, workers: usize) -> RunConfig {
    RunConfig {
        source: LogSource::Kafka {
            brokers: brokers.to_string(),
        },
        events_topic: EVENTS.into(),
        titles_topic: Some(TITLES.into()),
        store_dir: store.to_path_buf(),
        policy: TimePolicy::default(),
        workers,
        until_caught_up: true,
        // The oracle checks a finished log: every tick committed.
        seal: true,
        titles_from_start: false,
        idle: Duration::from_secs(2),
        max_outage: Duration::from_secs(300),
        commit_interval: Duration::from_millis(50),
        door: door(),
        consent: None,
        erasures: Default::default(),
        log_id: "kafka:events".into(),
        retention_ms: rewind_state::MAX_RETENTION_MS,
    }
}

/// Runs the engine on the whole log as of now, to completion.
pub fn run_caught_up(brokers: &str, store: &Path, workers: usize) -> RunSummary {
    engine::run(config(brokers, store, workers), Arc::new(Shared::default())).unwrap()
}

/// Stops a live run once it has read `records` and its frontier has stood still a while.
pub fn stop_when_settled(shared: &Shared, records: u64) {
    let mut last = (0, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let frontier = shared.frontier_ms();
        if frontier != last.0 {
            last = (frontier, Instant::now());
        }
        let settled = last.1.elapsed() > Duration::from_millis(500);
        if shared.counters().records >= records && frontier > 0 && settled {
            return shared.stop();
        }
    }
}

/// One record as the log holds it.
#[derive(Debug, Clone)]
pub struct Raw {
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: Option<i64>,
    pub payload: Option<Vec<u8>>,
}

/// Every record of `topic`, in (partition, offset) order.
pub fn read_back(brokers: &str, topic: &str) -> Vec<Raw> {
    let source = KafkaSource::connect(brokers).unwrap();
    let info = source.topic_info(topic).unwrap();
    let starts: Vec<_> = (0..info.watermarks.len() as u32)
        .map(|p| (topic.to_string(), p, 0))
        .collect();
    let total: u64 = info.watermarks.iter().map(|w| w.1).sum();
    source.assign(&starts).unwrap();
    let mut out = Vec::new();
    while (out.len() as u64) < total {
        source
            .drain(100_000, Duration::from_millis(100), |polled| {
                let Polled::Record(r) = polled else { return };
                out.push(Raw {
                    partition: r.partition,
                    offset: r.offset,
                    timestamp_ms: r.timestamp_ms,
                    payload: r.payload.map(<[u8]>::to_vec),
                })
            })
            .unwrap();
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// Runs the `rewind` binary with the tests' pseudonym key.
pub fn rewind(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args(args)
        .env("REWIND_PSEUDONYM_KEY", std::str::from_utf8(KEY).unwrap())
        .output()
        .unwrap()
}

/// The stdout of a run that must have succeeded.
pub fn ok(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "failed: {stderr}");
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Loads generated files through `rewind produce`: titles stamped `titles_ts_ms`, then events.
pub fn produce_files(brokers: &str, titles: &str, titles_ts_ms: &str, events: &str) {
    let titles_args = [
        "--topic",
        "titles",
        "--file",
        titles,
        "--timestamp-ms",
        titles_ts_ms,
    ];
    ok(&rewind(
        &[&["produce", "--brokers", brokers][..], &titles_args].concat(),
    ));
    ok(&rewind(&[
        "produce",
        "--brokers",
        brokers,
        "--topic",
        "events",
        "--file",
        events,
    ]));
}

/// What a serving `rewind` prints before its address (`serving http://ADDR ...`).
pub const SERVING: &str = "serving http://";

/// A `rewind` process started by [`spawn_rewind`]: its stderr arrives line by line on
/// `lines` as the process writes it. Stopping it is the caller's (each test stops it its way).
pub struct Spawned {
    pub child: std::process::Child,
    pub lines: std::sync::mpsc::Receiver<String>,
}

/// Starts `rewind ARGS` with the tests' pseudonym key in its environment (`key`) or none.
pub fn spawn_rewind(args: &[&str], key: bool) -> Spawned {
    use std::io::BufRead;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rewind"));
    cmd.args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    match key {
        true => cmd.env("REWIND_PSEUDONYM_KEY", std::str::from_utf8(KEY).unwrap()),
        false => cmd.env_remove("REWIND_PSEUDONYM_KEY"),
    };
    let mut child = cmd.spawn().unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Spawned { child, lines }
}

impl Spawned {
    /// The first word after each of `markers` (e.g. [`SERVING`]), from the first stderr line
    /// holding it; panics after `within` without all of them.
    pub fn words_after(&self, markers: &[&str], within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut found: Vec<Option<String>> = vec![None; markers.len()];
        while found.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("rewind printed none of {markers:?} within {within:?}"));
            for (marker, slot) in markers.iter().zip(&mut found) {
                let word = line
                    .split(marker)
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next());
                if let (None, Some(word)) = (&slot, word) {
                    *slot = Some(word.to_string());
                }
            }
        }
        found.into_iter().map(Option::unwrap).collect()
    }
}
