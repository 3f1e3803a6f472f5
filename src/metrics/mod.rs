//! `GET /metrics`: what a running rewind reports to Prometheus, rendered by prometheus-client
//! (the Prometheus project's own Rust client).
//!
//! Two kinds of figures:
//! - the store's, read at each scrape from what already exists: in `rewind run --serve` from
//!   the engine's [`Shared`] state (what the writer's last commit landed, the workers' counts,
//!   the commit timings), in `rewind serve` from the store's `meta` and `offsets` tables. No
//!   per-event work is added to the engine for them, and a scrape takes no lock the writer
//!   waits on for longer than a copy of one entry per partition.
//! - the server's own: request counts and latencies by endpoint, open connections, which the
//!   HTTP server records through [`Metrics::http_request`] and the connection hooks.
//!
//! Every family is named `rewind_*`, with its unit in its name. Time figures are wall-clock
//! seconds since the Unix epoch, or seconds of age; see [`FRONTIER_AGE_HELP`] for how event
//! time and wall time meet.

mod follow;
mod hooks;
mod timings;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rewind_state::{Snapshot, StoreError};

pub use follow::StoreFollower;
pub use timings::{COMMIT_BOUNDS_S, Timings, TimingsSnapshot};

use crate::engine::{Committed, Shared};

/// The classic Prometheus text format, which every scraper reads (the default).
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// OpenMetrics text, served to a client whose `Accept` asks for it (Prometheus itself does).
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds in seconds of the request-latency buckets: the serving target is a p99 of
/// 0.5 ms for one entity, so the buckets are fine below a millisecond and coarse above.
const HTTP_BOUNDS_S: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

pub const FRONTIER_AGE_HELP: &str = "Wall-clock time minus the store's committed frontier, in \
    seconds. The frontier is event time: every tick below it is final, and the online values \
    reflect the events before as_of = frontier - tick. Live, event time follows the wall clock, \
    so this is how far served values trail the present (lateness allowance included); while \
    replaying an old log it is the log's age, not a delay.";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("rendering the metrics failed (an encoder refused a figure)")]
    Render(#[from] std::fmt::Error),
}

/// Where the store's figures come from at each scrape.
pub enum Figures {
    /// `rewind run --serve`: the engine of this process.
    Engine(Arc<Shared>),
    /// `rewind serve`: a fresh read of the store, which another process writes (see
    /// [`StoreFollower`]).
    Store(Box<dyn Fn() -> Result<Snapshot, StoreError> + Send + Sync>),
}

impl Figures {
    /// The figures of the store in `dir`, read at each scrape, following the file if a new
    /// store replaces it.
    pub fn of_dir(dir: std::path::PathBuf) -> Figures {
        let follower = StoreFollower::new(dir);
        Figures::Store(Box::new(move || follower.snapshot()))
    }
}

impl std::fmt::Debug for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Figures::Engine(_) => "Figures::Engine",
            Figures::Store(_) => "Figures::Store",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

type LatencyFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(HTTP_BOUNDS_S)
}

/// The metrics of one process: share it (`Arc`) between the server's connections.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    connections: Gauge,
}

/// A rendered scrape: the body and the `Content-Type` it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub content_type: &'static str,
    pub body: String,
}

impl Metrics {
    pub fn new(figures: Figures) -> Metrics {
        let mut registry = Registry::with_prefix("rewind");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = LatencyFamily::new_with_constructor(latency_histogram);
        let connections = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by endpoint and status code",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response, by endpoint, in seconds",
            latency.clone(),
        );
        registry.register(
            "http_connections_open",
            "HTTP connections open now",
            connections.clone(),
        );
        registry.register_collector(Box::new(StoreCollector { figures }));
        Metrics {
            registry,
            requests,
            latency,
            connections,
        }
    }

    /// One answered request: `endpoint` is the route's name (a fixed set, never the path as
    /// sent, so a client cannot grow the label set).
    pub fn http_request(&self, endpoint: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { endpoint, status })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels { endpoint })
            .observe(elapsed.as_secs_f64());
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    /// Renders every family: OpenMetrics when `accept` (the request's `Accept` header) names
    /// it, else the classic Prometheus text format.
    pub fn render(&self, accept: Option<&str>) -> Result<Rendered, MetricsError> {
        let openmetrics = accept.is_some_and(|a| a.contains("application/openmetrics-text"));
        let mut body = String::with_capacity(8 * 1024);
        if openmetrics {
            prometheus_client::encoding::text::encode(&mut body, &self.registry)?;
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut body, &self.registry)?;
        }
        let content_type = if openmetrics {
            OPENMETRICS_TEXT
        } else {
            PROMETHEUS_TEXT
        };
        Ok(Rendered { content_type, body })
    }
}

