//! What the workers, the writer, the status line and `GET /metrics` share: counters, the stop
//! flag, the first error, what the last commit landed. Plain atomics: they are read once a
//! second (or a scrape) and written once a batch; the mutexes guard a few entries per partition,
//! written once a report or a commit.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rewind_state::{Snapshot, Store, StoreError};

use crate::metrics::{COMMIT_BOUNDS_S, Timings};

/// The counters each commit stores in `meta`, over the log prefix its offsets end.
pub(crate) const META_AS_OF: &str = "as_of_ms";
pub(crate) const META_EVENTS: &str = "events_total";
pub(crate) const META_LATE_EVENTS: &str = "late_events_total";
pub(crate) const META_DEAD_LETTERS: &str = "dead_letters_total";
/// Erasure records read and placed (dead letters aside). The store counts those it applied
/// itself (`erasures_total`).
pub(crate) const META_ERASURE_RECORDS: &str = "erasure_records_total";

/// Cumulative counts over the records read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub records: u64,
    pub events: u64,
    pub late_events: u64,
    pub dead_letters: u64,
    pub titles: u64,
    /// Events naming a title that had no titles record as of their time.
    pub untitled_events: u64,
    /// Consent records read and placed (dead letters aside).
    pub consent_records: u64,
    /// Consent records read after the input time had passed their tick: applied at the
    /// time they were read.
    pub late_consent: u64,
    /// Erasure records read and placed (dead letters aside).
    pub erasure_records: u64,
    /// Erasure records read after the input time had passed their tick (every erasure takes
    /// effect as it is read).
    pub late_erasures: u64,
}

impl Counters {
    pub fn add(&mut self, other: &Counters) {
        self.records += other.records;
        self.events += other.events;
        self.late_events += other.late_events;
        self.dead_letters += other.dead_letters;
        self.titles += other.titles;
        self.untitled_events += other.untitled_events;
        self.consent_records += other.consent_records;
        self.late_consent += other.late_consent;
        self.erasure_records += other.erasure_records;
        self.late_erasures += other.late_erasures;
    }
}

/// What the store holds as of its last commit: the same figures whether the writer publishes
/// them ([`Shared::committed`]) or another process reads them from the file
/// ([`Committed::read`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Every tick strictly below it is final; `None` before the first commit of output.
    pub frontier_ms: Option<u64>,
    /// The tick the online values are as of (`frontier_ms - tick_ms`).
    pub as_of_ms: Option<u64>,
    /// Events read up to the committed next offsets (on time and late).
    pub events: u64,
    pub late_events: u64,
    pub dead_letters: u64,
    /// (topic, partition) → next offset to read, as committed.
    pub next_offsets: Vec<(String, u32, u64)>,
}

impl Committed {
    /// The figures of the newest commit in `snapshot`.
    pub fn read(snapshot: &Snapshot) -> Result<Committed, StoreError> {
        let count = |key| Ok::<_, StoreError>(snapshot.meta_u64(key)?.unwrap_or(0));
        Ok(Committed {
            frontier_ms: snapshot.frontier_ms()?,
            as_of_ms: snapshot.meta_u64(META_AS_OF)?,
            events: count(META_EVENTS)?,
            late_events: count(META_LATE_EVENTS)?,
            dead_letters: count(META_DEAD_LETTERS)?,
            next_offsets: snapshot.next_offsets()?,
        })
    }
}

