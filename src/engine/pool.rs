//! Decoding shared out by a worker that reads a log alone: to the engine's decoding thread
//! and to the other workers.
//!
//! A file is one partition, so one worker reads all of it, and with it every event's JSON
//! and pseudonym, while the other workers wait for the events it exchanges to them. Here the
//! reading worker cuts each batch it reads into parts and queues them ([`DecodePool::submit`])
//! for whoever is free: the other workers, and the engine's decoding thread. It goes on
//! reading, and placing the batch before; then it collects the batch's events and places every
//! one itself, in log order. Placement in time depends only on the order of the log, so it is
//! exactly what one worker decoding everything gives; the pool changes who decodes, and when,
//! never what a record becomes.
//!
//! No worker ever waits on a part nobody has taken: the reader decodes every part still queued
//! when it needs the results, and waits only for parts another thread is decoding right now.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rewind_dataflows::Event;

use crate::decode::DeadReason;

pub(crate) type Decoded = Result<Event, DeadReason>;

/// Records of one batch, as raw payloads back to back.
#[derive(Default)]
pub(crate) struct Payloads {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Payloads {
    pub fn push(&mut self, payload: &[u8]) {
        self.bytes.extend_from_slice(payload);
        self.ends.push(self.bytes.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// One part of a batch: a range of its records, and their decoded events once done.
struct Part {
    payloads: Arc<Payloads>,
    range: std::ops::Range<usize>,
    claimed: AtomicBool,
    done: Mutex<Option<Outcome>>,
    finished: Condvar,
}

enum Outcome {
    Decoded(Vec<Decoded>),
    /// The thread decoding it panicked: its reader must not wait for it forever.
    Panicked,
}

/// Marks a claimed part as panicked if its decoding unwinds, and wakes its reader.
struct PanicGuard<'a>(&'a Part);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            *lock(&self.0.done) = Some(Outcome::Panicked);
            self.0.finished.notify_all();
        }
    }
}

impl Part {
    /// Decodes the part if nobody has yet; true if this caller did.
    fn run(&self, decode: &mut dyn FnMut(&[u8]) -> Decoded) -> bool {
        if self.claimed.swap(true, Ordering::AcqRel) {
            return false;
        }
        let guard = PanicGuard(self);
        let out = self
            .range
            .clone()
            .map(|i| decode(self.payloads.get(i)))
            .collect();
        drop(guard);
        *lock(&self.done) = Some(Outcome::Decoded(out));
        self.finished.notify_all();
        true
    }

