//! The store writer: collects the workers' reports and lands every tick that all workers have
//! completed, with the read positions and dead letters behind it, in one transaction.
//!
//! History rows come from each tick's consolidated output alone: per key, the value whose
//! count rose is the new value, and a key whose only change is a retraction went back to its
//! default (a tombstone). No copy of the current values is kept here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rewind_dataflows::{EntityId, TimeMs, Value, ViewerId, library};
use rewind_state::{Change, Commit, DeadLetter, Erasure, Purged, Store, StoreError};

use super::shared::{
    META_AS_OF, META_DEAD_LETTERS, META_ERASURE_RECORDS, META_EVENTS, META_LATE_EVENTS,
};
use super::{Committed, Counters, RunConfig, Shared};

/// One output update: ((feature index, entity id), value), time, diff.
pub(crate) type Update = (((u16, EntityId), Value), TimeMs, isize);

/// The store's id of an output entity: a viewer pseudonym as its 128 bits (kept as 16 bytes,
/// with no text in between), any other id as text.
fn store_id(entity: &EntityId) -> rewind_state::EntityId {
    match entity {
        EntityId::Viewer(viewer) => rewind_state::EntityId::Pseudonym(viewer.0),
        EntityId::Title(title) => rewind_state::EntityId::new(title),
    }
}

/// An erasure as the dataflow placed it: the store records it in the commit covering its tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PlacedErasure {
    pub tick_ms: TimeMs,
    pub viewer: ViewerId,
    /// `E`: the viewer's records before it are erased.
    pub ts_ms: u64,
}

/// What a worker hands over when its frontier advances.
pub(crate) struct Report {
    pub worker: usize,
    /// Every tick below this is complete in this worker's view.
    pub frontier_ms: TimeMs,
    pub updates: Vec<Update>,
    pub next_offsets: Vec<(String, u32, u64)>,
    pub dead_letters: Vec<DeadLetter>,
    /// Erasures placed at ticks below `frontier_ms` (or any, in a last report).
    pub erasures: Vec<PlacedErasure>,
    /// This worker's cumulative counters.
    pub counters: Counters,
    /// The worker's final report.
    pub last: bool,
}

pub(crate) struct WriterSummary {
    pub changes: u64,
    /// What this run's commits purged.
    pub purged: Purged,
    /// Wall time inside the store's commits, the purge included.
    pub commit_time: Duration,
    pub frontier_ms: TimeMs,
}

pub(crate) struct Writer {
    store: Arc<Store>,
    /// (feature name, entity kind) by feature index.
    names: Vec<(&'static str, &'static str)>,
    tick_ms: u64,
    frontiers: Vec<TimeMs>,
    finished: Vec<bool>,
    counters: Vec<Counters>,
    /// Output not yet committed, as the workers reported it: sorted once, when committed.
    pending: Vec<Vec<Update>>,
    next_offsets: BTreeMap<(String, u32), u64>,
    dead_letters: Vec<DeadLetter>,
    /// Erasures by the tick they land at, in a stable order whatever the workers' interleaving.
    erasures: BTreeMap<TimeMs, Vec<PlacedErasure>>,
    /// Computes each erasure's token for the suppression list: the store never sees its key.
    door: crate::privacy::Pseudonymizer,
    /// The store's frontier: ticks below it are already written.
    committed_ms: TimeMs,
    /// The store's next offsets when the run started: dead letters before them are in the
    /// store already, or were purged and must stay so.
    resume_offsets: BTreeMap<(String, u32), u64>,
    retention_ms: u64,
    purged: Purged,
    /// Wall time inside the store's commits, the purge included.
    commit_time: Duration,
    changes: u64,
    interval: Duration,
    last_commit: Instant,
    shared: Arc<Shared>,
}

