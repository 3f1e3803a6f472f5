//! One timely worker: reads its partitions, feeds the feature dataflow, and hands completed
//! ticks to the writer.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use differential_dataflow::input::{Input, InputSession};
use rewind_connectors::{KafkaSource, Polled, RecordRef};
use rewind_dataflows::{Event, Sources, TimeMs, Title, build_all, library};
use rewind_state::DeadLetter;
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

use super::shared::Counters;
use super::writer::{Report, Update};
use super::{EngineError, Plan, RunConfig, Shared};
use crate::decode::{self, MAX_TS_MS, MIN_TS_MS};
use crate::time::PartitionClock;

/// Records handed to the dataflow per step: large enough to amortise a step, small enough to
/// keep a step short when the dataflow has work queued.
const BATCH: usize = 16_384;
/// How long an idle worker waits on Kafka before stepping the dataflow again.
const IDLE_WAIT: Duration = Duration::from_millis(2);

pub(crate) struct Context {
    pub config: RunConfig,
    pub plan: Plan,
    pub shared: std::sync::Arc<Shared>,
}

struct Partition {
    titles: bool,
    topic: String,
    partition: u32,
    next_offset: u64,
    /// The high watermark as of start: where a caught-up run stops reading.
    end_offset: u64,
    /// The store's next offset: records from here on land no earlier than its frontier.
    resume_offset: u64,
    clock: PartitionClock,
    done: bool,
    /// Read to the end of the log as last seen (reported for titles only).
    at_end: bool,
    last_record: Instant,
}

/// Everything the record callback touches.
struct Ingest<'a> {
    ctx: &'a Context,
    parts: Vec<Partition>,
    index: HashMap<(bool, u32), usize>,
    events: InputSession<TimeMs, Event, isize>,
    titles: InputSession<TimeMs, Title, isize>,
    /// The latest record of each title this worker owns, and the time it took effect.
    current_titles: HashMap<rewind_dataflows::event::TitleId, (Title, TimeMs)>,
    dead_letters: Vec<DeadLetter>,
    counters: Counters,
    unshared: Counters,
    max_time: TimeMs,
}

