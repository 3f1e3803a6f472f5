//! The rendering parsed back as Prometheus text: families, types, labels and values exactly.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rewind_state::{Commit, DeadLetter, ReadOnlyStore, Store};

use super::*;
use crate::engine::Counters;

/// One scrape, parsed: `# TYPE` per family, and every sample by name and sorted labels.
#[derive(Debug, Default)]
struct Scrape {
    types: BTreeMap<String, String>,
    helps: BTreeMap<String, String>,
    samples: BTreeMap<(String, Vec<(String, String)>), f64>,
}

impl Scrape {
    /// Parses the classic text format strictly: a line that is not a comment, a blank or a
    /// well-formed sample of a declared family fails the test.
    fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has text");
                scrape.helps.insert(name.into(), help.into());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
                scrape.types.insert(name.into(), kind.into());
            } else if !line.is_empty() {
                let (key, value) = parse_sample(line);
                assert!(
                    scrape.family_of(&key.0).is_some(),
                    "sample {line:?} has no # TYPE"
                );
                assert!(
                    scrape.samples.insert(key, value).is_none(),
                    "{line:?} twice"
                );
            }
        }
        scrape
    }

    fn family_of(&self, sample: &str) -> Option<&str> {
        let suffixes = ["", "_total", "_bucket", "_sum", "_count"];
        suffixes.iter().find_map(|suffix| {
            let family = sample.strip_suffix(suffix)?;
            self.types.get(family).map(String::as_str)
        })
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        self.samples.get(&(name.to_string(), labels)).copied()
    }
}

fn parse_sample(line: &str) -> ((String, Vec<(String, String)>), f64) {
    let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value of {line:?}")),
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => {
            let rest = rest.strip_suffix('}').expect("labels close");
            let mut labels: Vec<(String, String)> = rest
                .split(',')
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                    (k.to_string(), v.expect("a quoted label value").to_string())
                })
                .collect();
            labels.sort();
            (name, labels)
        }
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    assert!(name.chars().all(valid), "metric name {name:?}");
    ((name.to_string(), labels), value)
}

fn scrape(metrics: &Metrics) -> Scrape {
    let rendered = metrics.render(None).unwrap();
    assert_eq!(rendered.content_type, PROMETHEUS_TEXT);
    Scrape::parse(&rendered.body)
}

#[test]
fn requests_counted_by_endpoint_and_status_with_latency_and_connections() {
    let metrics = Metrics::new(Figures::Engine(Arc::default()));
    let features = "get_online_features";
    metrics.http_request(features, 200, Duration::from_micros(80));
    metrics.http_request(features, 200, Duration::from_micros(300));
    metrics.http_request(features, 404, Duration::from_millis(2));
    metrics.http_request("health", 200, Duration::from_micros(10));
    metrics.connection_opened();
    metrics.connection_opened();
    metrics.connection_closed();
    let s = scrape(&metrics);
    assert_eq!(s.types["rewind_http_requests_total"], "counter");
    assert_eq!(s.types["rewind_http_request_duration_seconds"], "histogram");
    assert_eq!(s.types["rewind_http_connections_open"], "gauge");
    let requests = |endpoint, status| {
        s.value(
            "rewind_http_requests_total",
            &[("endpoint", endpoint), ("status", status)],
        )
    };
    assert_eq!(requests(features, "200"), Some(2.0));
    assert_eq!(requests(features, "404"), Some(1.0));
    assert_eq!(requests("health", "200"), Some(1.0));
    assert_eq!(requests("health", "404"), None);
    let latency = |suffix: &str, le: Option<&str>| {
        let name = format!("rewind_http_request_duration_seconds{suffix}");
        let mut labels = vec![("endpoint", features)];
        labels.extend(le.map(|le| ("le", le)));
        s.value(&name, &labels)
    };
    assert_eq!(latency("_count", None), Some(3.0));
    assert_eq!(latency("_bucket", Some("0.0001")), Some(1.0));
    assert_eq!(latency("_bucket", Some("0.0005")), Some(2.0));
    assert_eq!(latency("_bucket", Some("0.0025")), Some(3.0));
    assert_eq!(latency("_bucket", Some("+Inf")), Some(3.0));
    let sum = latency("_sum", None).unwrap();
    assert!((sum - 0.002_38).abs() < 1e-9, "{sum}");
    assert_eq!(s.value("rewind_http_connections_open", &[]), Some(1.0));
}

