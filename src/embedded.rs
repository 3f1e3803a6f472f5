//! The embedded default of `rewind run`: an in-process Kafka cluster (librdkafka's mock
//! cluster, the real wire protocol), the workload generator producing into it live, and the
//! engine consuming it, all in one process.
//!
//! The mock cluster keeps only the newest ~100k messages (or 5 MiB) per partition, so the
//! generator never lets the pipeline fall that far behind: it pauses, and says so when it is
//! paced (with `--rate max` pausing is the point). The log dies with the process, so a new
//! embedded run never continues an old store: it moves the old file aside, unless another run
//! is still writing it (its log is alive then), which it refuses.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::TryRngCore;
use rewind_connectors::{ConnectorError, EmbeddedCluster, Producer};
use rewind_state::{Store, StoreError};

use crate::engine::{
    self, ConsentConfig, EngineError, ErasureConfig, LogSource, RunConfig, RunSummary, Shared,
};
use crate::privacy::Pseudonymizer;
use crate::time::TimePolicy;
use crate::workload::{
    ConsentShape, ConsentStream, ErasureShape, ErasureStream, GenConfig, Generator,
};
use rewind_dataflows::ConsentRules;

pub const EVENTS_TOPIC: &str = "events";
pub const TITLES_TOPIC: &str = "titles";
pub const CONSENT_TOPIC: &str = "consent";
/// The embedded erasure topic: the generator's occasional erasures.
pub const ERASURE_TOPIC: &str = "erasure";
/// Records the pipeline may trail the generator by, per partition. The mock cluster keeps the
/// newest ~100k messages or 5 MiB per partition, whichever is less: about 20k generated
/// records of ~250 bytes. 8k leaves room for uneven partitions and a slow moment.
pub const MAX_BEHIND_PER_PARTITION: u64 = 8_000;

/// How fast the generator produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Event time follows the wall clock: the load of `viewers` concurrent viewers.
    RealTime,
    /// A fixed number of events per second (simulated time runs faster or slower).
    Rate(u64),
    /// As fast as the pipeline keeps up.
    Max,
}

#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    pub store_dir: PathBuf,
    pub workers: usize,
    pub partitions: u32,
    pub generator: GenConfig,
    pub pace: Pace,
    pub policy: TimePolicy,
    pub door: Pseudonymizer,
    /// How long the store keeps what it holds, in ms of event time.
    pub retention_ms: u64,
    /// With rules, the generator also produces consent records (the `consent` topic, as many
    /// partitions as the events) and the engine gates by them.
    pub consent: Option<ConsentRules>,
}

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "store {} is being written by another rewind run (pid unknown); stop it or pass another \
         --store",
        dir.display()
    )]
    StoreInUse { dir: PathBuf },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Source(#[from] ConnectorError),
}

/// A running embedded pipeline.
pub struct EmbeddedRun {
    // Dropped last: the cluster must outlive every client.
    engine: Option<JoinHandle<Result<RunSummary, EngineError>>>,
    generator: Option<JoinHandle<Result<u64, ConnectorError>>>,
    shared: Arc<Shared>,
    pub brokers: String,
    pub moved_aside: Option<PathBuf>,
    _cluster: EmbeddedCluster,
}