/// The store's and the engine's figures, read when a scrape asks for them.
#[derive(Debug)]
struct StoreCollector {
    figures: Figures,
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let (committed, engine) = match &self.figures {
            Figures::Engine(shared) => (
                Ok((shared.committed(), shared.erasures_applied())),
                Some(shared),
            ),
            Figures::Store(snapshot) => {
                let read = |s: Snapshot| Ok((Committed::read(&s)?, s.erasures_applied()?));
                (snapshot().and_then(read), None)
            }
        };
        let readable = ConstGauge::new(i64::from(committed.is_ok()));
        let help = "1 while the store's figures could be read, 0 when the last read failed.";
        metric(&mut encoder, "store_readable", help, &readable)?;
        if let Some(shared) = engine {
            encode_engine(&mut encoder, shared)?;
        }
        if let Ok((committed, erasures)) = &committed {
            encode_committed(&mut encoder, committed)?;
            let help = "Erasures the store has applied, as of its last commit (the erasure \
                        topic's, and `rewind erase`'s; a repeat of an account already erased \
                        as far back is not counted).";
            metric(
                &mut encoder,
                "erasures_applied",
                help,
                &ConstCounter::new(*erasures),
            )?;
            if let Some(shared) = engine {
                encode_lag(&mut encoder, committed, &shared.log_ends())?;
            }
        }
        Ok(())
    }
}

fn metric(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: &impl EncodeMetric,
) -> std::fmt::Result {
    value.encode(encoder.encode_descriptor(name, help, None, value.metric_type())?)
}

/// What only the writing process knows: events read but not yet committed, commit timings.
fn encode_engine(encoder: &mut DescriptorEncoder, shared: &Shared) -> std::fmt::Result {
    let consumed = ConstCounter::new(shared.counters().events);
    let help = "Events read from the log and decoded, including those whose ticks are not \
                committed yet.";
    metric(encoder, "events_consumed", help, &consumed)?;
    let timings = shared.commit_durations().snapshot();
    let help = "Time the store writer takes to land one commit (blocks, rows, offsets, fsync), \
                in seconds.";
    let mut histogram =
        encoder.encode_descriptor("commit_duration_seconds", help, None, MetricType::Histogram)?;
    histogram.encode_histogram::<NoLabelSet>(timings.sum_s, timings.count, &timings.buckets, None)
}

fn encode_committed(encoder: &mut DescriptorEncoder, c: &Committed) -> std::fmt::Result {
    let help = "Events read up to the store's committed offsets (on time and late).";
    metric(
        encoder,
        "events_committed",
        help,
        &ConstCounter::new(c.events),
    )?;
    let help = "Events older than their partition's watermark, applied at the frontier, up to \
                the committed offsets.";
    metric(
        encoder,
        "late_events",
        help,
        &ConstCounter::new(c.late_events),
    )?;
    let help = "Records that could not be decoded, kept in the store with their reason, up to \
                the committed offsets.";
    metric(
        encoder,
        "dead_letters",
        help,
        &ConstCounter::new(c.dead_letters),
    )?;
    if let Some(frontier_ms) = c.frontier_ms {
        let help = "The store's committed frontier (event time), in seconds since the Unix \
                    epoch: every tick below it is final.";
        metric(
            encoder,
            "frontier_timestamp_seconds",
            help,
            &seconds(frontier_ms),
        )?;
        let age_ms = now_ms() as f64 - frontier_ms as f64;
        let age = ConstGauge::new(age_ms / 1000.0);
        metric(encoder, "frontier_age_seconds", FRONTIER_AGE_HELP, &age)?;
    }
    if let Some(as_of_ms) = c.as_of_ms {
        let help = "The event time the online values are as of, in seconds since the Unix \
                    epoch: they reflect exactly the events before it.";
        metric(encoder, "as_of_timestamp_seconds", help, &seconds(as_of_ms))?;
    }
    let help = "Next offset to read of each partition, as committed with the store's output.";
    let mut family =
        encoder.encode_descriptor("committed_next_offset", help, None, MetricType::Gauge)?;
    for (topic, partition, next) in &c.next_offsets {
        let labels = partition_labels(topic, *partition);
        ConstGauge::new(*next).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Lag per partition, where the end of its log is known: the status line asks the cluster
/// once a second ([`Shared::lag`]), and that answer is reused rather than asked again.
fn encode_lag(
    encoder: &mut DescriptorEncoder,
    c: &Committed,
    log_ends: &[(String, u32, u64)],
) -> std::fmt::Result {
    if log_ends.is_empty() {
        return Ok(());
    }
    let help = "Records in the log past the committed next offset, per partition: the end of \
                the log as last asked (once a second) minus the committed next offset.";
    let mut family =
        encoder.encode_descriptor("consumer_lag_records", help, None, MetricType::Gauge)?;
    for (topic, partition, next) in &c.next_offsets {
        let end = log_ends
            .iter()
            .find(|(t, p, _)| t == topic && p == partition);
        if let Some((_, _, end)) = end {
            let labels = partition_labels(topic, *partition);
            ConstGauge::new(end.saturating_sub(*next)).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

type PartitionLabels<'a> = ([(&'static str, &'a str); 1], [(&'static str, u32); 1]);

fn partition_labels(topic: &str, partition: u32) -> PartitionLabels<'_> {
    ([("topic", topic)], [("partition", partition)])
}

fn seconds(ms: u64) -> ConstGauge<f64> {
    ConstGauge::new(ms as f64 / 1000.0)
}

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
