//! The engine: Kafka partitions → privacy door → one feature dataflow per timely worker →
//! one store writer.
//!
//! Each worker reads the partitions `p` with `p % workers == index`, places every event in
//! logical time by its partition's clock ([`crate::time`]), and feeds the dataflow. When the
//! dataflow's frontier passes a tick, the worker hands the tick's output, with its read
//! positions and dead letters, to the writer thread, which lands the ticks every worker has
//! completed in one store transaction.
//!
//! Restart: the log is the source of truth and there is no checkpoint yet, so a restarted run
//! re-reads each partition from the start of the log to rebuild the dataflow's state, and
//! writes only the ticks at or after the store's frontier. Placement depends only on each
//! partition's own prefix, so the replayed ticks equal those an uninterrupted run would write.

mod pool;
mod shared;
mod worker;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::Duration;

use rewind_connectors::{ConnectorError, KafkaSource, TopicInfo, file};
use rewind_dataflows::ConsentRules;
use rewind_state::{Store, StoreError};

pub use shared::{Committed, Counters, Shared};

use crate::privacy::Pseudonymizer;
use crate::time::TimePolicy;

/// Where the log is read from.
#[derive(Debug, Clone)]
pub enum LogSource {
    /// A Kafka cluster (HOST:PORT bootstrap servers), the embedded one included.
    Kafka { brokers: String },
    /// JSON-lines files, each a one-partition log read from disk, every line of it: the
    /// events, and optionally the titles (whose records apply from the start of time).
    Files {
        events: PathBuf,
        titles: Option<PathBuf>,
        /// Consent records, read to their end before time moves, like the titles.
        consent: Option<PathBuf>,
        /// Erasure records, read like the consent records.
        erasures: Option<PathBuf>,
    },
}

/// Where erasure records are read from. Erasure is not optional: a store must honour every
/// erasure it is given, so the topic is read whenever it exists. It is read to its end before
/// time moves, and each erasure takes effect as it is read (`docs/privacy.md`).
#[derive(Debug, Clone)]
pub struct ErasureConfig {
    pub topic: String,
}

impl Default for ErasureConfig {
    fn default() -> ErasureConfig {
        ErasureConfig {
            topic: "erasure".into(),
        }
    }
}

/// Which purposes need consent, and where consent records are read from.
#[derive(Debug, Clone)]
pub struct ConsentConfig {
    pub topic: String,
    pub rules: ConsentRules,
}

/// How one `rewind run` reads and writes.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub source: LogSource,
    pub events_topic: String,
    /// The titles reference topic; a run without it has no title metadata.
    pub titles_topic: Option<String>,
    pub store_dir: PathBuf,
    pub policy: TimePolicy,
    pub workers: usize,
    /// Stop once every partition is read up to its end offset as of start, and everything
    /// complete is committed.
    pub until_caught_up: bool,
    /// With `until_caught_up`: declare the log finished, advancing time one tick past the last
    /// event so every tick is committed. Events appended to the log later are then late for
    /// this store (applied at its frontier, and counted), which is why it is a choice.
    pub seal: bool,
    /// A title's first record applies from the start of time (as early as the run's time
    /// still allows), whatever its Kafka timestamp: for a catalogue produced today that is
    /// valid for the whole history. Later records of a title still apply at their timestamps.
    pub titles_from_start: bool,
    /// Live runs only: a partition read to the end of its log, with nothing new for this long,
    /// stops holding time back; events it receives later are placed no earlier than the
    /// current input time. A partition with records left to read always holds time back.
    pub idle: Duration,
    /// How long the cluster may stay unreachable before the run gives up. librdkafka
    /// reconnects by itself; a broker restart or a network blip must not end a run.
    pub max_outage: Duration,
    /// How often the writer lands completed ticks. 100 ms keeps values fresh while a commit's
    /// fsync stays a small share of the writer's time.
    pub commit_interval: Duration,
    pub door: Pseudonymizer,
    /// Consent gating; `None` gates nothing and reads no consent topic: the pipeline of a
    /// store without consent is exactly what it was before consent existed.
    pub consent: Option<ConsentConfig>,
    /// The erasure topic, always read when it exists.
    pub erasures: ErasureConfig,
    /// What the store records as its log: a run refuses a store built from another log.
    pub log_id: String,
    /// How long the store keeps what it holds, in ms of event time: each commit purges what
    /// is older than its frontier minus this (see `docs/privacy.md`). At least one tick, at
    /// most [`rewind_state::MAX_RETENTION_MS`].
    pub retention_ms: u64,
}