/// Starts the cluster, the generator and the engine.
pub fn start(config: EmbeddedConfig, shared: Arc<Shared>) -> Result<EmbeddedRun, EmbeddedError> {
    let moved_aside = move_old_store_aside(&config.store_dir)?;
    let cluster = EmbeddedCluster::start()?;
    cluster.create_topic(EVENTS_TOPIC, config.partitions)?;
    cluster.create_topic(TITLES_TOPIC, 1)?;
    if config.consent.is_some() {
        cluster.create_topic(CONSENT_TOPIC, config.partitions)?;
    }
    // Erasures are rare: one partition holds them all.
    cluster.create_topic(ERASURE_TOPIC, 1)?;
    let brokers = cluster.bootstrap_servers().to_string();
    let start_ms = now_ms();
    let gen_config = GenConfig {
        start_ms,
        ..config.generator.clone()
    };
    let generator = Generator::new(gen_config.clone());
    let consent_stream = config
        .consent
        .is_some()
        .then(|| ConsentStream::new(&gen_config, ConsentShape::default()));
    let erasure_stream = ErasureStream::new(&gen_config, ErasureShape::default());
    produce_titles(&brokers, &generator, start_ms)?;

    let run = RunConfig {
        source: LogSource::Kafka {
            brokers: brokers.clone(),
        },
        events_topic: EVENTS_TOPIC.into(),
        titles_topic: Some(TITLES_TOPIC.into()),
        store_dir: config.store_dir.clone(),
        policy: config.policy,
        workers: config.workers,
        until_caught_up: false,
        seal: false,
        titles_from_start: false,
        idle: Duration::from_secs(2),
        max_outage: Duration::from_secs(300),
        commit_interval: Duration::from_millis(100),
        door: config.door.clone(),
        consent: config.consent.clone().map(|rules| ConsentConfig {
            topic: CONSENT_TOPIC.into(),
            rules,
        }),
        erasures: ErasureConfig {
            topic: ERASURE_TOPIC.into(),
        },
        log_id: format!(
            "embedded:{:016x}",
            rand::rngs::OsRng.try_next_u64().unwrap_or(start_ms)
        ),
        retention_ms: config.retention_ms,
    };
    let engine_shared = shared.clone();
    let engine = std::thread::Builder::new()
        .name("rewind-engine".into())
        .spawn(move || engine::run(run, engine_shared))
        .expect("spawning the engine thread");
    let gen_shared = shared.clone();
    let gen_brokers = brokers.clone();
    let pace = config.pace;
    let limit = MAX_BEHIND_PER_PARTITION * u64::from(config.partitions.max(1));
    let generator = std::thread::Builder::new()
        .name("rewind-generator".into())
        .spawn(move || {
            let sources = Feed {
                generator,
                consent: consent_stream.map(Iterator::peekable),
                erasures: erasure_stream.peekable(),
            };
            feed(&gen_brokers, sources, pace, limit, &gen_shared)
        })
        .expect("spawning the generator thread");
    Ok(EmbeddedRun {
        engine: Some(engine),
        generator: Some(generator),
        shared,
        brokers,
        moved_aside,
        _cluster: cluster,
    })
}

impl EmbeddedRun {
    /// Whether the engine has stopped (asked to, or on an error).
    pub fn finished(&self) -> bool {
        self.engine.as_ref().is_none_or(|e| e.is_finished())
    }

    /// Stops the generator and the engine, and returns what the engine did.
    pub fn stop(mut self) -> Result<RunSummary, EngineError> {
        self.shared.stop();
        let generated = self.generator.take().map(|g| g.join());
        let summary = self
            .engine
            .take()
            .map(|e| e.join())
            .expect("engine joined once");
        let summary = summary.map_err(|_| EngineError::Workers("engine thread panicked".into()))?;
        match generated {
            Some(Ok(Err(e))) => Err(e.into()),
            Some(Err(_)) => Err(EngineError::Workers("generator thread panicked".into())),
            _ => summary,
        }
    }
}