#[derive(Debug)]
pub struct Shared {
    stop: AtomicBool,
    records: AtomicU64,
    events: AtomicU64,
    late_events: AtomicU64,
    dead_letters: AtomicU64,
    titles: AtomicU64,
    untitled_events: AtomicU64,
    consent_records: AtomicU64,
    late_consent: AtomicU64,
    erasure_records: AtomicU64,
    late_erasures: AtomicU64,
    /// Erasures the store has applied (repeats of a restart not counted), as of the last
    /// commit.
    erasures_applied: AtomicU64,
    /// (viewer, purpose) consents in force, as of the dataflow's latest time.
    consents_in_force: AtomicI64,
    /// Store frontier after the last commit.
    pub(crate) frontier_ms: AtomicU64,
    pub(crate) changes_written: AtomicU64,
    /// The largest logical time any worker placed an event at.
    pub(crate) max_time_ms: AtomicU64,
    /// The largest input time any worker has reached (live runs: idle workers follow it).
    pub(crate) input_time_ms: AtomicU64,
    /// Workers that have read all their partitions (caught-up runs).
    pub(crate) drained_workers: AtomicUsize,
    /// The smallest final input time of the drained workers that hold time back: where a
    /// caught-up run's dataflow frontier ends. `u64::MAX` until one reports.
    pub(crate) final_input_ms: AtomicU64,
    /// Why the cluster is not answering, while it is not.
    outage: Mutex<Option<(std::time::Instant, String)>>,
    /// (topic, partition) → next offset, for lag.
    pub(crate) positions: Mutex<Vec<(String, u32, u64)>>,
    /// What the writer's last commit landed (or the store held at start).
    committed: Mutex<Committed>,
    /// How long the writer's store commits take.
    pub(crate) commit_durations: Timings,
    /// (topic, partition) → end of its log, as [`Shared::lag`] last asked the cluster.
    log_ends: Mutex<Vec<(String, u32, u64)>>,
    /// The store while the engine has it open: what `rewind run --serve` reads through.
    store: Mutex<Option<Arc<Store>>>,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            stop: AtomicBool::default(),
            records: AtomicU64::default(),
            events: AtomicU64::default(),
            late_events: AtomicU64::default(),
            dead_letters: AtomicU64::default(),
            titles: AtomicU64::default(),
            untitled_events: AtomicU64::default(),
            consent_records: AtomicU64::default(),
            late_consent: AtomicU64::default(),
            erasure_records: AtomicU64::default(),
            late_erasures: AtomicU64::default(),
            erasures_applied: AtomicU64::default(),
            consents_in_force: AtomicI64::default(),
            frontier_ms: AtomicU64::default(),
            changes_written: AtomicU64::default(),
            max_time_ms: AtomicU64::default(),
            input_time_ms: AtomicU64::default(),
            drained_workers: AtomicUsize::default(),
            final_input_ms: AtomicU64::new(u64::MAX),
            outage: Mutex::default(),
            positions: Mutex::default(),
            committed: Mutex::default(),
            commit_durations: Timings::new(&COMMIT_BOUNDS_S),
            log_ends: Mutex::default(),
            store: Mutex::default(),
        }
    }
}

impl Shared {
    /// The store the engine writes, once it has opened it and until it ends.
    pub fn store(&self) -> Option<Arc<Store>> {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_store(&self, store: Option<Arc<Store>>) {
        *self.store.lock().unwrap_or_else(|p| p.into_inner()) = store;
    }

    /// Asks every worker to stop after committing what is complete.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, delta: &Counters) {
        self.records.fetch_add(delta.records, Ordering::Relaxed);
        self.events.fetch_add(delta.events, Ordering::Relaxed);
        self.late_events
            .fetch_add(delta.late_events, Ordering::Relaxed);
        self.dead_letters
            .fetch_add(delta.dead_letters, Ordering::Relaxed);
        self.titles.fetch_add(delta.titles, Ordering::Relaxed);
        self.untitled_events
            .fetch_add(delta.untitled_events, Ordering::Relaxed);
        self.consent_records
            .fetch_add(delta.consent_records, Ordering::Relaxed);
        self.late_consent
            .fetch_add(delta.late_consent, Ordering::Relaxed);
        self.erasure_records
            .fetch_add(delta.erasure_records, Ordering::Relaxed);
        self.late_erasures
            .fetch_add(delta.late_erasures, Ordering::Relaxed);
    }

    pub(crate) fn add_erasures_applied(&self, n: u64) {
        self.erasures_applied.fetch_add(n, Ordering::Relaxed);
    }