pub(crate) fn run(
    worker: &mut Worker,
    ctx: &Context,
    tx: SyncSender<Report>,
) -> Result<(), EngineError> {
    let (index, peers) = (worker.index(), worker.peers());
    let output: Rc<RefCell<Vec<Update>>> = Rc::default();
    let sink = output.clone();
    let (events, titles, probe) = worker.dataflow::<TimeMs, _, _>(|scope| {
        let (events_in, events) = scope.new_collection::<Event, isize>();
        let (titles_in, titles) = scope.new_collection::<Title, isize>();
        let (probe, _) = build_all(&Sources::new(events, titles), &library())
            .inspect_batch(move |_, updates| sink.borrow_mut().extend_from_slice(updates))
            .probe();
        (events_in, titles_in, probe)
    });
    let mut ingest = Ingest::new(ctx, index, peers, events, titles);
    let sources = Consumers::connect(&ctx.config.brokers, &ingest)?;
    let mut reporter = Reporter {
        index,
        tx,
        output,
        reported: 0,
    };
    let result = ingest.drive(worker, &sources, &probe, &mut reporter);
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
    fn new(
        ctx: &'a Context,
        index: usize,
        peers: usize,
        events: InputSession<TimeMs, Event, isize>,
        titles: InputSession<TimeMs, Title, isize>,
    ) -> Ingest<'a> {
        let now = Instant::now();
        let topics = std::iter::once((false, &ctx.plan.events))
            .chain(ctx.plan.titles.iter().map(|t| (true, t)));
        let mut parts = Vec::new();
        for (titles, info) in topics {
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
                    titles,
                    topic: info.topic.clone(),
                    partition: p as u32,
                    next_offset: low,
                    end_offset: high,
                    resume_offset: resume.map_or(0, |r| r.2),
                    clock: PartitionClock::default(),
                    done: ctx.config.until_caught_up && low >= high,
                    at_end: false,
                    last_record: now,
                });
            }
        }
        let index = parts
            .iter()
            .enumerate()
            .map(|(i, p)| ((p.titles, p.partition), i))
            .collect();
        Ingest {
            ctx,
            parts,
            index,
            events,
            titles,
            current_titles: HashMap::new(),
            dead_letters: Vec::new(),
            counters: Counters::default(),
            unshared: Counters::default(),
            max_time: 0,
        }
    }

    /// Every partition starts at the start of the log: without a checkpoint, the dataflow's
    /// state can only be rebuilt by reading it all again.
    fn starts(&self, titles: bool) -> Vec<(String, u32, u64)> {
        self.parts
            .iter()
            .filter(|p| !p.done && p.titles == titles)
            .map(|p| (p.topic.clone(), p.partition, p.next_offset))
            .collect()
    }

    fn drive(
        &mut self,
        worker: &mut Worker,
        sources: &Consumers,
        probe: &ProbeHandle<TimeMs>,
        reporter: &mut Reporter,
    ) -> Result<(), EngineError> {
        let shared = &self.ctx.shared;
        let mut announced = false;
        let mut wait = Duration::ZERO;
        while !shared.stopping() {
            let read = if self.parts.iter().all(|p| p.done) {
                0
            } else {
                sources.drain(wait, |titles, polled| self.polled(titles, polled))?
            };
            wait = if read == 0 { IDLE_WAIT } else { Duration::ZERO };
            self.advance();
            worker.step();
            reporter.report(self, probe_frontier(probe), false);
            if !self.ctx.config.until_caught_up {
                continue;
            }
            if !announced && self.parts.iter().all(|p| p.done) {
                announced = true;
                shared.drained_workers.fetch_add(1, Ordering::SeqCst);
            }
            if announced && shared.drained_workers.load(Ordering::SeqCst) == worker.peers() {
                return self.finish(worker, probe, reporter);
            }
        }
        Ok(())
    }

    /// Caught up: every worker has read its partitions, so the largest placed time is final.
    /// Time advances one tick past it, the dataflow completes those ticks, and they are
    /// reported.
    fn finish(
        &mut self,
        worker: &mut Worker,
        probe: &ProbeHandle<TimeMs>,
        reporter: &mut Reporter,
    ) -> Result<(), EngineError> {
        let last = self.ctx.shared.max_time_ms.load(Ordering::SeqCst);
        let end = if last == 0 {
            *self.events.time()
        } else {
            last + self.ctx.config.policy.tick_ms
        };
        self.events.advance_to(end.max(*self.events.time()));
        self.titles.advance_to(end.max(*self.titles.time()));
        self.events.flush();
        self.titles.flush();
        while probe.less_than(self.events.time()) && !self.ctx.shared.stopping() {
            worker.step();
        }
        reporter.report(self, probe_frontier(probe), false);
        Ok(())
    }

    fn polled(&mut self, titles: bool, polled: Polled<'_>) {
        match polled {
            Polled::Record(record) => self.ingest(titles, record),
            Polled::End { partition } => {
                if let Some(&i) = self.index.get(&(titles, partition)) {
                    self.parts[i].at_end = true;
                }
            }
        }
    }

    fn ingest(&mut self, titles: bool, record: RecordRef<'_>) {
        let Some(&i) = self.index.get(&(titles, record.partition)) else {
            return;
        };
        let part = &mut self.parts[i];
        part.at_end = false;
        if record.offset < part.next_offset || part.done {
            return;
        }
        if self.ctx.config.until_caught_up && record.offset >= part.end_offset {
            part.done = true;
            return;
        }
        part.next_offset = record.offset + 1;
        part.last_record = Instant::now();
        if self.ctx.config.until_caught_up && part.next_offset >= part.end_offset {
            part.done = true;
        }
        self.counters.records += 1;
        self.unshared.records += 1;
        if titles {
            self.ingest_title(i, record);
        } else {
            self.ingest_event(i, record);
        }
    }

    fn ingest_event(&mut self, i: usize, record: RecordRef<'_>) {
        match decode::decode_event(record.payload, &self.ctx.config.door) {
            Ok(event) => {
                let floor = self.floor(i, record.offset);
                let placed = self.parts[i]
                    .clock
                    .place(event.ts_ms, floor, &self.ctx.config.policy);
                self.max_time = self.max_time.max(placed.time);
                self.events.update_at(event, placed.time, 1);
                self.count(|c| c.events += 1);
                if placed.late {
                    self.count(|c| c.late_events += 1);
                }
            }
            Err(reason) => self.dead(record, reason),
        }
    }

    fn ingest_title(&mut self, i: usize, record: RecordRef<'_>) {
        let title = match decode::decode_title(record.payload) {
            Ok(title) => title,
            Err(reason) => return self.dead(record, reason),
        };
        // Titles carry no event time: a title takes effect at its record's Kafka timestamp,
        // and one without a plausible timestamp at the partition's frontier.
        let ts = record
            .timestamp_ms
            .map(|t| t.max(0) as u64)
            .filter(|t| (MIN_TS_MS..MAX_TS_MS).contains(t));
        let floor = self.floor(i, record.offset);
        let policy = &self.ctx.config.policy;
        let clock = &mut self.parts[i].clock;
        let placed = match ts {
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

    fn dead(&mut self, record: RecordRef<'_>, reason: decode::DeadReason) {
        self.dead_letters.push(DeadLetter {
            topic: record.topic.to_string(),
            partition: record.partition,
            offset: record.offset,
            reason: reason.to_string(),
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
        let config = &self.ctx.config;
        let shared = &self.ctx.shared;
        let now = Instant::now();
        let holding = self.parts.iter().filter(|p| {
            let idle = !config.until_caught_up && now.duration_since(p.last_record) >= config.idle;
            // Reference data holds time back only until it is read to the end of its log.
            let read = p.titles && p.at_end;
            !p.done && !idle && !read
        });
        let mut target = holding.map(|p| p.clock.frontier(&config.policy)).min();
        if target.is_none() && !config.until_caught_up {
            // Nothing of ours holds time back: follow the other workers.
            target = Some(shared.input_time_ms.load(Ordering::Relaxed));
        }
        if let Some(t) = target.filter(|t| t > self.events.time()) {
            self.events.advance_to(t);
            self.titles.advance_to(t);
        }
        self.events.flush();
        self.titles.flush();
        shared
            .input_time_ms
            .fetch_max(*self.events.time(), Ordering::Relaxed);
        shared
            .max_time_ms
            .fetch_max(self.max_time, Ordering::SeqCst);
        shared.add(&std::mem::take(&mut self.unshared));
    }

    fn positions(&self) -> Vec<(String, u32, u64)> {
        self.parts
            .iter()
            .map(|p| (p.topic.clone(), p.partition, p.next_offset))
            .collect()
    }
}

/// The worker's consumers: one for its events partitions, and one that reports the end of
/// the log for its titles partitions.
struct Consumers {
    events: Option<KafkaSource>,
    titles: Option<KafkaSource>,
}

impl Consumers {
    fn connect(brokers: &str, ingest: &Ingest<'_>) -> Result<Consumers, EngineError> {
        let connect = |titles: bool| -> Result<Option<KafkaSource>, EngineError> {
            let starts = ingest.starts(titles);
            if starts.is_empty() {
                return Ok(None);
            }
            let source = KafkaSource::connect_with(brokers, titles)?;
            source.assign(&starts)?;
            Ok(Some(source))
        };
        Ok(Consumers {
            events: connect(false)?,
            titles: connect(true)?,
        })
    }

    /// Drains the titles first (a little, never waiting), then a batch of events.
    fn drain(
        &self,
        wait: Duration,
        mut f: impl FnMut(bool, Polled<'_>),
    ) -> Result<usize, EngineError> {
        let mut read = 0;
        if let Some(titles) = &self.titles {
            read += titles.drain(BATCH, Duration::ZERO, |p| f(true, p))?;
        }
        if let Some(events) = &self.events {
            read += events.drain(BATCH, wait, |p| f(false, p))?;
        }
        Ok(read)
    }
}

/// Hands completed output to the writer, once per frontier advance.
struct Reporter {
    index: usize,
    tx: SyncSender<Report>,
    output: Rc<RefCell<Vec<Update>>>,
    reported: TimeMs,
}

impl Reporter {
    fn report(&mut self, ingest: &mut Ingest<'_>, frontier: TimeMs, last: bool) {
        if frontier <= self.reported && !last {
            return;
        }
        let mut output = self.output.borrow_mut();
        let (updates, pending): (Vec<Update>, Vec<Update>) =
            output.drain(..).partition(|(_, time, _)| *time < frontier);
        *output = pending;
        self.reported = self.reported.max(frontier);
        let positions = ingest.positions();
        ingest.ctx.shared.set_positions(&positions);
        let report = Report {
            worker: self.index,
            frontier_ms: self.reported,
            updates,
            next_offsets: positions,
            dead_letters: std::mem::take(&mut ingest.dead_letters),
            counters: ingest.counters,
            last,
        };
        // A closed channel means the writer failed; it has told `shared` why.
        let _ = self.tx.send(report);
    }
}

/// The dataflow's output frontier: every time below it is complete. An empty frontier (all
/// inputs closed) never happens while the worker holds its inputs.
fn probe_frontier(probe: &ProbeHandle<TimeMs>) -> TimeMs {
    probe.with_frontier(|f| f.first().copied().unwrap_or(TimeMs::MAX))
}