/// What a finished run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub counters: Counters,
    pub changes_written: u64,
    /// The store's output frontier after the run (every tick below it is final).
    pub frontier_ms: u64,
    /// Ticks below this were already in the store and were recomputed, not rewritten.
    pub resumed_from_ms: u64,
    /// What the run's commits purged past the retention.
    pub purged: rewind_state::Purged,
    /// Wall time the writer spent inside store commits, the purge included.
    pub commit_time: Duration,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] ConnectorError),
    #[error(transparent)]
    Definitions(#[from] rewind_dataflows::DefinitionErrors),
    #[error("store {dir} was built with {what} {stored}; this run uses {wanted}. {hint}")]
    Mismatch {
        dir: PathBuf,
        what: &'static str,
        stored: String,
        wanted: String,
        hint: String,
    },
    #[error(
        "store {dir} has read {topic}/{partition} up to offset {stored}, but the log ends at \
         {end}: it was built from another log. Use a fresh --store"
    )]
    LogBehindStore {
        dir: PathBuf,
        topic: String,
        partition: u32,
        stored: u64,
        end: u64,
    },
    #[error(
        "the log no longer holds {topic}/{partition} from offset {start} (it now starts at \
         {low}), which store {dir} was built from: its state cannot be rebuilt. Replay the \
         events into a fresh --store"
    )]
    LogTrimmed {
        dir: PathBuf,
        topic: String,
        partition: u32,
        start: u64,
        low: u64,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "the Kafka cluster has not answered for {seconds} s, past --max-outage-s; the store \
         holds everything complete up to then, and a rerun resumes: {last_error}"
    )]
    Outage {
        seconds: u64,
        last_error: ConnectorError,
    },
    #[error(
        "the erasure topic {topic:?} starts at offset {low} of partition {partition}, but store \
         {dir} has applied erasures: the erasures it no longer holds would not be applied \
         again, and the events they erased would come back on this restart. Keep the erasure \
         topic's records (like the titles topic's), or replay into a fresh --store with the \
         erasures given in full"
    )]
    ErasureTopicTrimmed {
        dir: PathBuf,
        topic: String,
        partition: u32,
        low: u64,
    },
    #[error("timely workers failed: {0}")]
    Workers(String),
    #[error(
        "a retention of {retention_ms} ms is {what}: give a duration from one tick \
         ({tick_ms} ms) to 365 days"
    )]
    Retention {
        retention_ms: u64,
        tick_ms: u64,
        what: &'static str,
    },
}

/// The store's retention limit and the feature library's are one limit (VPPA's year).
const _: () = assert!(rewind_state::MAX_RETENTION_MS == rewind_dataflows::window::RETENTION_MS);

/// Refuses a retention the store cannot keep, and says which features' windows reach past it.
///
/// A window longer than the retention is not refused: its values as of a time inside the
/// retention are aggregates the dataflow computes from the log, not rows of the older events,
/// and tying windows to the flag would make one store's history mean different things as an
/// operator lowers it. The warning names them, for an operator who wants no aggregate over
/// older events either (`docs/privacy.md`).
fn check_retention(config: &RunConfig, warnings: &mut Vec<String>) -> Result<(), EngineError> {
    let retention_ms = config.retention_ms;
    let tick_ms = config.policy.tick_ms;
    let what = match retention_ms {
        r if r > rewind_state::MAX_RETENTION_MS => Some("past the 365-day limit"),
        r if r < tick_ms => Some("shorter than one tick"),
        _ => None,
    };
    if let Some(what) = what {
        return Err(EngineError::Retention {
            retention_ms,
            tick_ms,
            what,
        });
    }
    let longer: Vec<&str> = rewind_dataflows::library()
        .iter()
        .filter(|f| f.window().is_some_and(|w| w.millis() > retention_ms))
        .map(|f| f.name)
        .collect();
    if !longer.is_empty() {
        warnings.push(format!(
            "the retention ({retention_ms} ms) is shorter than the windows of {}: their values \
             inside the retention still sum up older events (docs/privacy.md)",
            longer.join(", ")
        ));
    }
    Ok(())
}

