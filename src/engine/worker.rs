//! One timely worker: reads its partitions, feeds the feature dataflow, and hands completed
//! ticks to the writer.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use differential_dataflow::input::{Input, InputSession};
use rewind_connectors::file::FileSource;
use rewind_connectors::{ConnectorError, KafkaSource, Polled, RecordRef};
use rewind_dataflows::{
    Consent, Erasure, Event, Purpose, Sources, TimeMs, Title, build_all, library,
};
use rewind_state::DeadLetter;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::Probe;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::{ProbeHandle, Stream};
use timely::worker::Worker;

use super::pool::{DecodePool, Decoded, Payloads, Pending};
use super::shared::Counters;
use super::writer::{PlacedErasure, Report, Update};
use super::{EngineError, LogSource, Plan, RunConfig, Shared};
use crate::decode::{
    self, ConsentRecord, DeadReason, ErasureRecord, MAX_PAYLOAD_BYTES, MAX_TS_MS, MIN_TS_MS,
};
use crate::time::{PartitionClock, vouches};
use rewind_dataflows::window::visible_at;

/// Records handed to the dataflow per step: large enough to amortise a step, small enough to
/// keep a step short when the dataflow has work queued.
const BATCH: usize = 16_384;
/// How long an idle worker waits on Kafka before stepping the dataflow again; also how long
/// an idle decoding thread waits for a part before looking at whether the run goes on.
const IDLE_WAIT: Duration = Duration::from_millis(2);
/// The first wait after the cluster stops answering; it doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Long enough not to busy a cluster that is coming back, short enough to notice it quickly.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// After this long without an error during an outage, the cluster is asked directly whether
/// it answers: librdkafka does not repeat an error it has already reported.
const QUIET_AFTER_OUTAGE: Duration = Duration::from_secs(2);

/// Threads of the engine's own that decode what a worker reads from a file, beside the
/// other workers: one reader places every event of a file in order, and without them it
/// would also decode every one. Kafka's partitions spread over the workers, which decode
/// their own.
pub(crate) fn decoding_threads(source: &LogSource) -> usize {
    match source {
        LogSource::Files { .. } => 1,
        LogSource::Kafka { .. } => 0,
    }
}

/// What a decoding thread does: takes parts of file batches from the pool until `decoding`
/// is cleared.
pub(crate) fn decode_for_workers(ctx: &Context, decoding: &std::sync::atomic::AtomicBool) {
    let door = &ctx.config.door;
    let mut decode = |payload: &[u8]| decode::decode_event(Some(payload), door);
    while decoding.load(Ordering::Acquire) {
        ctx.pool.help(IDLE_WAIT, &mut decode);
    }
}

pub(crate) struct Context {
    pub config: RunConfig,
    pub plan: Plan,
    pub shared: std::sync::Arc<Shared>,
    /// Where a worker with nothing to read, and the decoding threads, decode for the one
    /// that reads a file.
    pub pool: DecodePool,
}

/// What a partition holds: each kind is read, placed in time and fed differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Events,
    /// Reference data: placed at its records' Kafka timestamps, the latest per title wins.
    Titles,
    /// Consent records: read like reference data, each landing at its own tick (see
    /// [`Ingest::place_consent`]).
    Consent,
    /// Erasure records: read like reference data, each taking effect as it is read (see
    /// [`Ingest::place_erasure`]).
    Erasure,
}

struct Partition {
    kind: Kind,
    topic: String,
    partition: u32,
    next_offset: u64,
    /// The high watermark as of start: where a caught-up run stops reading.
    end_offset: u64,
    /// The store's next offset: records from here on land no earlier than its frontier.
    resume_offset: u64,
    clock: PartitionClock,
    done: bool,
    /// Since when the partition has been read to the end of its log; `None` while records
    /// may be left to read. Only a partition with nothing left to read may stop holding time
    /// back: a slow one never does, or a live run would place its backlog differently from
    /// a replay of the same log.
    at_end_since: Option<Instant>,
    /// The events partition's first event, or one far ahead of its newest, held until the
    /// partition's next event says whether time really is there (it then lands at its own
    /// tick) or the event was a lone clock error (a dead letter). One such event must not
    /// drag the watermark.
    suspect: Option<Suspect>,
}

struct Suspect {
    event: Event,
    offset: u64,
}

/// The dataflow's input sessions: events, titles, consent records, erasures.
type Inputs = (
    InputSession<TimeMs, Event, isize>,
    InputSession<TimeMs, Title, isize>,
    InputSession<TimeMs, Consent, isize>,
    InputSession<TimeMs, Erasure, isize>,
);

