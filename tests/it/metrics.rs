//! `GET /metrics` as Prometheus scrapes it: from `rewind run --serve` on the embedded default
//! (the engine's figures, live) and from `rewind serve` beside a finished store (the store's
//! figures, read from its `meta` and `offsets` tables).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rewind::workload::GenConfig;
use rewind_state::ReadOnlyStore;

use crate::common;

/// A running `rewind` that serves, stopped (SIGINT, as Ctrl-C) when the test ends; with the
/// address it serves on and, for the embedded default, its cluster's.
struct Running {
    child: Child,
    addr: String,
    brokers: Option<String>,
}

impl Running {
    /// Runs `rewind ARGS`, which must serve on `127.0.0.1:0`, and waits for its address (and,
    /// for the `embedded` default, its cluster's).
    fn start(args: &[&str], embedded: bool) -> Running {
        let spawned = common::spawn_rewind(args, false);
        let markers = [common::SERVING, "embedded Kafka at "];
        let markers = &markers[..1 + embedded as usize];
        let mut found = spawned.words_after(markers, Duration::from_secs(60));
        Running {
            child: spawned.child,
            brokers: found.get(1).cloned(),
            addr: found.swap_remove(0),
        }
    }

    /// `GET path` over a connection of its own: (status, body), or `None` if it failed.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(&self.addr).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    }

    fn scrape(&self) -> Option<String> {
        match self.get("/metrics")? {
            (200, body) => Some(body),
            _ => None,
        }
    }

    /// Scrapes until `ready` holds of a scrape, for at most a minute.
    fn scrape_until(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Some(text) = self.scrape().filter(|t| ready(t)) {
                return text;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "{what}: not within a minute; last scrape:\n{:?}",
            self.scrape()
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let _ = self.child.wait();
    }
}

/// The value of the sample `series` (its name and labels exactly as rendered, e.g.
/// `rewind_http_requests_total{endpoint="health",status="200"}`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

fn meta_u64(store: &Path, key: &str) -> u64 {
    let snapshot = ReadOnlyStore::open(store).unwrap().snapshot().unwrap();
    snapshot.meta_u64(key).unwrap().unwrap_or(0)
}

#[test]
fn run_serve_reports_what_the_engine_committed_dead_letters_and_requests() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data");
    let args = [
        "run",
        "--store",
        store.to_str().unwrap(),
        "--serve",
        "127.0.0.1:0",
        "--viewers",
        "2000",
        "--rate",
        "5000",
    ];
    let run = Running::start(&args, true);
    let committed = |t: &str| sample(t, "rewind_events_committed_total");
    run.scrape_until("events committed", |t| committed(t) > Some(0.0));
    // Live, the store moves on between reads: the scrape lies between two reads of it.
    let before = meta_u64(&store, "events_total");
    let text = run.scrape().unwrap();
    let after = meta_u64(&store, "events_total");
    let scraped = committed(&text).unwrap() as u64;
    assert!(
        before <= scraped && scraped <= after,
        "{before} {scraped} {after}"
    );
    assert!(sample(&text, "rewind_events_consumed_total").unwrap() >= scraped as f64);
    assert_eq!(sample(&text, "rewind_store_readable"), Some(1.0));
    assert!(
        sample(&text, "rewind_frontier_age_seconds").is_some(),
        "{text}"
    );
    assert!(sample(&text, "rewind_commit_duration_seconds_count").unwrap() >= 1.0);
    let lag = r#"rewind_consumer_lag_records{topic="events",partition="0"}"#;
    run.scrape_until("lag per partition", |t| sample(t, lag).is_some());

    let bad = dir.path().join("bad.jsonl");
    let lines = "not json\n{\"type\":\"click\"}\n{\"event_id\":\"e\",\"type\":\n";
    std::fs::write(&bad, lines).unwrap();
    let brokers = run
        .brokers
        .as_deref()
        .expect("the embedded run names its cluster");
    let produce = ["produce", "--brokers", brokers, "--topic", "events"];
    common::ok(&common::rewind(
        &[&produce[..], &["--file", bad.to_str().unwrap()]].concat(),
    ));
    let dead = |t: &str| sample(t, "rewind_dead_letters_total");
    run.scrape_until("dead letters", |t| dead(t) == Some(3.0));
    assert_eq!(meta_u64(&store, "dead_letters_total"), 3);

    let health = r#"rewind_http_requests_total{endpoint="health",status="200"}"#;
    let counted = |text: &str| sample(text, health).unwrap_or(0.0);
    let first = counted(&run.scrape().unwrap());
    for _ in 0..5 {
        assert_eq!(run.get("/health").unwrap().0, 200);
    }
    let text = run.scrape().unwrap();
    assert_eq!(counted(&text), first + 5.0);
    let latency = r#"rewind_http_request_duration_seconds_count{endpoint="health"}"#;
    assert!(sample(&text, latency).unwrap() >= 5.0);
    // This scrape's own connection is open while it renders.
    assert!(sample(&text, "rewind_http_connections_open").unwrap() >= 1.0);
}

#[test]
fn serve_reports_the_store_figures_from_its_meta() {
    let config = GenConfig {
        viewers: 40,
        titles: 10,
        seed: 11,
        ..GenConfig::default()
    };
    let (titles, events) = common::workload(config.clone(), 2_000);
    let log = common::log(2);
    common::produce_workload(&log.brokers, &titles, &events, config.start_ms);
    let dir = tempfile::tempdir().unwrap();
    common::run_caught_up(&log.brokers, dir.path(), 1);

    let store = dir.path().to_str().unwrap();
    let serve = Running::start(
        &["serve", "--store", store, "--listen", "127.0.0.1:0"],
        false,
    );
    let text = serve.scrape_until("the store's figures", |t| {
        sample(t, "rewind_store_readable") == Some(1.0)
    });
    let meta = |key| meta_u64(dir.path(), key) as f64;
    assert_eq!(meta("events_total"), 2_000.0);
    let figures = [
        ("rewind_events_committed_total", "events_total"),
        ("rewind_late_events_total", "late_events_total"),
        ("rewind_dead_letters_total", "dead_letters_total"),
    ];
    for (series, key) in figures {
        assert_eq!(sample(&text, series), Some(meta(key)), "{series}");
    }
    let frontier = sample(&text, "rewind_frontier_timestamp_seconds").unwrap();
    assert_eq!((frontier * 1000.0).round(), meta("frontier_ms"));
    let as_of = sample(&text, "rewind_as_of_timestamp_seconds").unwrap();
    assert_eq!((as_of * 1000.0).round(), meta("as_of_ms"));
    let snapshot = ReadOnlyStore::open(dir.path()).unwrap().snapshot().unwrap();
    for (topic, partition, next) in snapshot.next_offsets().unwrap() {
        let series =
            format!(r#"rewind_committed_next_offset{{topic="{topic}",partition="{partition}"}}"#);
        assert_eq!(sample(&text, &series), Some(next as f64), "{series}");
    }
    // Only the writing process knows these; `rewind serve` does not guess them.
    assert_eq!(sample(&text, "rewind_events_consumed_total"), None);
    assert!(!text.contains("rewind_consumer_lag_records"));
}