/// Which partitions exist and where reading starts and (for a caught-up run) ends.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub events: TopicInfo,
    pub titles: Option<TopicInfo>,
    /// Consent records, when purposes need consent and the topic exists.
    pub consent: Option<TopicInfo>,
    /// Erasure records, when the topic exists.
    pub erasure: Option<TopicInfo>,
    /// The store's frontier when the run started: every tick below it is already written.
    pub resume_frontier_ms: u64,
    /// The store's next offsets when the run started. Records from there on are new to the
    /// store, and land no earlier than `resume_frontier_ms`: the store has sealed those ticks.
    pub resume_offsets: Vec<(String, u32, u64)>,
}

/// Runs the pipeline until `shared` is told to stop or, with `until_caught_up`, until the log
/// as of start is consumed.
pub fn run(config: RunConfig, shared: Arc<Shared>) -> Result<RunSummary, EngineError> {
    let library = rewind_dataflows::library();
    rewind_dataflows::validate(&library, config.policy.tick_ms)?;
    if let Some(consent) = &config.consent {
        let errors = consent.rules.check(&library, config.policy.tick_ms);
        if !errors.is_empty() {
            return Err(rewind_dataflows::DefinitionErrors(errors).into());
        }
    }
    let mut warnings = Vec::new();
    check_retention(&config, &mut warnings)?;
    let mut store = Store::open(&config.store_dir)?;
    // An erasure's scrub copies the whole store: commits go on meanwhile.
    store.scrub_in_background();
    let store = Arc::new(store);
    check_store_settings(&store, &config)?;
    retention_change(&store, &config, &mut warnings)?;
    let mut plan = plan(&config, &mut warnings)?;
    check_erasure_log(&store, &config, &plan)?;
    check_offsets(&store, &config, &plan)?;
    pin_log_starts(&store, &config, &mut plan, &mut warnings)?;
    let snapshot = store.snapshot()?;
    let resumed_from_ms = snapshot.frontier_ms()?.unwrap_or(0);
    plan.resume_frontier_ms = resumed_from_ms;
    plan.resume_offsets = snapshot.next_offsets()?;
    // A restart replays the log before its first commit: until then, the store's figures.
    shared.set_committed(Committed::read(&snapshot)?);
    shared.add_erasures_applied(snapshot.erasures_applied()?);
    drop(snapshot);

    shared.set_store(Some(store.clone()));
    let workers = config.workers.max(1);
    let (tx, rx) = sync_channel(64);
    let writer = writer::Writer::new(
        store,
        &config,
        workers,
        (resumed_from_ms, &plan.resume_offsets),
        shared.clone(),
    );
    let writer = std::thread::Builder::new()
        .name("rewind-writer".into())
        .spawn(move || writer.run(rx))
        .expect("spawning the writer thread");

    let context = Arc::new(worker::Context {
        config: config.clone(),
        plan,
        shared: shared.clone(),
        pool: pool::DecodePool::default(),
    });
    let mut decoders = Decoders::start(&context);
    let tx = std::sync::Mutex::new(tx);
    let guards = timely::execute(timely::Config::process(workers), move |w| {
        let tx = tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let _stop = StopOnPanic(&context.shared);
        worker::run(w, &context, tx)
    })
    .map_err(EngineError::Workers)?;
    let mut worker_error = None;
    for result in guards.join() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => worker_error = worker_error.or(Some(e)),
            // Timely hands over the panic as an opaque payload; its message is on stderr.
            Err(_) => {
                let panicked = EngineError::Workers("a worker panicked, as printed above".into());
                worker_error = worker_error.or(Some(panicked));
            }
        }
    }
    // A panic while decoding a part its reader collected has ended that worker; one in a
    // part nobody collected (read after a stop) reached no worker, and is said here.
    if !decoders.finish() {
        let panicked = EngineError::Workers("a decoding thread panicked, as printed above".into());
        worker_error = worker_error.or(Some(panicked));
    }
    let written = writer.join();
    shared.set_store(None);
    let written = written.map_err(|_| EngineError::Workers("writer panicked".into()))??;
    if let Some(err) = worker_error {
        return Err(err);
    }
    Ok(RunSummary {
        counters: shared.counters(),
        changes_written: written.changes,
        frontier_ms: written.frontier_ms,
        resumed_from_ms,
        purged: written.purged,
        commit_time: written.commit_time,
        warnings,
    })
}