/// Everything the record callback touches.
struct Ingest<'a> {
    ctx: &'a Context,
    parts: Vec<Partition>,
    index: HashMap<(Kind, u32), usize>,
    events: InputSession<TimeMs, Event, isize>,
    titles: InputSession<TimeMs, Title, isize>,
    consent: InputSession<TimeMs, Consent, isize>,
    erasures: InputSession<TimeMs, Erasure, isize>,
    /// Erasures fed to the dataflow and not yet handed to the writer, which records each in
    /// the commit that covers its tick.
    placed_erasures: Vec<PlacedErasure>,
    /// The purposes the library knows: a consent record naming another is a dead letter.
    known_purposes: Vec<Purpose>,
    /// The latest record of each title this worker owns, and the time it took effect.
    current_titles: HashMap<rewind_dataflows::event::TitleId, (Title, TimeMs)>,
    dead_letters: Vec<DeadLetter>,
    counters: Counters,
    unshared: Counters,
    max_time: TimeMs,
    /// The others that decode parts of each batch read from a file (one partition, read by
    /// one worker): the other workers and the engine's decoding thread. 0 for Kafka, whose
    /// partitions spread over the workers.
    helpers: usize,
    /// A file batch's records, as they are read.
    batch: FileBatch,
    /// The batch read before: decoded by the helpers while this worker reads and places the
    /// next, and placed once that one is read.
    in_flight: Option<(Pending, FileBatch)>,
}

/// Events read from a file but not yet decoded: their payloads and offsets, and whether the
/// file's end came after them.
#[derive(Default)]
struct FileBatch {
    payloads: Payloads,
    offsets: Vec<u64>,
    end: bool,
}

pub(crate) fn run(
    worker: &mut Worker,
    ctx: &Context,
    tx: SyncSender<Report>,
) -> Result<(), EngineError> {
    let (index, peers) = (worker.index(), worker.peers());
    let output: Sink<Update> = Rc::default();
    let untitled: Rc<RefCell<Vec<(TimeMs, isize)>>> = Rc::default();
    let (sink, untitled_sink) = (output.clone(), untitled.clone());
    let shared = ctx.shared.clone();
    let (inputs, probe) = worker.dataflow::<TimeMs, _, _>(|scope| {
        let (events_in, events) = scope.new_collection::<Event, isize>();
        let (titles_in, titles) = scope.new_collection::<Title, isize>();
        let (consent_in, consent) = scope.new_collection::<Consent, isize>();
        let (erasures_in, erasures) = scope.new_collection::<Erasure, isize>();
        let known = titles.clone().map(|t| t.title_id).distinct();
        let mut sources = Sources::new(events.clone(), titles);
        if let Some(config) = &ctx.config.consent {
            sources = sources.with_consent(consent, config.rules.clone());
        }
        // Without an erasure log no erasure can come, and the filter would cost an
        // arrangement per viewer feature for nothing.
        if ctx.plan.erasure.is_some() {
            sources = sources.with_erasures(erasures);
        }
        let outputs = build_all(&sources, &library());
        let (probe, _) = take_into(outputs.inner, sink).probe();
        // For the status line: (viewer, purpose) consents in force as of the latest time.
        if let Some(in_force) = sources.consent_in_force() {
            in_force
                .inspect(move |(_, _, diff)| shared.add_consents_in_force(*diff as i64))
                .probe_with(&probe);
        }
        // Events naming a title that has no record as of their time: a feature joining titles
        // skips them. Summed per title and tick before the exchange, so it costs a record per
        // title a batch, not one per event. An insert is an event that found no title; a title
        // arriving later retracts, and is not counted.
        events
            .flat_map(|e| e.kind.title().cloned().map(|t| (t, ())))
            .consolidate_stream()
            .antijoin(known)
            // antijoin is the records less their matches: only once consolidated does a
            // matched event cancel out.
            .consolidate()
            .inspect_batch(move |_, updates| {
                let found = updates.iter().filter(|u| u.2 > 0).map(|u| (u.1, u.2));
                untitled_sink.borrow_mut().extend(found);
            })
            .probe_with(&probe);
        ((events_in, titles_in, consent_in, erasures_in), probe)
    });
    let mut ingest = Ingest::new(ctx, index, peers, inputs);
    let mut sources = Consumers::connect(&ctx.config.source, &ingest)?;
    let mut reporter = Reporter {
        index,
        tx,
        output,
        untitled,
        reported: 0,
    };
    let result = ingest.drive(worker, &mut sources, &probe, &mut reporter);
    if result.is_err() {
        ctx.shared.stop();
    }
    // The writer waits for a last report from every worker, also after an error.
    let frontier = probe_frontier(&probe);
    reporter.report(&mut ingest, frontier, true);
    // Timely would otherwise run the dataflow to completion once the inputs close: every
    // pending window retraction, up to a year ahead, computed for nothing.
    for dataflow in worker.installed_dataflows() {
        worker.drop_dataflow(dataflow);
    }
    result
}