    /// Erasures the store has applied, as of the last commit (those of earlier runs included).
    pub fn erasures_applied(&self) -> u64 {
        self.erasures_applied.load(Ordering::Relaxed)
    }

    pub(crate) fn add_consents_in_force(&self, diff: i64) {
        self.consents_in_force.fetch_add(diff, Ordering::Relaxed);
    }

    /// (viewer, purpose) consents in force as of the dataflow's latest time, over all workers.
    pub fn consents_in_force(&self) -> u64 {
        self.consents_in_force.load(Ordering::Relaxed).max(0) as u64
    }

    pub fn counters(&self) -> Counters {
        Counters {
            records: self.records.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            late_events: self.late_events.load(Ordering::Relaxed),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
            titles: self.titles.load(Ordering::Relaxed),
            untitled_events: self.untitled_events.load(Ordering::Relaxed),
            consent_records: self.consent_records.load(Ordering::Relaxed),
            late_consent: self.late_consent.load(Ordering::Relaxed),
            erasure_records: self.erasure_records.load(Ordering::Relaxed),
            late_erasures: self.late_erasures.load(Ordering::Relaxed),
        }
    }

    /// The store's output frontier as of the last commit.
    pub fn frontier_ms(&self) -> u64 {
        self.frontier_ms.load(Ordering::Relaxed)
    }

    pub fn changes_written(&self) -> u64 {
        self.changes_written.load(Ordering::Relaxed)
    }

    /// How long the cluster has not answered, and why; `None` while it answers.
    pub fn outage(&self) -> Option<(std::time::Duration, String)> {
        let outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        outage
            .as_ref()
            .map(|(since, why)| (since.elapsed(), why.clone()))
    }

    pub(crate) fn set_outage(&self, why: Option<String>) {
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        match why {
            None => *outage = None,
            Some(why) => {
                let since = outage
                    .as_ref()
                    .map_or_else(std::time::Instant::now, |o| o.0);
                *outage = Some((since, why));
            }
        }
    }

    /// Next offsets read so far, per (topic, partition).
    pub fn positions(&self) -> Vec<(String, u32, u64)> {
        self.positions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_positions(&self, updates: &[(String, u32, u64)]) {
        let mut positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        for (topic, partition, next) in updates {
            match positions
                .iter_mut()
                .find(|(t, p, _)| t == topic && p == partition)
            {
                Some(entry) => entry.2 = *next,
                None => positions.push((topic.clone(), *partition, *next)),
            }
        }
    }

    /// What the store holds as of the writer's last commit.
    pub fn committed(&self) -> Committed {
        self.committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_committed(&self, committed: Committed) {
        *self.committed.lock().unwrap_or_else(|p| p.into_inner()) = committed;
    }

    /// How long the writer's store commits took, so far.
    pub fn commit_durations(&self) -> &Timings {
        &self.commit_durations
    }

    /// The end of each partition's log, as [`Shared::lag`] last found it; empty until then.
    pub fn log_ends(&self) -> Vec<(String, u32, u64)> {
        self.log_ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records between what the workers have read and the end of each partition of `topics`,
    /// as `source` reports the logs now; `None` when the cluster does not answer.
    pub fn lag(&self, source: &rewind_connectors::KafkaSource, topics: &[&str]) -> Option<u64> {
        let positions = self.positions();
        let mut lag = 0;
        let mut ends = Vec::new();
        for topic in topics {
            let info = source.topic_info(topic).ok()?;
            for (p, (low, high)) in info.watermarks.iter().enumerate() {
                let read = positions
                    .iter()
                    .find(|(t, q, _)| t == topic && *q as usize == p);
                lag += high.saturating_sub(read.map_or(*low, |r| r.2));
                ends.push((topic.to_string(), p as u32, *high));
            }
        }
        // Kept for `GET /metrics`, which reports lag per partition without asking again.
        self.set_log_ends(ends);
        Some(lag)
    }

    pub(crate) fn set_log_ends(&self, ends: Vec<(String, u32, u64)>) {
        *self.log_ends.lock().unwrap_or_else(|p| p.into_inner()) = ends;
    }
}
