//! `rewind bench ingest`: drives the seeded workload into Kafka at a chosen rate and measures
//! the pipeline end to end, the way a load-testing harness sees it.
//!
//! Three threads besides the engine: the producer (open loop at `--rate`, or as fast as the
//! pipeline keeps up with `--max`), the engine itself ([`crate::engine::run`], unchanged), and
//! the monitor on the caller's thread, which samples the engine once a millisecond.
//!
//! Freshness is measured per event: from its origin (the moment it was due to be produced in
//! open loop, so a producer that falls behind its schedule counts against the pipeline; the
//! moment it was produced with `--max`) to the first moment the store's committed frontier
//! passes its event time, which is when a reader of the online store sees its effect. Events
//! carry their origin as their event time, so the figure includes the time policy's own wait
//! (up to one tick, plus the lateness): the summary states both.

pub mod http;
pub mod serve;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use rewind_connectors::{ConnectorError, EmbeddedCluster, KafkaSource, Producer};
use serde::Serialize;

use crate::embedded::{EVENTS_TOPIC, TITLES_TOPIC};
use crate::engine::{self, EngineError, LogSource, RunConfig, RunSummary, Shared};
use crate::privacy::Pseudonymizer;
use crate::time::TimePolicy;
use crate::workload::{GenConfig, Generator};

/// Events handed from the producer to the monitor at a time.
const ORIGIN_BATCH: usize = 2_048;

/// How fast the producer sends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Open loop: this many events per second, whatever the pipeline does.
    Rate(u64),
    /// As fast as the pipeline keeps up (bounded by what the log may hold unread).
    Max,
}

/// A burst: `factor` times the rate, from `at` for `length` (a premiere).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spike {
    pub factor: f64,
    #[serde(rename = "at_s")]
    #[serde(serialize_with = "secs")]
    pub at: Duration,
    #[serde(rename = "length_s")]
    #[serde(serialize_with = "secs")]
    pub length: Duration,
}

impl std::str::FromStr for Spike {
    type Err = String;

    /// `3x@30s`, or `3x@30s+10s` for a spike of other than 10 s.
    fn from_str(s: &str) -> Result<Spike, String> {
        let bad = || format!("{s:?} is not a spike like 3x@30s or 3x@30s+10s");
        let (factor, rest) = s.split_once("x@").ok_or_else(bad)?;
        let (at, length) = rest.split_once('+').unwrap_or((rest, "10s"));
        let factor: f64 = factor.parse().map_err(|_| bad())?;
        if !(factor.is_finite() && factor > 0.0 && factor <= 1000.0) {
            return Err(format!("spike factor {factor} is not in (0, 1000]"));
        }
        Ok(Spike {
            factor,
            at: parse_duration(at)?,
            length: parse_duration(length)?,
        })
    }
}

/// `90`, `90s`, `2m`, `1500ms`: seconds unless a unit says otherwise.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 30s, 2m or 500ms");
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let secs = value * scale;
    if !(secs.is_finite() && (0.0..=7.0 * 86_400.0).contains(&secs)) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// One benchmark run.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// A real cluster; `None` starts the embedded one.
    pub brokers: Option<String>,
    /// Topic names on a real cluster (fresh ones per run by default).
    pub events_topic: String,
    pub titles_topic: String,
    pub partitions: u32,
    pub viewers: u32,
    pub titles: u32,
    pub seed: u64,
    pub load: Load,
    pub spike: Option<Spike>,
    pub duration: Duration,
    /// Events and freshness before this are not measured: the dataflow and the caches fill.
    pub warmup: Duration,
    pub workers: usize,
    pub policy: TimePolicy,
    pub commit_interval: Duration,
    pub store_dir: PathBuf,
    /// The store's retention, in ms of event time: short ones make the purge run in the bench.
    pub retention_ms: u64,
}