#[test]
fn engine_figures_are_what_the_engine_counted_and_committed() {
    let shared = Arc::new(Shared::default());
    shared.add(&Counters {
        records: 130,
        events: 120,
        late_events: 4,
        dead_letters: 10,
        ..Counters::default()
    });
    shared.set_committed(Committed {
        frontier_ms: Some(1_700_000_010_000),
        as_of_ms: Some(1_700_000_009_000),
        events: 100,
        late_events: 3,
        dead_letters: 7,
        next_offsets: vec![("events".into(), 0, 60), ("events".into(), 1, 55)],
    });
    shared.set_log_ends(vec![("events".into(), 0, 75), ("events".into(), 1, 55)]);
    shared.add_erasures_applied(2);
    shared.commit_durations().observe(Duration::from_millis(3));
    shared.commit_durations().observe(Duration::from_millis(40));
    let s = scrape(&Metrics::new(Figures::Engine(shared)));
    assert_eq!(s.types["rewind_events_consumed_total"], "counter");
    assert_eq!(s.value("rewind_events_consumed_total", &[]), Some(120.0));
    assert_eq!(s.value("rewind_events_committed_total", &[]), Some(100.0));
    assert_eq!(s.value("rewind_late_events_total", &[]), Some(3.0));
    assert_eq!(s.value("rewind_dead_letters_total", &[]), Some(7.0));
    assert_eq!(s.types["rewind_erasures_applied_total"], "counter");
    assert_eq!(s.value("rewind_erasures_applied_total", &[]), Some(2.0));
    assert_eq!(s.value("rewind_store_readable", &[]), Some(1.0));
    let frontier = s.value("rewind_frontier_timestamp_seconds", &[]);
    assert_eq!(frontier, Some(1_700_000_010.0));
    let as_of = s.value("rewind_as_of_timestamp_seconds", &[]);
    assert_eq!(as_of, Some(1_700_000_009.0));
    assert_eq!(s.types["rewind_consumer_lag_records"], "gauge");
    let p0 = [("topic", "events"), ("partition", "0")];
    let p1 = [("topic", "events"), ("partition", "1")];
    assert_eq!(s.value("rewind_consumer_lag_records", &p0), Some(15.0));
    assert_eq!(s.value("rewind_consumer_lag_records", &p1), Some(0.0));
    assert_eq!(s.value("rewind_committed_next_offset", &p0), Some(60.0));
    assert_eq!(s.types["rewind_commit_duration_seconds"], "histogram");
    let commits = |suffix: &str, le: &[(&str, &str)]| {
        s.value(&format!("rewind_commit_duration_seconds{suffix}"), le)
    };
    assert_eq!(commits("_count", &[]), Some(2.0));
    assert_eq!(commits("_bucket", &[("le", "0.0025")]), Some(0.0));
    assert_eq!(commits("_bucket", &[("le", "0.005")]), Some(1.0));
    assert_eq!(commits("_bucket", &[("le", "0.05")]), Some(2.0));
    assert_eq!(commits("_bucket", &[("le", "+Inf")]), Some(2.0));
}

#[test]
fn frontier_age_is_wall_clock_minus_the_frontier() {
    let shared = Arc::new(Shared::default());
    let frontier_ms = now_ms() - 30_000;
    shared.set_committed(Committed {
        frontier_ms: Some(frontier_ms),
        ..Committed::default()
    });
    let s = scrape(&Metrics::new(Figures::Engine(shared)));
    let age = s.value("rewind_frontier_age_seconds", &[]).unwrap();
    // The scrape comes after the frontier was set: 30 s and the time the test took.
    assert!((30.0..40.0).contains(&age), "{age}");
    assert!(s.helps["rewind_frontier_age_seconds"].contains("event time"));
}

#[test]
fn nothing_committed_yet_renders_counts_of_zero_and_no_times() {
    let s = scrape(&Metrics::new(Figures::Engine(Arc::default())));
    assert_eq!(s.value("rewind_events_committed_total", &[]), Some(0.0));
    assert_eq!(s.value("rewind_erasures_applied_total", &[]), Some(0.0));
    assert_eq!(s.value("rewind_frontier_age_seconds", &[]), None);
    assert_eq!(s.value("rewind_as_of_timestamp_seconds", &[]), None);
    // No log end is known before the status line has asked: no lag is guessed.
    assert!(!s.types.contains_key("rewind_consumer_lag_records"));
}

fn commit_into(dir: &Path) {
    let store = Store::open(dir).unwrap();
    let dead = |offset| DeadLetter {
        topic: "events".into(),
        partition: 1,
        offset,
        reason: "bad JSON".into(),
        time_ms: None,
    };
    store
        .commit(&Commit {
            frontier_ms: 1_700_000_005_000,
            next_offsets: vec![("events".into(), 0, 40), ("events".into(), 1, 12)],
            dead_letters: vec![dead(3), dead(9)],
            // Of an account the store never held: applied, and counted.
            erasures: vec![rewind_state::Erasure {
                entity_kind: "viewer",
                entity_id: "v_00000000000000000000000000000001".to_string().into(),
                ts_ms: 1_700_000_004_000,
                tick_ms: 1_700_000_005_000,
                token: [7; 32],
            }],
            counters: vec![
                ("as_of_ms", 1_700_000_004_000),
                ("events_total", 50),
                ("late_events_total", 5),
                ("dead_letters_total", 2),
            ],
            ..Commit::default()
        })
        .unwrap();
}