/// The engine's decoding threads, stopped and joined when dropped: on every way out of a run.
struct Decoders {
    decoding: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Decoders {
    fn start(context: &Arc<worker::Context>) -> Decoders {
        let decoding = Arc::new(AtomicBool::new(true));
        // A thread the system refuses is done without: the reader decodes every part that
        // nobody takes.
        let threads = (0..worker::decoding_threads(&context.config.source))
            .filter_map(|i| {
                let (context, decoding) = (context.clone(), decoding.clone());
                std::thread::Builder::new()
                    .name(format!("rewind-decode-{i}"))
                    .spawn(move || worker::decode_for_workers(&context, &decoding))
                    .ok()
            })
            .collect();
        Decoders { decoding, threads }
    }

    /// Stops and joins the threads: whether every one ended without a panic.
    fn finish(&mut self) -> bool {
        self.decoding.store(false, Ordering::Release);
        let mut clean = true;
        for thread in self.threads.drain(..) {
            clean &= thread.join().is_ok();
        }
        clean
    }
}

impl Drop for Decoders {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A worker that panics stops the others: they would otherwise wait for it forever, and the
/// run would hang instead of ending with the panic as its error.
struct StopOnPanic<'a>(&'a Shared);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stop();
        }
    }
}

const META_TICK: &str = "tick_ms";
const META_LATENESS: &str = "lateness_ms";
const META_TITLES_FROM_START: &str = "titles_from_start";
pub const META_LOG: &str = "log";
/// The pseudonym key's fingerprint, never the key: see [`Pseudonymizer::fingerprint`].
pub const META_KEY_FINGERPRINT: &str = "key_fingerprint";
/// The consent rules a store is built with; absent for a store without consent, whose meta
/// stays what it was before consent existed.
pub const META_CONSENT: &str = "consent";

/// The consent rules as the store records them: gated purposes and max age.
fn consent_meta(consent: Option<&ConsentConfig>) -> String {
    match consent {
        None => "none".into(),
        Some(c) => {
            let purposes: Vec<&str> = c.rules.purposes.iter().map(|p| p.as_str()).collect();
            format!(
                "purposes={} max_age_ms={}",
                purposes.join(","),
                c.rules.max_age_ms
            )
        }
    }
}