impl Writer {
    pub fn new(
        store: Arc<Store>,
        config: &RunConfig,
        workers: usize,
        (committed_ms, resume_offsets): (TimeMs, &[(String, u32, u64)]),
        shared: Arc<Shared>,
    ) -> Writer {
        let names = rewind_dataflows::output_names(&library());
        shared.frontier_ms.store(committed_ms, Ordering::Relaxed);
        Writer {
            store,
            names,
            tick_ms: config.policy.tick_ms,
            frontiers: vec![0; workers],
            finished: vec![false; workers],
            counters: vec![Counters::default(); workers],
            pending: Vec::new(),
            next_offsets: BTreeMap::new(),
            dead_letters: Vec::new(),
            erasures: BTreeMap::new(),
            door: config.door.clone(),
            committed_ms,
            resume_offsets: resume_offsets
                .iter()
                .map(|(t, p, n)| ((t.clone(), *p), *n))
                .collect(),
            retention_ms: config.retention_ms,
            purged: Purged::default(),
            commit_time: Duration::ZERO,
            changes: 0,
            interval: config.commit_interval,
            last_commit: Instant::now(),
            shared,
        }
    }

    pub fn run(mut self, reports: Receiver<Report>) -> Result<WriterSummary, StoreError> {
        let result = self.run_inner(reports);
        if result.is_err() {
            self.shared.stop();
        }
        result
    }