impl<'a> Ingest<'a> {
    fn new(ctx: &'a Context, index: usize, peers: usize, inputs: Inputs) -> Ingest<'a> {
        let (events, titles, consent, erasures) = inputs;
        let topics = std::iter::once((Kind::Events, &ctx.plan.events))
            .chain(ctx.plan.titles.iter().map(|t| (Kind::Titles, t)))
            .chain(ctx.plan.consent.iter().map(|t| (Kind::Consent, t)))
            .chain(ctx.plan.erasure.iter().map(|t| (Kind::Erasure, t)));
        let mut parts = Vec::new();
        for (kind, info) in topics {
            for (p, &(low, high)) in info.watermarks.iter().enumerate() {
                if p % peers != index {
                    continue;
                }
                let resume = ctx
                    .plan
                    .resume_offsets
                    .iter()
                    .find(|(t, q, _)| *t == info.topic && *q == p as u32);
                parts.push(Partition {
                    kind,
                    topic: info.topic.clone(),
                    partition: p as u32,
                    next_offset: low,
                    end_offset: high,
                    resume_offset: resume.map_or(0, |r| r.2),
                    clock: PartitionClock::default(),
                    done: ctx.config.until_caught_up && low >= high,
                    at_end_since: None,
                    suspect: None,
                });
            }
        }
        let index = parts
            .iter()
            .enumerate()
            .map(|(i, p)| ((p.kind, p.partition), i))
            .collect();
        Ingest {
            ctx,
            parts,
            index,
            events,
            titles,
            consent,
            erasures,
            placed_erasures: Vec::new(),
            known_purposes: Purpose::known(&library()),
            current_titles: HashMap::new(),
            dead_letters: Vec::new(),
            counters: Counters::default(),
            unshared: Counters::default(),
            max_time: 0,
            helpers: match ctx.config.source {
                LogSource::Files { .. } => peers - 1 + decoding_threads(&ctx.config.source),
                LogSource::Kafka { .. } => 0,
            },
            batch: FileBatch::default(),
            in_flight: None,
        }
    }

    /// Every partition starts at the start of the log: without a checkpoint, the dataflow's
    /// state can only be rebuilt by reading it all again.
    fn starts(&self, kind: Kind) -> Vec<(String, u32, u64)> {
        self.parts
            .iter()
            .filter(|p| !p.done && p.kind == kind)
            .map(|p| (p.topic.clone(), p.partition, p.next_offset))
            .collect()
    }

    fn drive(
        &mut self,
        worker: &mut Worker,
        sources: &mut Consumers,
        probe: &ProbeHandle<TimeMs>,
        reporter: &mut Reporter,
    ) -> Result<(), EngineError> {
        let shared = &self.ctx.shared;
        let config = &self.ctx.config;
        let mut announced = false;
        let mut wait = Duration::ZERO;
        let mut outage = Outage::default();
        while !shared.stopping() {
            let read = if self.parts.iter().all(|p| p.done) {
                // Waiting for the other workers to finish reading: meanwhile, decoding for
                // one that reads a file.
                let door = &config.door;
                let mut decode = |payload: &[u8]| decode::decode_event(Some(payload), door);
                self.ctx.pool.help(IDLE_WAIT, &mut decode);
                Ok(0)
            } else {
                let read = sources.drain(wait, |kind, polled| self.polled(kind, polled));
                self.ingest_file_batch();
                read
            };
            // During an outage nothing was read, and the pause has been taken.
            let read = outage
                .check(read, sources, config.max_outage, shared)?
                .unwrap_or_default();
            wait = if read == 0 { IDLE_WAIT } else { Duration::ZERO };
            self.advance();
            worker.step();
            reporter.report(self, probe_frontier(probe), false);
            if !config.until_caught_up {
                continue;
            }
            if !announced && self.parts.iter().all(|p| p.done) {
                announced = true;
                if config.seal {
                    self.place_suspects();
                    self.advance();
                }
                // Every partition of this worker is read: its input time is final.
                if let Some(t) = self.holding_frontier() {
                    shared.final_input_ms.fetch_min(t, Ordering::SeqCst);
                }
                shared.drained_workers.fetch_add(1, Ordering::SeqCst);
            }
            if announced && shared.drained_workers.load(Ordering::SeqCst) == worker.peers() {
                return self.finish(worker, probe, reporter);
            }
        }
        Ok(())
    }

    /// Caught up: every worker has read its partitions. The dataflow completes every tick
    /// the partitions' watermarks allow, and they are reported. With `seal`, the log is
    /// declared finished: time first advances one tick past the largest placed time.
    fn finish(
        &mut self,
        worker: &mut Worker,
        probe: &ProbeHandle<TimeMs>,
        reporter: &mut Reporter,
    ) -> Result<(), EngineError> {
        let shared = &self.ctx.shared;
        // Settled: every worker has published its last input time.
        let followed = shared.input_time_ms.load(Ordering::SeqCst);
        let end = if self.ctx.config.seal {
            match shared.max_time_ms.load(Ordering::SeqCst) {
                0 => followed,
                last => last + self.ctx.config.policy.tick_ms,
            }
        } else {
            // The smallest final input time of the workers that hold time back.
            match shared.final_input_ms.load(Ordering::SeqCst) {
                TimeMs::MAX => followed,
                end => end,
            }
        };
        // Every partition is read, so no input can land below `end` any more: a worker that
        // followed the others from behind moves up to it, or the frontier would wait for it.
        if end > *self.events.time() {
            self.advance_inputs(end);
        }
        self.flush_inputs();
        while probe.less_than(&end) && !shared.stopping() {
            worker.step();
        }
        reporter.report(self, probe_frontier(probe), false);
        Ok(())
    }

    fn polled(&mut self, kind: Kind, polled: Polled<'_>) {
        let shared_decoding = self.helpers > 0 && kind == Kind::Events;
        match polled {
            Polled::Record(record) if shared_decoding => {
                let batch = &mut self.batch;
                batch.payloads.push(record.payload.unwrap_or_default());
                batch.offsets.push(record.offset);
            }
            Polled::End { .. } if shared_decoding => self.batch.end = true,
            Polled::Record(record) => self.ingest(kind, record, None),
            Polled::End { partition } => self.partition_end(kind, partition),
        }
    }

    fn partition_end(&mut self, kind: Kind, partition: u32) {
        if let Some(&i) = self.index.get(&(kind, partition)) {
            let part = &mut self.parts[i];
            part.at_end_since.get_or_insert_with(Instant::now);
            // The end of the log as it is now lies at or past its end as of start.
            part.done |= self.ctx.config.until_caught_up;
        }
    }

    /// Hands the file batch just read to the helpers to decode, and places the one read
    /// before it, in the file's order, as if each record had been decoded as it was read. The
    /// helpers decode a batch while this worker reads the next and feeds the dataflow: only
    /// the parts nobody has taken yet are decoded here. Placement depends only on the order
    /// of the log, so holding a batch back changes when its records land, never where. A
    /// batch that carries the file's end is placed at once.
    fn ingest_file_batch(&mut self) {
        let read = !self.batch.offsets.is_empty() || self.batch.end;
        let submitted = read.then(|| {
            let mut batch = std::mem::take(&mut self.batch);
            let payloads = std::sync::Arc::new(std::mem::take(&mut batch.payloads));
            (self.ctx.pool.submit(payloads, self.helpers), batch)
        });
        if let Some(previous) = self.in_flight.take() {
            self.place_file_batch(previous);
        }
        match submitted {
            // The file's end (a file pauses only there): nothing read next would overlap
            // with decoding this one, so it is placed now.
            Some(batch) if batch.1.end => self.place_file_batch(batch),
            Some(batch) => self.in_flight = Some(batch),
            None => {}
        }
    }

    fn place_file_batch(&mut self, (pending, mut batch): (Pending, FileBatch)) {
        let door = &self.ctx.config.door;
        let mut decode = |payload: &[u8]| decode::decode_event(Some(payload), door);
        let (payloads, decoded) = self.ctx.pool.collect(pending, &mut decode);
        let topic = self.ctx.plan.events.topic.clone();
        for ((k, offset), decoded) in batch.offsets.iter().enumerate().zip(decoded) {
            let record = RecordRef {
                topic: &topic,
                partition: 0,
                offset: *offset,
                timestamp_ms: None,
                key: None,
                payload: Some(payloads.get(k)),
            };
            self.ingest(Kind::Events, record, Some(decoded));
        }
        if batch.end {
            self.partition_end(Kind::Events, 0);
        }
        // Buffers for the batch being read, unless a helper still holds the part it found
        // taken.
        if self.batch.offsets.capacity() == 0 {
            batch.offsets.clear();
            self.batch.offsets = batch.offsets;
        }
        if let Ok(mut payloads) = std::sync::Arc::try_unwrap(payloads)
            && self.batch.payloads.len() == 0
        {
            payloads.clear();
            self.batch.payloads = payloads;
        }
    }

    fn ingest(&mut self, kind: Kind, record: RecordRef<'_>, decoded: Option<Decoded>) {
        let Some(&i) = self.index.get(&(kind, record.partition)) else {
            return;
        };
        let part = &mut self.parts[i];
        part.at_end_since = None;
        if record.offset < part.next_offset || part.done {
            return;
        }
        if self.ctx.config.until_caught_up && record.offset >= part.end_offset {
            part.done = true;
            return;
        }
        part.next_offset = record.offset + 1;
        if self.ctx.config.until_caught_up && part.next_offset >= part.end_offset {
            part.done = true;
        }
        self.counters.records += 1;
        self.unshared.records += 1;
        match kind {
            Kind::Titles => self.ingest_title(i, record),
            Kind::Events => {
                let door = &self.ctx.config.door;
                let decoded = decoded.unwrap_or_else(|| decode::decode_event(record.payload, door));
                match decoded {
                    Ok(event) => self.ingest_event(i, record, event),
                    Err(reason) => self.dead(record, reason),
                }
            }
            Kind::Consent => {
                let (door, known) = (&self.ctx.config.door, &self.known_purposes);
                match decode::decode_consent(record.payload, door, known) {
                    Ok(consent) => self.place_consent(i, record.offset, consent),
                    Err(reason) => self.dead(record, reason),
                }
            }
            Kind::Erasure => match decode::decode_erasure(record.payload, &self.ctx.config.door) {
                Ok(erasure) => self.place_erasure(i, record.offset, erasure),
                Err(reason) => self.dead(record, reason),
            },
        }
    }

    /// An event far ahead of its partition waits for the next to vouch for it, so one clock
    /// error cannot drag the watermark.
    fn ingest_event(&mut self, i: usize, record: RecordRef<'_>, event: Event) {
        let ts_ms = event.ts_ms;
        let behind = self.parts[i].clock.max_ts().is_some_and(|max| ts_ms <= max);
        if behind {
            // A late event says nothing of a held one ahead: it neither confirms nor refutes.
            return self.place(i, event, record.offset);
        }
        if let Some(suspect) = self.parts[i].suspect.take() {
            let held_ts = suspect.event.ts_ms;
            if vouches(ts_ms, held_ts) {
                self.place(i, suspect.event, suspect.offset);
            } else {
                let ahead_ms = held_ts - ts_ms;
                let reason = DeadReason::AheadOfPartition { ahead_ms };
                self.dead_at(record.topic, record.partition, suspect.offset, reason);
            }
        }
        if self.parts[i].clock.needs_confirmation(ts_ms) {
            self.parts[i].suspect = Some(Suspect {
                event,
                offset: record.offset,
            });
            return;
        }
        self.place(i, event, record.offset);
    }

    fn place(&mut self, i: usize, event: Event, offset: u64) {
        let floor = self.floor(i, offset);
        let policy = &self.ctx.config.policy;
        let placed = self.parts[i].clock.place(event.ts_ms, floor, policy);
        self.max_time = self.max_time.max(placed.time);
        self.events.update_at(event, placed.time, 1);
        self.count(|c| c.events += 1);
        if placed.late {
            self.count(|c| c.late_events += 1);
        }
    }

    /// A consent record lands at its own tick, or at the input time once that has passed it
    /// (late, counted). Its partition holds time back until read to its end, as reference
    /// data does, so a log read from its start (a replay, a restart, a run over a backlog)
    /// places every record at its own tick, however the topics interleave. A consent record
    /// moves no clock and waits for no other: a sparse topic's lone record takes effect at its
    /// tick, and one stamped far ahead waits for time to reach its tick and drags nothing.
    fn place_consent(&mut self, i: usize, offset: u64, record: ConsentRecord) {
        let (own, floor) = self.own_tick(i, offset, record.ts_ms);
        let rules = self.ctx.config.consent.as_ref().map(|c| &c.rules);
        // A purpose that needs no consent: read and counted, but it gates nothing.
        if let Some(purpose) = rules.and_then(|r| r.index(record.purpose)) {
            let consent = Consent {
                viewer: record.viewer,
                purpose,
                granted: record.granted,
                ts_ms: record.ts_ms,
            };
            self.consent.update_at(consent, own.max(floor), 1);
        }
        self.count(|c| c.consent_records += 1);
        if own < floor {
            self.count(|c| c.late_consent += 1);
        }
    }

    /// An erasure takes effect as it is read: at the input time (no earlier than the store's
    /// frontier for a record new to the store), whatever its `ts`. Read before time moves, a
    /// log's erasures all land at the start, so no event one reaches ever enters a viewer
    /// feature; read live, one lands in the next commit. Its `ts` says only what it erases
    /// (the viewer's records before it), so one stamped far ahead erases all the viewer sent
    /// before that time, at once: the reading that keeps the most private. Late: read after
    /// time passed its own tick.
    fn place_erasure(&mut self, i: usize, offset: u64, record: ErasureRecord) {
        let (own, time) = self.own_tick(i, offset, record.ts_ms);
        let erasure = Erasure {
            viewer: record.viewer,
            ts_ms: record.ts_ms,
        };
        self.erasures.update_at(erasure, time, 1);
        self.placed_erasures.push(PlacedErasure {
            tick_ms: time,
            viewer: record.viewer,
            ts_ms: record.ts_ms,
        });
        self.count(|c| c.erasure_records += 1);
        if own < time {
            self.count(|c| c.late_erasures += 1);
        }
    }

    /// A control record's own tick, and the earliest time it may land at.
    fn own_tick(&self, i: usize, offset: u64, ts_ms: TimeMs) -> (TimeMs, TimeMs) {
        let own = visible_at(ts_ms, self.ctx.config.policy.tick_ms);
        (own, self.floor(i, offset))
    }

    /// The log is declared finished: an event held as far ahead has no successor to
    /// contradict it, and lands at its own tick.
    fn place_suspects(&mut self) {
        for i in 0..self.parts.len() {
            if let Some(suspect) = self.parts[i].suspect.take() {
                self.place(i, suspect.event, suspect.offset);
            }
        }
    }

    fn ingest_title(&mut self, i: usize, record: RecordRef<'_>) {
        let title = match decode::decode_title(record.payload) {
            Ok(title) => title,
            Err(reason) => return self.dead(record, reason),
        };
        // Titles carry no event time: a title takes effect at its record's Kafka timestamp,
        // and one without a plausible timestamp at the partition's frontier. With
        // `titles_from_start`, a title's first record applies from the start of time.
        let ts = record
            .timestamp_ms
            .map(|t| t.max(0) as u64)
            .filter(|t| (MIN_TS_MS..MAX_TS_MS).contains(t));
        let floor = self.floor(i, record.offset);
        let policy = &self.ctx.config.policy;
        let clock = &mut self.parts[i].clock;
        let first = !self.current_titles.contains_key(&title.title_id);
        let placed = match ts {
            // As early as time still allows: reference data valid from the start.
            _ if first && self.ctx.config.titles_from_start => floor.max(policy.tick_ms),
            Some(ts) => clock.place(ts, floor, policy).time,
            None => clock.frontier(policy).max(floor).max(policy.tick_ms),
        };
        let id = title.title_id.clone();
        // Later records of a title never take effect before earlier ones.
        let previous = self.current_titles.get(&id).map_or(0, |(_, t)| *t);
        let time = placed.max(previous);
        if let Some((old, _)) = self.current_titles.insert(id, (title.clone(), time)) {
            self.titles.update_at(old, time, -1);
        }
        self.titles.update_at(title, time, 1);
        self.count(|c| c.titles += 1);
    }

    /// The earliest time a record may land at: the input's time, and for a record the store
    /// has not seen, the store's frontier (those ticks are written and final).
    fn floor(&self, i: usize, offset: u64) -> TimeMs {
        let input = *self.events.time();
        if offset >= self.parts[i].resume_offset {
            input.max(self.ctx.plan.resume_frontier_ms)
        } else {
            input
        }
    }

    fn dead(&mut self, record: RecordRef<'_>, reason: DeadReason) {
        self.dead_at(record.topic, record.partition, record.offset, reason);
    }

    fn dead_at(&mut self, topic: &str, partition: u32, offset: u64, reason: DeadReason) {
        // Its partition's event time, from that partition's prefix alone, so a replay and a
        // restart stamp it as the live run did; the retention purges it by that time.
        // A control partition has no clock: its dead letters get the input time.
        let policy = &self.ctx.config.policy;
        let input = *self.events.time();
        let time_ms = self
            .parts
            .iter()
            .find(|p| p.topic == topic && p.partition == partition)
            .map(|p| match p.kind {
                Kind::Consent | Kind::Erasure => input,
                Kind::Events | Kind::Titles => p.clock.frontier(policy),
            })
            .filter(|t| *t > 0);
        self.dead_letters.push(DeadLetter {
            topic: topic.to_string(),
            partition,
            offset,
            reason: reason.to_string(),
            time_ms,
        });
        self.count(|c| c.dead_letters += 1);
    }

    fn count(&mut self, f: impl Fn(&mut Counters)) {
        f(&mut self.counters);
        f(&mut self.unshared);
    }

    /// Moves the inputs to the smallest frontier of the partitions that still hold time back,
    /// and publishes this batch's counts.
    fn advance(&mut self) {
        let shared = &self.ctx.shared;
        // Nothing of ours holds time back: time may go as far as our idle partitions have
        // seen (closing the ticks of their last events), or as the other workers have gone.
        let target = self.holding_frontier().unwrap_or_else(|| {
            let seen = self
                .parts
                .iter()
                .filter(|p| p.kind == Kind::Events)
                .map(|p| self.frontier(p));
            let followed = shared.input_time_ms.load(Ordering::Relaxed);
            seen.max().unwrap_or(0).max(followed)
        });
        if target > *self.events.time() {
            self.advance_inputs(target);
        }
        self.flush_inputs();
        shared
            .input_time_ms
            .fetch_max(*self.events.time(), Ordering::Relaxed);
        shared
            .max_time_ms
            .fetch_max(self.max_time, Ordering::SeqCst);
        shared.add(&std::mem::take(&mut self.unshared));
    }

    fn advance_inputs(&mut self, time: TimeMs) {
        self.events.advance_to(time);
        self.titles.advance_to(time);
        self.consent.advance_to(time);
        self.erasures.advance_to(time);
    }

    fn flush_inputs(&mut self) {
        self.events.flush();
        self.titles.flush();
        self.consent.flush();
        self.erasures.flush();
    }

    /// The smallest frontier of the partitions that hold time back, if any does.
    ///
    /// Reference data (titles, and the sparse control topics, consent and erasure) holds time
    /// back only until it is read to the end of its log. An events partition holds it back at its watermark while it has records to read, and in a
    /// caught-up run also once read (so the store ends at the true watermark, and a later
    /// run over a longer log places every event as one run would), unless it never had an
    /// event. In a live run, one read to its end and quiet for `idle` lets time go on.
    fn holding_frontier(&self) -> Option<TimeMs> {
        let config = &self.ctx.config;
        let now = Instant::now();
        let holds = |p: &&Partition| {
            let at_end_for = |d| p.at_end_since.is_some_and(|t| now.duration_since(t) >= d);
            if p.kind != Kind::Events {
                !p.done && p.at_end_since.is_none()
            } else if config.until_caught_up {
                p.clock.max_ts().is_some() || p.suspect.is_some() || !p.done
            } else {
                !at_end_for(config.idle)
            }
        };
        let frontiers = self.parts.iter().filter(holds);
        frontiers.map(|p| self.frontier(p)).min()
    }

    /// The smallest time a partition's next event can land at: its watermark, and once it
    /// reads records new to the store, the store's frontier (the floor those records get).
    fn frontier(&self, p: &Partition) -> TimeMs {
        let policy = &self.ctx.config.policy;
        let own = match (&p.suspect, p.clock.max_ts()) {
            // Consent and erasure records land no earlier than the input time: until read to
            // their end, they hold time where it is.
            _ if matches!(p.kind, Kind::Consent | Kind::Erasure) => 0,
            // A held first event holds time back where it would once placed: if it is real,
            // events after it in this partition must find time where one run leaves it.
            (Some(held), None) => PartitionClock::frontier_of(held.event.ts_ms, policy),
            _ => p.clock.frontier(policy),
        };
        if p.next_offset >= p.resume_offset {
            own.max(self.ctx.plan.resume_frontier_ms)
        } else {
            own
        }
    }

    /// Where each partition's reading stands for the store: a held event is not yet applied,
    /// so a restart must read it again as new to the store (it then lands no earlier than the
    /// store's frontier).
    fn positions(&self) -> Vec<(String, u32, u64)> {
        let position = |p: &Partition| p.suspect.as_ref().map_or(p.next_offset, |s| s.offset);
        self.parts
            .iter()
            .map(|p| (p.topic.clone(), p.partition, position(p)))
            .collect()
    }
}

/// The worker's readers, one per kind of partition it reads, each saying when a partition is
/// read to the end of its log.
struct Consumers {
    events: Option<Reader>,
    titles: Option<Reader>,
    consent: Option<Reader>,
    erasure: Option<Reader>,
}

enum Reader {
    Kafka(KafkaSource),
    File(FileSource),
}

impl Reader {
    fn drain(
        &mut self,
        wait: Duration,
        f: impl FnMut(Polled<'_>),
    ) -> Result<usize, ConnectorError> {
        match self {
            Reader::Kafka(source) => source.drain(BATCH, wait, f),
            Reader::File(source) => source.drain(BATCH, f),
        }
    }
}

impl Consumers {
    fn connect(source: &LogSource, ingest: &Ingest<'_>) -> Result<Consumers, EngineError> {
        let connect = |kind: Kind| -> Result<Option<Reader>, EngineError> {
            let starts = ingest.starts(kind);
            let Some((topic, _, _)) = starts.first() else {
                return Ok(None);
            };
            Ok(Some(match source {
                LogSource::Kafka { brokers } => {
                    let source = KafkaSource::connect_with(brokers, true)?;
                    source.assign(&starts)?;
                    Reader::Kafka(source)
                }
                LogSource::Files {
                    events,
                    titles,
                    consent,
                    erasures,
                } => {
                    let path = match kind {
                        Kind::Events => Some(events),
                        Kind::Titles => titles.as_ref(),
                        Kind::Consent => consent.as_ref(),
                        Kind::Erasure => erasures.as_ref(),
                    };
                    let path = path.expect("a partition of a file log comes from its file");
                    Reader::File(FileSource::open(path, topic, MAX_PAYLOAD_BYTES)?)
                }
            }))
        };
        Ok(Consumers {
            events: connect(Kind::Events)?,
            titles: connect(Kind::Titles)?,
            consent: connect(Kind::Consent)?,
            erasure: connect(Kind::Erasure)?,
        })
    }

