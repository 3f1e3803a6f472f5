//! What the workers, the writer and the status line share: counters, the stop flag, the first
//! error. Plain atomics: they are read once a second and written once a batch.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

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
    /// Consent records beyond the lateness: applied at their partition's frontier.
    pub late_consent: u64,
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
            consents_in_force: AtomicI64::default(),
            frontier_ms: AtomicU64::default(),
            changes_written: AtomicU64::default(),
            max_time_ms: AtomicU64::default(),
            input_time_ms: AtomicU64::default(),
            drained_workers: AtomicUsize::default(),
            final_input_ms: AtomicU64::new(u64::MAX),
            outage: Mutex::default(),
            positions: Mutex::default(),
        }
    }
}

impl Shared {
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

    /// Records between what the workers have read and the end of each partition of `topics`,
    /// as `source` reports the logs now; `None` when the cluster does not answer.
    pub fn lag(&self, source: &rewind_connectors::KafkaSource, topics: &[&str]) -> Option<u64> {
        let positions = self.positions();
        let mut lag = 0;
        for topic in topics {
            let info = source.topic_info(topic).ok()?;
            for (p, (low, high)) in info.watermarks.iter().enumerate() {
                let read = positions
                    .iter()
                    .find(|(t, q, _)| t == topic && *q as usize == p);
                lag += high.saturating_sub(read.map_or(*low, |r| r.2));
            }
        }
        Some(lag)
    }
}