/// A store's tick, lateness, log and pseudonym key are fixed when it is created: mixing them
/// would make history rows of one store mean different things (with another key, every
/// viewer would live on under two pseudonyms).
fn check_store_settings(store: &Store, config: &RunConfig) -> Result<(), EngineError> {
    let snap = store.snapshot()?;
    let fresh = snap.meta_u64(META_TICK)?.is_none();
    let mismatch = |what, stored: String, wanted: String, hint: &str| EngineError::Mismatch {
        dir: config.store_dir.clone(),
        what,
        stored,
        wanted,
        hint: hint.to_string(),
    };
    let fixed = [
        (META_TICK, config.policy.tick_ms),
        (META_LATENESS, config.policy.lateness_ms),
        // When a title takes effect is part of what every title-joining value means.
        (META_TITLES_FROM_START, u64::from(config.titles_from_start)),
    ];
    for (key, wanted) in fixed {
        match snap.meta_u64(key)? {
            Some(stored) if stored != wanted => {
                let hint = "Pass the store's setting, or replay into a fresh --store";
                return Err(mismatch(key, stored.to_string(), wanted.to_string(), hint));
            }
            Some(_) => {}
            None => store.put_meta(key, &wanted.to_le_bytes())?,
        }
    }
    let fingerprint = config.door.fingerprint();
    let fixed = [
        (
            META_LOG,
            "log",
            config.log_id.as_str(),
            "Use a fresh --store for a different log",
        ),
        (
            META_KEY_FINGERPRINT,
            "the pseudonym key of fingerprint",
            fingerprint.as_str(),
            "Use the key the store was built with (--key-file or REWIND_PSEUDONYM_KEY), or \
             replay the events into a fresh --store",
        ),
    ];
    for (key, what, wanted, hint) in fixed {
        match snap.meta(key)? {
            Some(stored) if stored != wanted.as_bytes() => {
                let stored = String::from_utf8_lossy(&stored).into_owned();
                return Err(mismatch(what, stored, wanted.to_string(), hint));
            }
            Some(_) => {}
            None => store.put_meta(key, wanted.as_bytes())?,
        }
    }
    // Which viewers a value may come from is part of what it means.
    let stored = snap.meta(META_CONSENT)?;
    let stored = stored.map_or("none".into(), |s| String::from_utf8_lossy(&s).into_owned());
    let wanted = consent_meta(config.consent.as_ref());
    if stored != wanted && !(fresh && stored == "none") {
        let hint = "Pass the store's consent settings (--consent-purposes, --consent-max-age), \
                    or replay into a fresh --store";
        return Err(mismatch("consent", stored, wanted, hint));
    }
    if fresh && config.consent.is_some() {
        store.put_meta(META_CONSENT, wanted.as_bytes())?;
    }
    Ok(())
}

/// A run may keep a store's data for less time than the store did (the next commit purges
/// what is now too old) or for longer (up to the limit): history already purged stays purged,
/// and the horizon stands still until the new retention reaches past it.
fn retention_change(
    store: &Store,
    config: &RunConfig,
    warnings: &mut Vec<String>,
) -> Result<(), EngineError> {
    let snap = store.snapshot()?;
    let Some(stored) = snap.retention_ms()? else {
        return Ok(());
    };
    let horizon = snap.retained_from_ms()?;
    if config.retention_ms > stored && horizon > 0 {
        warnings.push(format!(
            "the store kept {stored} ms and this run keeps {} ms: history before {} was \
             purged and stays so; the longer retention applies to what is still there",
            config.retention_ms,
            crate::utc::format_ms(horizon)
        ));
    }
    Ok(())
}