    /// Whether the cluster answers (files always do).
    fn reachable(&self) -> bool {
        let reader = self
            .events
            .as_ref()
            .or(self.titles.as_ref())
            .or(self.consent.as_ref())
            .or(self.erasure.as_ref());
        match reader {
            Some(Reader::Kafka(source)) => source.reachable(Duration::from_secs(1)),
            _ => true,
        }
    }

    /// Drains the titles, the erasures and the consent first (a little, never waiting), then a
    /// batch of events.
    fn drain(
        &mut self,
        wait: Duration,
        mut f: impl FnMut(Kind, Polled<'_>),
    ) -> Result<usize, ConnectorError> {
        let mut read = 0;
        if let Some(titles) = &mut self.titles {
            read += titles.drain(Duration::ZERO, |p| f(Kind::Titles, p))?;
        }
        if let Some(erasure) = &mut self.erasure {
            read += erasure.drain(Duration::ZERO, |p| f(Kind::Erasure, p))?;
        }
        if let Some(consent) = &mut self.consent {
            read += consent.drain(Duration::ZERO, |p| f(Kind::Consent, p))?;
        }
        if let Some(events) = &mut self.events {
            read += events.drain(wait, |p| f(Kind::Events, p))?;
        }
        Ok(read)
    }
}

/// The cluster not answering: librdkafka reconnects by itself, so the worker waits, with
/// growing pauses, and gives up only after `max_outage`.
#[derive(Default)]
struct Outage {
    since: Option<Instant>,
    last_error: Option<Instant>,
    backoff: Duration,
    /// When records last came: an error just after them may be a stale report.
    last_read: Option<Instant>,
}

impl Outage {
    /// Passes a successful read through (ending an outage); turns a retryable error into
    /// `None` after a pause, and anything else, or an outage past `max`, into the error.
    fn check(
        &mut self,
        read: Result<usize, ConnectorError>,
        sources: &Consumers,
        max: Duration,
        shared: &Shared,
    ) -> Result<Option<usize>, EngineError> {
        let err = match read {
            Ok(read) if self.since.is_none() => {
                if read > 0 {
                    self.last_read = Some(Instant::now());
                }
                return Ok(Some(read));
            }
            Ok(read) => {
                let quiet = self
                    .last_error
                    .is_some_and(|t| t.elapsed() >= QUIET_AFTER_OUTAGE);
                if read == 0 && !quiet {
                    return Ok(Some(0));
                }
                if read > 0 || sources.reachable() {
                    *self = Outage {
                        last_read: (read > 0).then(Instant::now),
                        ..Outage::default()
                    };
                    shared.set_outage(None);
                    return Ok(Some(read));
                }
                // Still unreachable, though librdkafka has stopped saying so.
                let why = shared.outage().map(|o| o.1).unwrap_or_default();
                ConnectorError::Unreachable(why)
            }
            // librdkafka may still report a connection it lost a moment ago, or is re-making,
            // after records flow again: right after records, an error starts an outage only
            // if the cluster does not answer.
            Err(err) if err.retryable() => {
                let flowing = self
                    .last_read
                    .is_some_and(|t| t.elapsed() < QUIET_AFTER_OUTAGE);
                if self.since.is_none() && flowing && sources.reachable() {
                    return Ok(Some(0));
                }
                err
            }
            Err(err) => return Err(err.into()),
        };
        self.last_error = Some(Instant::now());
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() >= max {
            return Err(EngineError::Outage {
                seconds: since.elapsed().as_secs(),
                last_error: err,
            });
        }
        shared.set_outage(Some(err.to_string()));
        self.backoff = (self.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
        // In slices, so a stop is heard at once.
        let until = Instant::now() + self.backoff;
        while Instant::now() < until && !shared.stopping() {
            std::thread::sleep(FIRST_BACKOFF.min(until - Instant::now()));
        }
        Ok(None)
    }
}

/// Hands completed output to the writer, once per frontier advance.
struct Reporter {
    index: usize,
    tx: SyncSender<Report>,
    output: Sink<Update>,
    /// (tick, count) of events that found no title, not yet reported.
    untitled: Rc<RefCell<Vec<(TimeMs, isize)>>>,
    reported: TimeMs,
}

impl Reporter {
    fn report(&mut self, ingest: &mut Ingest<'_>, frontier: TimeMs, last: bool) {
        if frontier <= self.reported && !last {
            return;
        }
        // The complete ticks, taken whole; the later ones (in a replay often most of the
        // output) are not looked at.
        let mut output = self.output.borrow_mut();
        let later = output.split_off(&frontier);
        let complete = std::mem::replace(&mut *output, later);
        let mut updates = Vec::with_capacity(complete.values().map(Vec::len).sum());
        for (_, mut tick) in complete {
            updates.append(&mut tick);
        }
        let mut untitled = self.untitled.borrow_mut();
        let complete = untitled
            .iter()
            .filter(|u| u.0 < frontier)
            .map(|u| u.1 as u64);
        let count = complete.sum::<u64>();
        untitled.retain(|u| u.0 >= frontier);
        // Published here: a worker's last reports come after its last `advance`.
        ingest.counters.untitled_events += count;
        let delta = Counters {
            untitled_events: count,
            ..Counters::default()
        };
        ingest.ctx.shared.add(&delta);
        self.reported = self.reported.max(frontier);
        let positions = ingest.positions();
        ingest.ctx.shared.set_positions(&positions);
        // Handed over with the ticks they land at: the writer records each in its commit.
        let (erasures, pending) = std::mem::take(&mut ingest.placed_erasures)
            .into_iter()
            .partition(|e| e.tick_ms < frontier || last);
        ingest.placed_erasures = pending;
        let report = Report {
            worker: self.index,
            frontier_ms: self.reported,
            updates,
            next_offsets: positions,
            dead_letters: std::mem::take(&mut ingest.dead_letters),
            erasures,
            counters: ingest.counters,
            last,
        };
        // A closed channel means the writer failed; it has told `shared` why.
        let _ = self.tx.send(report);
    }
}

/// Output waiting for the frontier to pass its tick, by tick: a report takes the complete
/// ticks without looking at the rest.
type Sink<U> = Rc<RefCell<BTreeMap<TimeMs, Vec<U>>>>;

/// Moves every update of `stream` into `sink`, where the writer's reports take them from. The
/// updates are moved, not copied: the output is the dataflow's largest stream, and a copy
/// cost an allocation per entity id and value. The (empty) stream returned carries the
/// input's frontier, for a probe: once it passes a time, that time's updates are in `sink`.
fn take_into<'s, D: 'static>(
    stream: Stream<'s, TimeMs, Vec<(D, TimeMs, isize)>>,
    sink: Sink<(D, TimeMs, isize)>,
) -> Stream<'s, TimeMs, Vec<(D, TimeMs, isize)>> {
    stream.unary::<CapacityContainerBuilder<_>, _, _, _>(Pipeline, "TakeOutput", |_, _| {
        move |input, _output| {
            input.for_each(|_, updates| {
                let mut sink = sink.borrow_mut();
                let mut updates = std::mem::take(updates);
                // A batch is most often of one time: it goes in whole (as it is, when it is
                // that tick's first output). One of several times, in whatever order, goes
                // update by update.
                let time = updates.first().map(|u| u.1);
                match time.filter(|t| updates.iter().all(|u| u.1 == *t)) {
                    Some(time) => {
                        let tick = sink.entry(time).or_default();
                        match tick.is_empty() {
                            true => *tick = updates,
                            false => tick.append(&mut updates),
                        }
                    }
                    None => {
                        for update in updates {
                            sink.entry(update.1).or_default().push(update);
                        }
                    }
                }
            })
        }
    })
}

/// The dataflow's output frontier: every time below it is complete. An empty frontier (all
/// inputs closed) never happens while the worker holds its inputs.
fn probe_frontier(probe: &ProbeHandle<TimeMs>) -> TimeMs {
    probe.with_frontier(|f| f.first().copied().unwrap_or(TimeMs::MAX))
}