    fn run_inner(&mut self, reports: Receiver<Report>) -> Result<WriterSummary, StoreError> {
        while !self.finished.iter().all(|f| *f) {
            match reports.recv_timeout(self.interval) {
                Ok(report) => self.absorb(report),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Everything queued goes into the next commit. A commit costs about one page copy
            // per B-tree leaf it touches, so when commits fall behind they must grow, not
            // stay one report each while the workers wait on a full channel.
            while let Ok(report) = reports.try_recv() {
                self.absorb(report);
            }
            if self.last_commit.elapsed() >= self.interval {
                self.commit()?;
            }
        }
        self.commit()?;
        // The data is all committed; a scrub that failed is said, and left to the next writer.
        if let Err(failure) = self.store.settle_scrub() {
            eprintln!("rewind: {failure}");
        }
        Ok(WriterSummary {
            changes: self.changes,
            purged: self.purged,
            commit_time: self.commit_time,
            frontier_ms: self.committed_ms,
        })
    }

    fn absorb(&mut self, report: Report) {
        let w = report.worker;
        self.frontiers[w] = self.frontiers[w].max(report.frontier_ms);
        self.finished[w] |= report.last;
        self.counters[w] = report.counters;
        let mut updates = report.updates;
        // Ticks the store already holds were recomputed by a replay: keep the store's.
        updates.retain(|update| update.1 >= self.committed_ms);
        if !updates.is_empty() {
            self.pending.push(updates);
        }
        for (topic, partition, next) in report.next_offsets {
            self.next_offsets.insert((topic, partition), next);
        }
        let resume = &self.resume_offsets;
        let new = report.dead_letters.into_iter().filter(|d| {
            let key = (d.topic.clone(), d.partition);
            resume.get(&key).is_none_or(|next| d.offset >= *next)
        });
        self.dead_letters.extend(new);
        for erasure in report.erasures {
            // A restart re-reads the erasure log: those the store's ticks hold are applied.
            if erasure.tick_ms >= self.committed_ms {
                self.erasures
                    .entry(erasure.tick_ms)
                    .or_default()
                    .push(erasure);
            }
        }
    }

    /// The erasures of the ticks below `frontier`, for the store, in tick order.
    fn take_erasures(&mut self, frontier: TimeMs) -> Vec<Erasure> {
        let later = self.erasures.split_off(&frontier);
        let ready = std::mem::replace(&mut self.erasures, later);
        let mut placed: Vec<PlacedErasure> = ready.into_values().flatten().collect();
        placed.sort_unstable();
        placed.dedup();
        let erasure = |p: PlacedErasure| Erasure {
            entity_kind: "viewer",
            entity_id: rewind_state::EntityId::Pseudonym(p.viewer.0),
            ts_ms: p.ts_ms,
            tick_ms: p.tick_ms,
            token: self.door.erasure_token(&p.viewer),
        };
        placed.into_iter().map(erasure).collect()
    }

    /// Lands every tick below the smallest worker frontier, if that is past the store's.
    fn commit(&mut self) -> Result<(), StoreError> {
        self.last_commit = Instant::now();
        let frontier = self.frontiers.iter().copied().min().unwrap_or(0);
        if frontier <= self.committed_ms || frontier == TimeMs::MAX {
            return Ok(());
        }
        let mut ready = Vec::new();
        self.pending.retain_mut(|updates| {
            ready.extend(updates.extract_if(.., |update| update.1 < frontier));
            !updates.is_empty()
        });
        let mut changes = self.changes_of(ready);
        let mut total = Counters::default();
        self.counters.iter().for_each(|c| total.add(c));
        let as_of_ms = frontier.saturating_sub(self.tick_ms);
        let erasures = self.take_erasures(frontier);
        self.restate_erased(&erasures, &mut changes)?;
        let commit = Commit {
            frontier_ms: frontier,
            next_offsets: self
                .next_offsets
                .iter()
                .map(|((t, p), n)| (t.clone(), *p, *n))
                .collect(),
            dead_letters: std::mem::take(&mut self.dead_letters),
            counters: vec![
                (META_AS_OF, as_of_ms),
                (META_EVENTS, total.events),
                (META_LATE_EVENTS, total.late_events),
                (META_DEAD_LETTERS, total.dead_letters),
                ("titles_total", total.titles),
                ("untitled_events_total", total.untitled_events),
                (META_ERASURE_RECORDS, total.erasure_records),
            ],
            changes,
            retention_ms: Some(self.retention_ms),
            erasures,
        };
        let started = Instant::now();
        let purged = self.store.commit(&commit)?;
        let elapsed = started.elapsed();
        if let Some(failure) = self.store.take_scrub_failure() {
            eprintln!("rewind: {failure}");
        }
        self.shared.commit_durations.observe(elapsed);
        self.commit_time += elapsed;
        self.purged.add(&purged);
        self.shared.add_erasures_applied(purged.erased.erasures);
        self.changes += commit.changes.len() as u64;
        self.committed_ms = frontier;
        self.shared.frontier_ms.store(frontier, Ordering::Relaxed);
        self.shared
            .changes_written
            .store(self.changes, Ordering::Relaxed);
        self.shared.set_committed(Committed {
            frontier_ms: Some(frontier),
            as_of_ms: Some(as_of_ms),
            events: total.events,
            late_events: total.late_events,
            dead_letters: total.dead_letters,
            next_offsets: commit.next_offsets,
        });
        Ok(())
    }

    /// Writes each erased viewer's values at their erasure's tick in full, not only those
    /// that change there.
    ///
    /// The store deletes every row of the viewer from before that tick, so a value the tick
    /// leaves as it was (an old event leaving a window as a new one enters) would be lost
    /// with the row that set it. Each viewer feature's value as of the tick is the viewer's
    /// last change in this commit before it, else the store's online value.
    fn restate_erased(
        &self,
        erasures: &[Erasure],
        changes: &mut Vec<Change>,
    ) -> Result<(), StoreError> {
        if erasures.is_empty() {
            return Ok(());
        }
        let snapshot = self.store.snapshot()?;
        let mut restated = Vec::new();
        for erasure in erasures {
            let id = &erasure.entity_id;
            let theirs = changes.iter().filter(|c| c.entity_id == *id);
            let mut latest: BTreeMap<&str, (u64, Option<&Vec<u8>>)> = BTreeMap::new();
            for change in theirs.filter(|c| c.tick_ms <= erasure.tick_ms) {
                let entry = latest.entry(change.feature).or_insert((0, None));
                if change.tick_ms >= entry.0 {
                    *entry = (change.tick_ms, change.value.as_ref());
                }
            }
            let online = snapshot.online(erasure.entity_kind, &id.to_string())?;
            for &(feature, kind) in self.names.iter().filter(|n| n.1 == erasure.entity_kind) {
                let value = match latest.get(feature) {
                    Some((tick, _)) if *tick == erasure.tick_ms => continue,
                    Some((_, value)) => value.cloned(),
                    None => online
                        .iter()
                        .find(|row| row.feature == feature)
                        .map(|row| row.value_json.clone()),
                };
                if value.is_some() {
                    restated.push(Change {
                        entity_kind: kind,
                        feature,
                        entity_id: id.clone(),
                        tick_ms: erasure.tick_ms,
                        value,
                    });
                }
            }
        }
        changes.extend(restated);
        Ok(())
    }

    /// The history rows of completed ticks, in tick order: per tick and key, the value that
    /// rose, or a tombstone when values only fell; nothing when they cancel out.
    ///
    /// Sorted by tick and key only: a key's updates at a tick are few (the value it left and
    /// the one it took), so each key's are then ordered by value among themselves. The sort is
    /// the stable one because it merges the runs it finds: the workers report each tick's
    /// output in key order, and a replay's commits held one descent per ~8,500 updates.
    fn changes_of(&self, mut updates: Vec<Update>) -> Vec<Change> {
        updates.sort_by(|a, b| (a.1, &a.0.0).cmp(&(b.1, &b.0.0)));
        let mut out = Vec::with_capacity(updates.len() / 2);
        let mut rest = updates.as_mut_slice();
        while let Some(first) = rest.first() {
            let end = rest
                .iter()
                .position(|u| u.1 != first.1 || u.0.0 != first.0.0)
                .unwrap_or(rest.len());
            let (group, later) = std::mem::take(&mut rest).split_at_mut(end);
            rest = later;
            let Some(value) = net(group) else {
                continue;
            };
            let ((feature, entity), _) = &group[0].0;
            let (feature_name, entity_kind) = self.names[*feature as usize];
            out.push(Change {
                entity_kind,
                feature: feature_name,
                entity_id: store_id(entity),
                tick_ms: group[0].1,
                value,
            });
        }
        out
    }
}

/// One key's updates at one tick, netted by value: `None` when they cancel out, else the
/// greatest value whose count rose, as JSON (`Some(None)` when none rose: the key went back to
/// its default).
fn net(group: &mut [Update]) -> Option<Option<Vec<u8>>> {
    // Ordered by value, so each value's updates are a run (a group is most often two).
    group.sort_unstable_by(|a, b| a.0.1.cmp(&b.0.1));
    let (mut moved, mut risen) = (false, None);
    for run in group.chunk_by(|a, b| a.0.1 == b.0.1) {
        let d: isize = run.iter().map(|u| u.2).sum();
        moved |= d != 0;
        // Ascending: the last value that rose is the greatest.
        if d > 0 {
            risen = Some(&run[0].0.1);
        }
    }
    moved.then(|| risen.map(|v| v.to_json().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(value: i64, diff: isize) -> Update {
        (
            ((0, EntityId::Viewer(ViewerId(7))), Value::Int(value)),
            1000,
            diff,
        )
    }

    fn netted(updates: &[Update]) -> Option<Option<String>> {
        let mut group = updates.to_vec();
        net(&mut group).map(|v| v.map(|json| String::from_utf8(json).unwrap()))
    }

    #[test]
    fn a_keys_updates_net_to_the_value_that_rose_or_a_tombstone() {
        assert_eq!(
            netted(&[update(2, 1), update(1, -1)]),
            Some(Some("2".into()))
        );
        assert_eq!(
            netted(&[update(1, -1), update(2, 1)]),
            Some(Some("2".into()))
        );
        assert_eq!(netted(&[update(1, -1)]), Some(None));
        assert_eq!(netted(&[update(1, 1), update(1, -1)]), None);
        // A value that came and went within the tick is no change; the one that stayed is.
        let churn = [update(1, -1), update(3, 1), update(3, -1), update(4, 1)];
        assert_eq!(netted(&churn), Some(Some("4".into())));
    }

    #[test]
    fn many_updates_of_a_key_net_as_a_few_do() {
        // Past the pairwise netting's size: values in any order, most cancelling.
        let mut many: Vec<Update> = (0..20)
            .flat_map(|v| [update(v, 1), update(v, -1)])
            .collect();
        many.push(update(9, 1));
        many.push(update(25, -1));
        many.reverse();
        assert_eq!(netted(&many), Some(Some("9".into())));
        let cancelled: Vec<Update> = (0..20)
            .flat_map(|v| [update(v, -1), update(v, 1)])
            .collect();
        assert_eq!(netted(&cancelled), None);
        let fallen: Vec<Update> = (0..20).map(|v| update(v, -1)).collect();
        assert_eq!(netted(&fallen), Some(None));
    }
}