fn plan(config: &RunConfig, warnings: &mut Vec<String>) -> Result<Plan, EngineError> {
    let brokers = match &config.source {
        LogSource::Kafka { brokers } => brokers,
        LogSource::Files {
            events,
            titles,
            consent,
            erasures,
        } => {
            let info = |topic: &str, path: &PathBuf| -> Result<TopicInfo, EngineError> {
                let end = file::count_lines(path)?;
                Ok(TopicInfo {
                    topic: topic.to_string(),
                    watermarks: vec![(0, end)],
                })
            };
            let titles_topic = config.titles_topic.as_deref().unwrap_or("titles");
            let consent_topic = config.consent.as_ref().map(|c| c.topic.as_str());
            let consent = consent.as_ref().zip(consent_topic);
            return Ok(Plan {
                events: info(&config.events_topic, events)?,
                titles: titles.as_ref().map(|t| info(titles_topic, t)).transpose()?,
                consent: consent.map(|(c, topic)| info(topic, c)).transpose()?,
                erasure: erasures
                    .as_ref()
                    .map(|e| info(&config.erasures.topic, e))
                    .transpose()?,
                resume_frontier_ms: 0,
                resume_offsets: Vec::new(),
            });
        }
    };
    let source = KafkaSource::connect(brokers)?;
    let events = source.topic_info(&config.events_topic)?;
    let titles = match &config.titles_topic {
        None => None,
        Some(topic) => match source.topic_info(topic) {
            Ok(info) => Some(info),
            Err(ConnectorError::NoTopic { .. }) => {
                warnings.push(format!(
                    "no titles topic {topic:?}: features see no title metadata"
                ));
                None
            }
            Err(e) => return Err(e.into()),
        },
    };
    let consent = match &config.consent {
        None => None,
        Some(consent) => match source.topic_info(&consent.topic) {
            Ok(info) => Some(info),
            Err(ConnectorError::NoTopic { .. }) => {
                warnings.push(format!(
                    "no consent topic {:?}: no viewer consents, so features serving a gated \
                     purpose hold their defaults",
                    consent.topic
                ));
                None
            }
            Err(e) => return Err(e.into()),
        },
    };
    let erasure = match source.topic_info(&config.erasures.topic) {
        Ok(info) => Some(info),
        Err(ConnectorError::NoTopic { .. }) => {
            warnings.push(format!(
                "no erasure topic {:?}: no erasures are read",
                config.erasures.topic
            ));
            None
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Plan {
        events,
        titles,
        consent,
        erasure,
        resume_frontier_ms: 0,
        resume_offsets: Vec::new(),
    })
}

/// Every run of a store reads each partition from the same first offset, so a restart
/// rebuilds exactly the state the store was written from. The first run records where each
/// partition started; a log trimmed past that since is refused, never silently skipped.
fn pin_log_starts(
    store: &Store,
    config: &RunConfig,
    plan: &mut Plan,
    warnings: &mut Vec<String>,
) -> Result<(), EngineError> {
    let snap = store.snapshot()?;
    let topics = std::iter::once(&mut plan.events)
        .chain(plan.titles.as_mut())
        .chain(plan.consent.as_mut())
        .chain(plan.erasure.as_mut());
    for info in topics {
        for (partition, (low, _)) in info.watermarks.iter_mut().enumerate() {
            let key = format!("log_start/{}/{partition}", info.topic);
            match snap.meta_u64(&key)? {
                Some(start) if *low > start => {
                    return Err(EngineError::LogTrimmed {
                        dir: config.store_dir.clone(),
                        topic: info.topic.clone(),
                        partition: partition as u32,
                        start,
                        low: *low,
                    });
                }
                Some(start) => *low = start,
                None => {
                    if *low > 0 {
                        warnings.push(format!(
                            "{}/{partition} starts at offset {low}: what came before is gone \
                             from the log, and values that needed it are incomplete",
                            info.topic
                        ));
                    }
                    store.put_meta(&key, &low.to_le_bytes())?;
                }
            }
        }
    }
    Ok(())
}

/// A restart re-reads the erasure topic from its start, as it re-reads the events: an erasure
/// topic that lost records while the store had applied erasures would let the events those
/// erasures reached back into the rebuilt state, and into every value written from then on.
fn check_erasure_log(store: &Store, config: &RunConfig, plan: &Plan) -> Result<(), EngineError> {
    let Some(info) = &plan.erasure else {
        return Ok(());
    };
    let trimmed = info.watermarks.iter().enumerate().find(|(_, w)| w.0 > 0);
    let Some((partition, &(low, _))) = trimmed else {
        return Ok(());
    };
    if store.snapshot()?.erasures_applied()? == 0 {
        return Ok(());
    }
    Err(EngineError::ErasureTopicTrimmed {
        dir: config.store_dir.clone(),
        topic: info.topic.clone(),
        partition: partition as u32,
        low,
    })
}

/// A store that has read further than the log holds was built from another log.
fn check_offsets(store: &Store, config: &RunConfig, plan: &Plan) -> Result<(), EngineError> {
    let topics = std::iter::once(&plan.events)
        .chain(plan.titles.as_ref())
        .chain(plan.consent.as_ref())
        .chain(plan.erasure.as_ref());
    for (topic, partition, stored) in store.snapshot()?.next_offsets()? {
        let Some(info) = topics.clone().find(|t| t.topic == topic) else {
            continue;
        };
        let end = info.watermarks.get(partition as usize).map_or(0, |w| w.1);
        if stored > end {
            let dir = config.store_dir.clone();
            return Err(EngineError::LogBehindStore {
                dir,
                topic,
                partition,
                stored,
                end,
            });
        }
    }
    Ok(())
}