#[test]
fn a_store_read_by_another_process_gives_its_meta_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    commit_into(dir.path());
    let store = ReadOnlyStore::open(dir.path()).unwrap();
    let metrics = Metrics::new(Figures::Store(Box::new(move || store.snapshot())));
    let s = scrape(&metrics);
    assert_eq!(s.value("rewind_events_committed_total", &[]), Some(50.0));
    assert_eq!(s.value("rewind_late_events_total", &[]), Some(5.0));
    assert_eq!(s.value("rewind_dead_letters_total", &[]), Some(2.0));
    assert_eq!(s.value("rewind_erasures_applied_total", &[]), Some(1.0));
    let frontier = s.value("rewind_frontier_timestamp_seconds", &[]);
    assert_eq!(frontier, Some(1_700_000_005.0));
    let p1 = [("topic", "events"), ("partition", "1")];
    assert_eq!(s.value("rewind_committed_next_offset", &p1), Some(12.0));
    // Only the writing process knows these.
    assert!(!s.types.contains_key("rewind_events_consumed_total"));
    assert!(!s.types.contains_key("rewind_commit_duration_seconds"));
    assert!(!s.types.contains_key("rewind_consumer_lag_records"));
}

#[test]
fn a_store_that_cannot_be_read_says_so_and_the_rest_renders() {
    let metrics = Metrics::new(Figures::Store(Box::new(|| {
        Err(StoreError::Missing {
            path: "/nowhere/rewind.redb".into(),
        })
    })));
    metrics.http_request("health", 503, Duration::from_micros(20));
    let s = scrape(&metrics);
    assert_eq!(s.value("rewind_store_readable", &[]), Some(0.0));
    assert_eq!(s.value("rewind_events_committed_total", &[]), None);
    let health = [("endpoint", "health"), ("status", "503")];
    assert_eq!(s.value("rewind_http_requests_total", &health), Some(1.0));
}

#[test]
fn openmetrics_when_the_client_asks_for_it() {
    let metrics = Metrics::new(Figures::Engine(Arc::default()));
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let rendered = metrics.render(Some(accept)).unwrap();
    assert_eq!(rendered.content_type, OPENMETRICS_TEXT);
    assert!(rendered.body.ends_with("# EOF\n"), "{}", rendered.body);
    assert!(rendered.body.contains("rewind_events_committed_total 0\n"));
    let plain = metrics.render(Some("text/plain")).unwrap();
    assert_eq!(plain.content_type, PROMETHEUS_TEXT);
    assert!(!plain.body.contains("# EOF"));
}

#[test]
fn the_writer_publishes_what_it_committed_and_a_reader_finds_the_same() {
    let dir = tempfile::tempdir().unwrap();
    commit_into(dir.path());
    let store = Store::open(dir.path()).unwrap();
    let read = Committed::read(&store.snapshot().unwrap()).unwrap();
    assert_eq!(
        read,
        Committed {
            frontier_ms: Some(1_700_000_005_000),
            as_of_ms: Some(1_700_000_004_000),
            events: 50,
            late_events: 5,
            dead_letters: 2,
            next_offsets: vec![("events".into(), 0, 40), ("events".into(), 1, 12)],
        }
    );
}

#[test]
fn a_store_directory_is_followed_from_missing_to_written_to_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new(Figures::of_dir(dir.path().to_path_buf()));
    assert_eq!(
        scrape(&metrics).value("rewind_store_readable", &[]),
        Some(0.0)
    );
    commit_into(dir.path());
    let s = scrape(&metrics);
    assert_eq!(s.value("rewind_store_readable", &[]), Some(1.0));
    assert_eq!(s.value("rewind_events_committed_total", &[]), Some(50.0));
    // A fresh store in its place, as an embedded run makes when its old log died.
    let file = dir.path().join(rewind_state::FILE_NAME);
    std::fs::rename(&file, dir.path().join("old.redb")).unwrap();
    drop(Store::open(dir.path()).unwrap());
    let s = scrape(&metrics);
    assert_eq!(s.value("rewind_events_committed_total", &[]), Some(0.0));
    assert_eq!(s.value("rewind_frontier_timestamp_seconds", &[]), None);
}