    /// The part's events; panics if the thread decoding it did, so the reader's run ends
    /// with the others' instead of waiting for a result that never comes.
    fn wait(&self) -> Vec<Decoded> {
        let mut done = lock(&self.done);
        loop {
            match done.take() {
                Some(Outcome::Decoded(out)) => return out,
                Some(Outcome::Panicked) => panic!("a thread decoding for this worker panicked"),
                None => {}
            }
            done = self.finished.wait(done).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The queue of parts waiting for a free worker.
#[derive(Default)]
pub(crate) struct DecodePool {
    queue: Mutex<VecDeque<Arc<Part>>>,
    queued: Condvar,
}

/// A batch smaller than this is decoded by its reader alone: handing it out costs more.
const MIN_SHARED: usize = 1_024;

/// A batch handed to the pool: its parts, queued for whoever is free, until its reader
/// collects them.
pub(crate) struct Pending {
    payloads: Arc<Payloads>,
    parts: Vec<Arc<Part>>,
}

impl DecodePool {
    /// Queues `payloads` for decoding in up to `helpers + 1` parts, so that the helpers (other
    /// workers, the decoding thread) decode them while the reader goes on; [`Self::collect`]
    /// gives the events. A batch too small to share, or with nobody to help, stays unqueued
    /// and its reader decodes it when it collects.
    pub fn submit(&self, payloads: Arc<Payloads>, helpers: usize) -> Pending {
        let n = payloads.len();
        let step = if helpers == 0 || n < MIN_SHARED {
            n.max(1)
        } else {
            n.div_ceil(helpers + 1)
        };
        let parts: Vec<Arc<Part>> = (0..n)
            .step_by(step)
            .map(|start| {
                Arc::new(Part {
                    payloads: payloads.clone(),
                    range: start..(start + step).min(n),
                    claimed: AtomicBool::new(false),
                    done: Mutex::new(None),
                    finished: Condvar::new(),
                })
            })
            .collect();
        if parts.len() > 1 {
            lock(&self.queue).extend(parts.iter().cloned());
            self.queued.notify_all();
        }
        Pending { payloads, parts }
    }

    /// The events of a submitted batch, in order. `decode` is the reader's own: it decodes
    /// every part nobody has taken, from the last back, while the helpers take them from the
    /// first; it waits only for parts a helper is decoding right now. The payloads come back
    /// shared: a helper may still hold the part it found already taken.
    pub fn collect(
        &self,
        pending: Pending,
        decode: &mut dyn FnMut(&[u8]) -> Decoded,
    ) -> (Arc<Payloads>, Vec<Decoded>) {
        let Pending { payloads, parts } = pending;
        let mut ran = false;
        for part in parts.iter().rev() {
            ran |= part.run(decode);
        }
        let mut out = Vec::with_capacity(payloads.len());
        for part in &parts {
            out.extend(part.wait());
        }
        if ran && parts.len() > 1 {
            // Parts the reader ran itself are still queued; helpers skip claimed parts anyway.
            lock(&self.queue).retain(|p| !p.claimed.load(Ordering::Acquire));
        }
        (payloads, out)
    }

    /// Decodes queued parts with `decode` until none is left; waits up to `wait` for one to
    /// arrive first. Returns whether any part was decoded.
    pub fn help(&self, wait: Duration, decode: &mut dyn FnMut(&[u8]) -> Decoded) -> bool {
        let mut helped = false;
        let mut queue = lock(&self.queue);
        if queue.is_empty() {
            queue = self
                .queued
                .wait_timeout(queue, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        while let Some(part) = queue.pop_front() {
            drop(queue);
            helped |= part.run(decode);
            queue = lock(&self.queue);
        }
        helped
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::thread;

    use rewind_dataflows::{EventKind, ViewerId};

    use super::*;

    /// A stand-in decoder that says which thread ran it: the pool must give results in order,
    /// exactly one per payload, whoever decodes.
    fn decode_with(thread: u128) -> impl FnMut(&[u8]) -> Decoded {
        move |payload| {
            let n: u64 = std::str::from_utf8(payload).unwrap().parse().unwrap();
            if n.is_multiple_of(7) {
                return Err(DeadReason::Missing("ts"));
            }
            Ok(Event {
                viewer: ViewerId(thread),
                ts_ms: n,
                kind: EventKind::Search {
                    query: String::new(),
                    title: None,
                },
            })
        }
    }

    /// Batch sizes below, at and above what is shared, round by round.
    const SIZES: [usize; 5] = [0, 1, 1_023, 1_024, 5_000];

    /// The payloads of round `round`.
    fn batch(round: u64, mut payloads: Payloads) -> Payloads {
        payloads.clear();
        let n = SIZES[round as usize % SIZES.len()] as u64;
        for i in 0..n {
            payloads.push((round * 10_000 + i).to_string().as_bytes());
        }
        payloads
    }

    fn check(round: u64, out: &[Decoded]) {
        assert_eq!(out.len(), SIZES[round as usize % SIZES.len()]);
        for (i, got) in out.iter().enumerate() {
            let want = round * 10_000 + i as u64;
            match got {
                Ok(event) => assert_eq!(event.ts_ms, want),
                Err(_) => assert!(want.is_multiple_of(7)),
            }
        }
    }

    #[test]
    fn every_record_is_decoded_once_in_order_with_or_without_helpers() {
        let pool = Arc::new(DecodePool::default());
        let stop = Arc::new(AtomicBool::new(false));
        // Every decoding, whoever does it: each record exactly once.
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = |thread: u128| {
            let (calls, mut decode) = (calls.clone(), decode_with(thread));
            move |payload: &[u8]| {
                calls.fetch_add(1, Ordering::Relaxed);
                decode(payload)
            }
        };
        let helper = {
            let (pool, stop, mut decode) = (pool.clone(), stop.clone(), counted(2));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    pool.help(Duration::from_millis(1), &mut decode);
                }
            })
        };
        let mut decode = counted(1);
        let mut payloads = Payloads::default();
        let mut records = 0;
        // Collected at once, and with the next batch submitted before the last is collected,
        // as a worker reading a file does.
        for round in 0..200u64 {
            let pending = pool.submit(Arc::new(batch(round, payloads)), 1);
            let (back, out) = pool.collect(pending, &mut decode);
            payloads = Arc::try_unwrap(back).unwrap_or_default();
            check(round, &out);
            records += out.len();
        }
        let mut in_flight: Option<(u64, Pending)> = None;
        for round in 200..400u64 {
            let pending = pool.submit(Arc::new(batch(round, Payloads::default())), 2);
            if let Some((previous, pending)) = in_flight.replace((round, pending)) {
                let out = pool.collect(pending, &mut decode).1;
                check(previous, &out);
                records += out.len();
            }
        }
        let (last, pending) = in_flight.unwrap();
        let out = pool.collect(pending, &mut decode).1;
        check(last, &out);
        records += out.len();
        // A batch left long enough is decoded by the helper alone.
        let pending = pool.submit(Arc::new(batch(4, Payloads::default())), 1);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !lock(&pool.queue).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the helper took no part"
            );
            thread::sleep(Duration::from_millis(1));
        }
        let out = pool.collect(pending, &mut decode).1;
        check(4, &out);
        assert!(out.iter().flatten().all(|e| e.viewer == ViewerId(2)));
        records += out.len();
        stop.store(true, Ordering::Relaxed);
        helper.join().unwrap();
        assert!(lock(&pool.queue).is_empty());
        assert_eq!(calls.load(Ordering::Relaxed), records);
    }

    #[test]
    fn a_helper_that_panics_ends_its_readers_wait() {
        let pool = Arc::new(DecodePool::default());
        let started = Arc::new(AtomicBool::new(false));
        let helper = {
            let (pool, started) = (pool.clone(), started.clone());
            thread::spawn(move || {
                let mut decode = |_: &[u8]| -> Decoded {
                    started.store(true, Ordering::Release);
                    panic!("a decoding bug")
                };
                while !pool.help(Duration::from_millis(1), &mut decode) {}
            })
        };
        let reader = thread::spawn(move || {
            let mut payloads = Payloads::default();
            for i in 1..=4_000u64 {
                payloads.push(i.to_string().as_bytes());
            }
            // The reader takes the last part; it waits in it until the helper has taken the
            // first, so the helper's part is the one the reader must wait for.
            let mut last = decode_with(1);
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let mut decode = |p: &[u8]| {
                while !started.load(Ordering::Acquire) {
                    // Fails, rather than hangs, if the parts were never queued.
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no helper took a part"
                    );
                    thread::sleep(Duration::from_millis(1));
                }
                last(p)
            };
            let pending = pool.submit(Arc::new(payloads), 1);
            pool.collect(pending, &mut decode).1.len()
        });
        assert!(helper.join().is_err(), "the helper's decoder panics");
        assert!(reader.join().is_err(), "the reader must not wait forever");
    }

    #[test]
    fn the_reader_decodes_everything_when_no_worker_helps() {
        let pool = DecodePool::default();
        let mut payloads = Payloads::default();
        for i in 1..=3_000u64 {
            payloads.push(i.to_string().as_bytes());
        }
        let pending = pool.submit(Arc::new(payloads), 3);
        let (_, out) = pool.collect(pending, &mut decode_with(1));
        assert_eq!(out.len(), 3_000);
        assert!(out.iter().flatten().all(|e| e.viewer == ViewerId(1)));
        assert!(lock(&pool.queue).is_empty());
    }
}