fn produce_titles(brokers: &str, generator: &Generator, start_ms: u64) -> Result<(), EngineError> {
    let producer = Producer::connect(brokers)?;
    // A minute before the first event, so every event sees its title's metadata.
    let ts = start_ms.saturating_sub(60_000) as i64;
    for title in generator.title_records() {
        producer.send(
            TITLES_TOPIC,
            Some(title.key.as_bytes()),
            title.json.as_bytes(),
            Some(ts),
        )?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

/// What the generator thread produces: events, and consent and erasure records merged in by
/// due time.
struct Feed {
    generator: Generator,
    consent: Option<std::iter::Peekable<ConsentStream>>,
    erasures: std::iter::Peekable<ErasureStream>,
}

/// Produces the generator's records until asked to stop; returns how many.
fn feed(
    brokers: &str,
    generator: Feed,
    pace: Pace,
    limit: u64,
    shared: &Shared,
) -> Result<u64, ConnectorError> {
    let result = feed_inner(brokers, generator, pace, limit, shared);
    if result.is_err() {
        shared.stop();
    }
    result
}

fn feed_inner(
    brokers: &str,
    mut feed: Feed,
    pace: Pace,
    limit: u64,
    shared: &Shared,
) -> Result<u64, ConnectorError> {
    let producer = Producer::connect(brokers)?;
    let started = Instant::now();
    let mut produced = 0u64;
    let mut warned = false;
    for record in feed.generator {
        // Consent records due by this event's time go first, as a real service sends them.
        while let Some(consent) = feed
            .consent
            .as_mut()
            .and_then(|c| c.next_if(|c| c.due_ms <= record.due_ms))
        {
            let key = Some(consent.key.as_bytes());
            let ts = Some(consent.ts_ms as i64);
            producer.send(CONSENT_TOPIC, key, consent.json.as_bytes(), ts)?;
            produced += 1;
        }
        while let Some(erasure) = feed.erasures.next_if(|e| e.due_ms <= record.due_ms) {
            let key = Some(erasure.key.as_bytes());
            let ts = Some(erasure.ts_ms as i64);
            producer.send(ERASURE_TOPIC, key, erasure.json.as_bytes(), ts)?;
            produced += 1;
        }
        if shared.stopping() {
            break;
        }
        wait_for_pace(pace, record.ts_ms, produced, started, shared);
        if produced.is_multiple_of(1024) {
            producer.poll();
            while produced.saturating_sub(shared.counters().records) > limit && !shared.stopping() {
                if !warned && pace != Pace::Max {
                    warned = true;
                    eprintln!(
                        "rewind: the pipeline is {limit} events behind the generator; the \
                         embedded log keeps only ~5 MiB per partition, so the generator pauses \
                         until it catches up"
                    );
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let key = Some(record.key.as_bytes());
        producer.send(
            EVENTS_TOPIC,
            key,
            record.json.as_bytes(),
            Some(record.ts_ms as i64),
        )?;
        produced += 1;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(produced)
}

fn wait_for_pace(pace: Pace, ts_ms: u64, produced: u64, started: Instant, shared: &Shared) {
    loop {
        let ahead = match pace {
            Pace::Max => return,
            Pace::RealTime => Duration::from_millis(ts_ms.saturating_sub(now_ms())),
            Pace::Rate(rate) => {
                let due = Duration::from_secs_f64(produced as f64 / rate.max(1) as f64);
                due.saturating_sub(started.elapsed())
            }
        };
        if ahead.is_zero() || shared.stopping() {
            return;
        }
        std::thread::sleep(ahead.min(Duration::from_millis(50)));
    }
}

/// An embedded log dies with its process: a store built from an earlier one is moved aside.
/// But a store another run still writes has a live log: that run holds redb's lock on the
/// file, and the store is left alone.
fn move_old_store_aside(dir: &Path) -> Result<Option<PathBuf>, EmbeddedError> {
    let file = dir.join(rewind_state::FILE_NAME);
    if !file.exists() {
        return Ok(None);
    }
    // Held across the rename, so no run can start writing the file in between.
    let _held = match Store::open(dir) {
        Ok(store) => Some(store),
        Err(StoreError::Busy { .. }) => return Err(EmbeddedError::StoreInUse { dir: dir.into() }),
        // A file redb cannot open is no live run's store; it is kept aside all the same.
        Err(_) => None,
    };
    let aside = dir.join(format!(
        "{}.{}.old",
        rewind_state::FILE_NAME,
        now_ms() / 1000
    ));
    std::fs::rename(&file, &aside).map_err(|source| EngineError::Io {
        what: format!("moving {} aside", file.display()),
        source,
    })?;
    Ok(Some(aside))
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