/// What a run measured. Serialized as the `--json` file.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub cluster: String,
    pub load: Load,
    pub spike: Option<Spike>,
    pub viewers: u32,
    pub titles: u32,
    pub partitions: u32,
    pub workers: usize,
    pub tick_ms: u64,
    pub lateness_ms: u64,
    pub commit_interval_ms: u64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub cores: usize,
    /// Events per second over the measured span (after the warm-up).
    pub rates: Rates,
    pub totals: Totals,
    /// From origin to readable in the online store, over events produced after the warm-up.
    pub freshness_ms: Freshness,
    pub rss_mib: Rss,
    /// Once a second: what had been produced, read and committed, and the consumer lag.
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rates {
    pub produced: f64,
    pub consumed: f64,
    pub committed: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Totals {
    pub produced: u64,
    pub consumed: u64,
    /// Events whose effect was readable in the store before the run ended.
    pub committed: u64,
    pub late_events: u64,
    pub dead_letters: u64,
    pub changes_written: u64,
    /// History rows the retention purged during the run.
    pub history_purged: u64,
    /// Seconds the writer spent purging, and inside store commits (the purge included).
    pub purge_s: f64,
    pub commit_s: f64,
    /// History blocks the purge rewrote (without the purged entries) or removed.
    pub blocks_purged: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Freshness {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rss {
    pub peak: f64,
    pub end: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub produced: u64,
    pub consumed: u64,
    pub committed: u64,
    /// Records in the events topic not yet read by the pipeline.
    pub lag: Option<u64>,
    pub rss_mib: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Kafka(#[from] ConnectorError),
    #[error("the producer thread panicked")]
    ProducerPanicked,
}

/// What the producer tells the monitor: (event time, origin in µs since the epoch) per event.
type Origins = Vec<(u64, u64)>;

/// Runs one benchmark and returns its figures. The engine writes to `config.store_dir`.
pub fn ingest(config: &IngestConfig, door: Pseudonymizer) -> Result<IngestReport, BenchError> {
    // The embedded cluster must outlive every client, so it lives in this frame.
    let embedded = match &config.brokers {
        None => Some(EmbeddedCluster::start()?),
        Some(_) => None,
    };
    let (brokers, events_topic, titles_topic) = match (&embedded, &config.brokers) {
        (Some(cluster), _) => {
            cluster.create_topic(EVENTS_TOPIC, config.partitions)?;
            cluster.create_topic(TITLES_TOPIC, 1)?;
            let brokers = cluster.bootstrap_servers().to_string();
            (brokers, EVENTS_TOPIC.to_string(), TITLES_TOPIC.to_string())
        }
        (None, Some(brokers)) => {
            rewind_connectors::ensure_topic(brokers, &config.events_topic, config.partitions)?;
            rewind_connectors::ensure_topic(brokers, &config.titles_topic, 1)?;
            let brokers = brokers.clone();
            (
                brokers,
                config.events_topic.clone(),
                config.titles_topic.clone(),
            )
        }
        (None, None) => unreachable!("either embedded or brokers"),
    };
    let partitions = KafkaSource::connect(&brokers)?
        .topic_info(&events_topic)?
        .watermarks
        .len() as u32;

    let start_wall_ms = now_us() / 1000;
    let generator = Generator::new(GenConfig {
        viewers: config.viewers,
        titles: config.titles,
        seed: config.seed,
        start_ms: start_wall_ms,
        // Disorder within the lateness, as a well-behaved producer fleet sends it: the
        // benchmark measures the pipeline, not late-event handling.
        disorder_ms: GenConfig::default()
            .disorder_ms
            .min(config.policy.lateness_ms),
        ..GenConfig::default()
    });
    // A real broker may pay per produce request (tansu: a SQLite transaction per partition
    // per request), and with 5 ms batches it, not the pipeline, set the pace: 50 ms of linger
    // is a known, small share of the freshness measured.
    let linger = match embedded {
        Some(_) => Duration::from_millis(5),
        None => Duration::from_millis(50),
    };
    let producer = Producer::connect_lingering(&brokers, linger)?;
    let titles_ts = Some(start_wall_ms as i64 - 60_000);
    for title in generator.title_records() {
        producer.send(
            &titles_topic,
            Some(title.key.as_bytes()),
            title.json.as_bytes(),
            titles_ts,
        )?;
    }
    producer.flush(Duration::from_secs(60))?;

    let shared = Arc::new(Shared::default());
    let run = RunConfig {
        source: LogSource::Kafka {
            brokers: brokers.clone(),
        },
        events_topic: events_topic.clone(),
        titles_topic: Some(titles_topic),
        store_dir: config.store_dir.clone(),
        policy: config.policy,
        workers: config.workers,
        until_caught_up: false,
        seal: false,
        titles_from_start: false,
        idle: Duration::from_secs(2),
        max_outage: Duration::from_secs(300),
        commit_interval: config.commit_interval,
        door,
        consent: None,
        erasures: Default::default(),
        log_id: format!("bench:{brokers}/{events_topic}:{start_wall_ms}"),
        retention_ms: config.retention_ms,
    };
    let engine_shared = shared.clone();
    let engine = std::thread::Builder::new()
        .name("rewind-engine".into())
        .spawn(move || engine::run(run, engine_shared))
        .expect("spawning the engine thread");

    let (tx, rx) = sync_channel::<Origins>(1024);
    let limit = embedded
        .as_ref()
        .map(|_| crate::embedded::MAX_BEHIND_PER_PARTITION * u64::from(partitions.max(1)));
    let plan = ProducePlan {
        load: config.load,
        spike: config.spike,
        duration: config.duration,
        limit,
        topic: events_topic.clone(),
    };
    let producer_shared = shared.clone();
    let producer = std::thread::Builder::new()
        .name("rewind-bench-producer".into())
        .spawn(move || produce(producer, generator, &plan, &producer_shared, tx))
        .expect("spawning the producer thread");

    let lag_source = KafkaSource::connect(&brokers)?;
    let mut monitor = Monitor::new(config.warmup, rx);
    monitor.watch(
        &shared,
        &engine,
        &producer,
        &lag_source,
        &events_topic,
        config.duration,
    );
    shared.stop();
    let produced = producer.join().map_err(|_| BenchError::ProducerPanicked)?;
    let summary = engine
        .join()
        .map_err(|_| EngineError::Workers("engine thread panicked".into()))??;
    let produced = produced?;
    Ok(monitor.report(config, &brokers, embedded.is_some(), produced, &summary))
}

struct ProducePlan {
    load: Load,
    spike: Option<Spike>,
    duration: Duration,
    /// On the embedded cluster: how far the pipeline may trail before the producer waits.
    limit: Option<u64>,
    topic: String,
}

impl ProducePlan {
    /// Events per second at `t` into the run.
    fn rate_at(&self, t: Duration) -> Option<f64> {
        let Load::Rate(rate) = self.load else {
            return None;
        };
        let factor = match self.spike {
            Some(s) if t >= s.at && t < s.at + s.length => s.factor,
            _ => 1.0,
        };
        Some(rate as f64 * factor)
    }
}

/// Sends generated events until the duration is up; returns how many were sent.
fn produce(
    producer: Producer,
    generator: Generator,
    plan: &ProducePlan,
    shared: &Shared,
    tx: SyncSender<Origins>,
) -> Result<u64, ConnectorError> {
    let started = Instant::now();
    let start_us = now_us();
    // Open loop: the next event's due time, advanced by 1/rate after each event.
    let mut due = Duration::ZERO;
    let mut produced = 0u64;
    let mut origins = Vec::with_capacity(ORIGIN_BATCH);
    for mut record in generator {
        if shared.stopping() || started.elapsed() >= plan.duration {
            break;
        }
        let origin_us = match plan.rate_at(due) {
            Some(rate) => {
                let ahead = due.saturating_sub(started.elapsed());
                if ahead > Duration::from_micros(200) {
                    std::thread::sleep(ahead);
                }
                let origin = start_us + due.as_micros() as u64;
                due += Duration::from_secs_f64(1.0 / rate.max(1e-3));
                origin
            }
            None => now_us(),
        };
        if produced.is_multiple_of(1024) {
            producer.poll();
            wait_for_room(plan.limit, produced, shared);
        }
        // The generator's disorder (events stamped early) carries over to the wall clock.
        let early = record.due_ms - record.ts_ms;
        let ts = (origin_us / 1000).saturating_sub(early);
        record.restamp(ts);
        producer.send(
            &plan.topic,
            Some(record.key.as_bytes()),
            record.json.as_bytes(),
            Some(ts as i64),
        )?;
        produced += 1;
        origins.push((ts, origin_us));
        if origins.len() == ORIGIN_BATCH {
            let batch = std::mem::replace(&mut origins, Vec::with_capacity(ORIGIN_BATCH));
            // The monitor gone means the run is ending.
            let _ = tx.send(batch);
        }
    }
    let _ = tx.send(origins);
    producer.flush(Duration::from_secs(60))?;
    Ok(produced)
}

fn wait_for_room(limit: Option<u64>, produced: u64, shared: &Shared) {
    let Some(limit) = limit else {
        return;
    };
    while produced.saturating_sub(shared.counters().events) > limit && !shared.stopping() {
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Samples the engine and turns frontier advances into freshness figures.
struct Monitor {
    rx: Receiver<Origins>,
    warmup: Duration,
    started: Instant,
    /// Produced events not yet readable, by event time.
    pending: BinaryHeap<Reverse<(u64, u64)>>,
    freshness: Histogram<u64>,
    produced: u64,
    committed: u64,
    frontier: u64,
    samples: Vec<Sample>,
    /// (produced, consumed, committed, when) as the warm-up ended, and as production ended:
    /// the measured span.
    at_warmup: Option<Mark>,
    at_end: Option<Mark>,
    peak_rss: f64,
}

impl Monitor {
    fn new(warmup: Duration, rx: Receiver<Origins>) -> Monitor {
        Monitor {
            rx,
            warmup,
            started: Instant::now(),
            pending: BinaryHeap::new(),
            // 1 µs to 1 hour at 3 significant digits.
            freshness: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            produced: 0,
            committed: 0,
            frontier: 0,
            samples: Vec::new(),
            at_warmup: None,
            at_end: None,
            peak_rss: 0.0,
        }
    }

    fn mark(&self, shared: &Shared) -> Mark {
        Mark {
            produced: self.produced,
            consumed: shared.counters().events,
            committed: self.committed,
            at: Instant::now(),
        }
    }

    fn watch(
        &mut self,
        shared: &Shared,
        engine: &JoinHandle<Result<RunSummary, EngineError>>,
        producer: &JoinHandle<Result<u64, ConnectorError>>,
        lag_source: &KafkaSource,
        topic: &str,
        duration: Duration,
    ) {
        let mut next_sample = Instant::now();
        loop {
            let producer_done = self.absorb();
            self.observe(shared);
            if Instant::now() >= next_sample {
                next_sample += Duration::from_secs(1);
                self.sample(shared, lag_source, topic);
            }
            if self.at_warmup.is_none() && self.started.elapsed() >= self.warmup {
                self.at_warmup = Some(self.mark(shared));
            }
            if self.at_end.is_none() && (producer_done || self.started.elapsed() >= duration) {
                self.at_end = Some(self.mark(shared));
            }
            if engine.is_finished() || shared.stopping() {
                break;
            }
            if producer_done && producer.is_finished() {
                // Give the pipeline a moment to make the last events readable.
                self.settle(shared, Duration::from_secs(5));
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.sample(shared, lag_source, topic);
    }

    /// Takes the producer's new origins; true once the producer has hung up.
    fn absorb(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(batch) => {
                    self.produced += batch.len() as u64;
                    self.pending.extend(batch.into_iter().map(Reverse));
                }
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
    }

    /// Every event with `ts` below the committed frontier is now readable.
    fn observe(&mut self, shared: &Shared) {
        let frontier = shared.frontier_ms();
        if frontier <= self.frontier {
            return;
        }
        self.frontier = frontier;
        let now = now_us();
        let measured_from = self.warmup_origin_us();
        while let Some(Reverse((ts, origin))) = self.pending.peek().copied() {
            if ts >= frontier {
                break;
            }
            self.pending.pop();
            self.committed += 1;
            if origin >= measured_from {
                let _ = self.freshness.record(now.saturating_sub(origin).max(1));
            }
        }
    }

    fn warmup_origin_us(&self) -> u64 {
        let since_start = self.started.elapsed();
        now_us() - since_start.as_micros() as u64 + self.warmup.as_micros() as u64
    }

    fn settle(&mut self, shared: &Shared, patience: Duration) {
        let until = Instant::now() + patience;
        while !self.pending.is_empty() && Instant::now() < until {
            self.absorb();
            self.observe(shared);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn sample(&mut self, shared: &Shared, lag_source: &KafkaSource, topic: &str) {
        let rss = rss_mib().unwrap_or(0.0);
        self.peak_rss = self.peak_rss.max(rss);
        self.samples.push(Sample {
            t_s: self.started.elapsed().as_secs_f64(),
            produced: self.produced,
            consumed: shared.counters().events,
            committed: self.committed,
            lag: shared.lag(lag_source, &[topic]),
            rss_mib: rss,
        });
    }

    /// The last sample as a mark, for a run stopped before its duration.
    fn mark_now_from_samples(&self) -> Mark {
        let last = self.samples.last();
        Mark {
            produced: self.produced,
            consumed: last.map_or(0, |s| s.consumed),
            committed: self.committed,
            at: Instant::now(),
        }
    }

    fn report(
        &self,
        config: &IngestConfig,
        brokers: &str,
        embedded: bool,
        produced: u64,
        summary: &RunSummary,
    ) -> IngestReport {
        let start = self.at_warmup.unwrap_or(Mark::zero(self.started));
        let end = self.at_end.unwrap_or(self.mark_now_from_samples());
        let span = end.at.duration_since(start.at).as_secs_f64().max(1e-9);
        let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / span;
        let rss_end = self.samples.last().map_or(0.0, |s| s.rss_mib);
        let ms = |q: f64| self.freshness.value_at_quantile(q) as f64 / 1000.0;
        let h = &self.freshness;
        IngestReport {
            cluster: if embedded {
                format!("embedded (librdkafka mock cluster at {brokers})")
            } else {
                brokers.to_string()
            },
            load: config.load,
            spike: config.spike,
            viewers: config.viewers,
            titles: config.titles,
            partitions: config.partitions,
            workers: config.workers,
            tick_ms: config.policy.tick_ms,
            lateness_ms: config.policy.lateness_ms,
            commit_interval_ms: config.commit_interval.as_millis() as u64,
            duration_s: config.duration.as_secs_f64(),
            warmup_s: config.warmup.as_secs_f64(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            rates: Rates {
                produced: rate(start.produced, end.produced),
                consumed: rate(start.consumed, end.consumed),
                committed: rate(start.committed, end.committed),
            },
            totals: Totals {
                produced,
                consumed: summary.counters.events,
                committed: self.committed,
                late_events: summary.counters.late_events,
                dead_letters: summary.counters.dead_letters,
                changes_written: summary.changes_written,
                history_purged: summary.purged.history_entries,
                purge_s: summary.purged.elapsed.as_secs_f64(),
                commit_s: summary.commit_time.as_secs_f64(),
                blocks_purged: summary.purged.blocks_rewritten + summary.purged.blocks_removed,
            },
            freshness_ms: Freshness {
                count: h.len(),
                p50: ms(0.5),
                p99: ms(0.99),
                p999: ms(0.999),
                max: h.max() as f64 / 1000.0,
                mean: h.mean() / 1000.0,
            },
            rss_mib: Rss {
                peak: self.peak_rss.max(peak_rss_mib().unwrap_or(0.0)),
                end: rss_end,
            },
            samples: self.samples.clone(),
        }
    }
}

/// Counts at one moment of a run.
#[derive(Debug, Clone, Copy)]
struct Mark {
    produced: u64,
    consumed: u64,
    committed: u64,
    at: Instant,
}

impl Mark {
    fn zero(at: Instant) -> Mark {
        Mark {
            produced: 0,
            consumed: 0,
            committed: 0,
            at,
        }
    }
}

impl IngestReport {
    /// The human summary: one table.
    pub fn table(&self) -> String {
        let load = match self.load {
            Load::Rate(r) => format!("open loop at {r} events/s"),
            Load::Max => "max (as fast as the pipeline keeps up)".into(),
        };
        let spike = self.spike.map_or(String::new(), |s| {
            format!(
                ", spike {}x at {}s for {}s",
                s.factor,
                s.at.as_secs_f64(),
                s.length.as_secs_f64()
            )
        });
        let max_lag = self.samples.iter().filter_map(|s| s.lag).max();
        let f = &self.freshness_ms;
        let rows = [
            ("cluster", self.cluster.clone()),
            ("load", format!("{load}{spike}")),
            (
                "shape",
                format!(
                    "{} viewers, {} titles, {} partitions, {} worker(s), {} cores",
                    self.viewers, self.titles, self.partitions, self.workers, self.cores
                ),
            ),
            (
                "time policy",
                format!(
                    "tick {} ms, lateness {} ms, commit every {} ms",
                    self.tick_ms, self.lateness_ms, self.commit_interval_ms
                ),
            ),
            (
                "measured",
                format!(
                    "{:.0} s after a {:.0} s warm-up",
                    self.duration_s - self.warmup_s,
                    self.warmup_s
                ),
            ),
            ("produced", format!("{:.0} events/s", self.rates.produced)),
            ("consumed", format!("{:.0} events/s", self.rates.consumed)),
            (
                "committed",
                format!(
                    "{:.0} events/s (readable in the store)",
                    self.rates.committed
                ),
            ),
            (
                "freshness",
                format!(
                    "p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms ({} events)",
                    f.p50, f.p99, f.p999, f.max, f.count
                ),
            ),
            (
                "consumer lag",
                max_lag.map_or("?".into(), |l| format!("max {l} records")),
            ),
            (
                "rss",
                format!(
                    "peak {:.0} MiB, end {:.0} MiB",
                    self.rss_mib.peak, self.rss_mib.end
                ),
            ),
            (
                "writer",
                format!(
                    "{:.2} s in commits, {:.2} s of it purging ({} history blocks rewritten)",
                    self.totals.commit_s, self.totals.purge_s, self.totals.blocks_purged
                ),
            ),
            (
                "totals",
                format!(
                    "{} produced, {} consumed, {} committed, {} late, {} dead letters, {} changes written, {} purged",
                    self.totals.produced,
                    self.totals.consumed,
                    self.totals.committed,
                    self.totals.late_events,
                    self.totals.dead_letters,
                    self.totals.changes_written,
                    self.totals.history_purged
                ),
            ),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect()
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// This process's resident set, from /proc (Linux); `None` elsewhere.
fn rss_mib() -> Option<f64> {
    proc_status_kib("VmRSS:").map(|k| k as f64 / 1024.0)
}

fn peak_rss_mib() -> Option<f64> {
    proc_status_kib("VmHWM:").map(|k| k as f64 / 1024.0)
}

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spikes_and_durations_parse() {
        let s: Spike = "3x@30s".parse().unwrap();
        assert_eq!(
            (s.factor, s.at, s.length),
            (3.0, Duration::from_secs(30), Duration::from_secs(10))
        );
        let s: Spike = "1.5x@2m+500ms".parse().unwrap();
        assert_eq!(
            (s.factor, s.at, s.length),
            (1.5, Duration::from_secs(120), Duration::from_millis(500))
        );
        for bad in [
            "3@30s",
            "x@30s",
            "0x@1s",
            "-2x@1s",
            "3x@",
            "3x@30q",
            "nanx@1s",
            "3x@1e300s",
        ] {
            assert!(bad.parse::<Spike>().is_err(), "{bad} parsed");
        }
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn a_spike_multiplies_the_rate_for_its_length() {
        let plan = ProducePlan {
            load: Load::Rate(1000),
            spike: Some("3x@10s+5s".parse().unwrap()),
            duration: Duration::from_secs(30),
            limit: None,
            topic: String::new(),
        };
        assert_eq!(plan.rate_at(Duration::from_secs(9)), Some(1000.0));
        assert_eq!(plan.rate_at(Duration::from_secs(10)), Some(3000.0));
        assert_eq!(plan.rate_at(Duration::from_secs(15)), Some(1000.0));
    }

    #[test]
    fn rss_is_read_from_proc() {
        let rss = rss_mib().unwrap();
        assert!(rss > 1.0 && peak_rss_mib().unwrap() >= rss);
    }
}
