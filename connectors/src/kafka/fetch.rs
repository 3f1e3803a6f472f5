//! Batch reads through librdkafka's C API: the one room of rewind that calls it directly.
//!
//! rdkafka's `BaseConsumer::poll` hands out one message per call, each wrapped in an event
//! and a reference-counted handle. Here the assigned partitions are forwarded to a queue of
//! our own, read with `rd_kafka_consume_batch_queue`: up to a thousand messages per call, each
//! borrowed for the time of a callback and destroyed right after it.
//!
//! # Constraints
//! - A partition is forwarded ([`FetchQueue::forward`]) before it is assigned, so no record of
//!   it ever reaches the consumer's own queue (librdkafka keeps an application's forward
//!   across the assignment's fetch start).
//! - The queue only carries what librdkafka files per partition: records, partition EOF and
//!   partition errors (offset out of range, topic errors). Client-wide errors (broker down,
//!   transport) stay on the consumer's queue, which the caller keeps polling.
//! - The queue is dropped before the consumer whose client made it.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::ptr::{NonNull, null_mut};
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::RecordRef;

/// Messages taken per call: enough to amortize the queue's lock and wake-up, few enough to
/// sit on the stack.
const CHUNK: usize = 1024;

/// What one message of the fetch queue is.
#[derive(Debug)]
pub(super) enum Fetched<'a> {
    Record(RecordRef<'a>),
    /// The partition has been read to the current end of its log.
    End {
        partition: u32,
    },
    /// A partition error: `offset` is where it struck (for an offset reset, the offset the
    /// broker no longer holds).
    Error {
        topic: &'a str,
        partition: u32,
        offset: i64,
        code: RDKafkaErrorCode,
    },
}

/// A librdkafka queue that assigned partitions are forwarded to.
pub(super) struct FetchQueue {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    client: NonNull<rdsys::rd_kafka_t>,
}

// SAFETY: librdkafka's queues and clients are thread-safe (every operation takes the queue's
// own lock); the handles are reference-counted pointers with no thread affinity.
unsafe impl Send for FetchQueue {}
// SAFETY: as above: every call made through `&FetchQueue` is a locked librdkafka call.
unsafe impl Sync for FetchQueue {}

impl FetchQueue {
    /// A new, empty queue of `consumer`'s client. Drop it before the consumer.
    pub(super) fn new(consumer: &BaseConsumer) -> Result<FetchQueue, KafkaError> {
        let client = NonNull::new(consumer.client().native_ptr()).ok_or_else(no_client)?;
        // SAFETY: `client` is the live client of `consumer`; the queue takes a reference on
        // the client's internals and is destroyed in `drop`, before the consumer (see the
        // field order of `KafkaSource`).
        let queue = unsafe { rdsys::rd_kafka_queue_new(client.as_ptr()) };
        let queue = NonNull::new(queue).ok_or_else(no_client)?;
        Ok(FetchQueue { queue, client })
    }

    /// Routes `topic`/`partition`'s records and errors to this queue. Call it before the
    /// partition is assigned.
    pub(super) fn forward(&self, topic: &str, partition: i32) -> Result<(), KafkaError> {
        let name = CString::new(topic)
            .map_err(|_| KafkaError::ClientCreation(format!("topic name {topic:?} has a NUL")))?;
        // SAFETY: the client is live (see `new`) and `name` is a NUL-terminated string that
        // outlives the call; librdkafka copies it.
        let partition_queue = unsafe {
            rdsys::rd_kafka_queue_get_partition(self.client.as_ptr(), name.as_ptr(), partition)
        };
        let Some(partition_queue) = NonNull::new(partition_queue) else {
            return Err(KafkaError::ClientCreation(format!(
                "no queue for partition {partition} of {topic:?}"
            )));
        };
        // SAFETY: both queues are live handles of the same client. Forwarding takes its own
        // reference on our queue, so the partition's handle can be released at once.
        unsafe {
            rdsys::rd_kafka_queue_forward(partition_queue.as_ptr(), self.queue.as_ptr());
            rdsys::rd_kafka_queue_destroy(partition_queue.as_ptr());
        }
        Ok(())
    }

    /// Hands up to `max` messages to `f`, waiting at most `wait` for the first one. Returns
    /// how many messages were handed out.
    pub(super) fn consume(
        &self,
        max: usize,
        wait: Duration,
        mut f: impl FnMut(Fetched<'_>),
    ) -> usize {
        let mut batch = [null_mut::<rdsys::rd_kafka_message_t>(); CHUNK];
        let mut topic = TopicName::default();
        let mut handed = 0;
        let mut wait = wait;
        while handed < max {
            // The batch call waits until its buffer is full: ask for one message while
            // waiting, so the first arrival ends the wait.
            let want = if wait.is_zero() {
                CHUNK.min(max - handed)
            } else {
                1
            };
            let got = self.take(&mut batch[..want], wait);
            let mut owned = Owned(&mut batch[..got]);
            while let Some(message) = owned.next() {
                // SAFETY: librdkafka handed us ownership of each message pointer it wrote;
                // each is read while alive and destroyed exactly once, right after.
                unsafe {
                    f(fetched(&*message, &mut topic));
                    rdsys::rd_kafka_message_destroy(message);
                }
            }
            handed += got;
            wait = Duration::ZERO;
            if got < want {
                break;
            }
        }
        handed
    }

    /// Fills the front of `batch` with messages, waiting up to `wait` for it to fill; returns
    /// how many it took. The caller owns them and must destroy each.
    fn take(&self, batch: &mut [*mut rdsys::rd_kafka_message_t], wait: Duration) -> usize {
        let timeout_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the queue is live; librdkafka writes at most `batch.len()` message pointers
        // into `batch`, and returns how many (or -1 on error).
        let got = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                timeout_ms,
                batch.as_mut_ptr(),
                batch.len(),
            )
        };
        usize::try_from(got).unwrap_or(0)
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        // SAFETY: the handle is live and released once; the client outlives it (see `new`).
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) }
    }
}

fn no_client() -> KafkaError {
    KafkaError::ClientCreation("librdkafka gave no queue for the consumer".into())
}

/// The last topic seen, by librdkafka's handle: names are looked up once per change of
/// topic, not per record.
#[derive(Default)]
struct TopicName {
    handle: usize,
    name: String,
}

impl TopicName {
    /// # Safety
    /// `rkt` is null or a live topic handle.
    unsafe fn of(&mut self, rkt: *mut rdsys::rd_kafka_topic_t) -> &str {
        if rkt as usize != self.handle {
            self.handle = rkt as usize;
            self.name = if rkt.is_null() {
                String::new()
            } else {
                // SAFETY: a live topic handle's name is a NUL-terminated string it owns.
                unsafe { CStr::from_ptr(rdsys::rd_kafka_topic_name(rkt)) }
                    .to_string_lossy()
                    .into_owned()
            };
        }
        &self.name
    }
}

/// A borrowed view of one message.
///
/// # Safety
/// `message` is a live message from `rd_kafka_consume_batch_queue`; the view must not
/// outlive it.
unsafe fn fetched<'a>(
    message: &'a rdsys::rd_kafka_message_t,
    topic: &'a mut TopicName,
) -> Fetched<'a> {
    let partition = message.partition.max(0) as u32;
    if message.err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return match message.err {
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                Fetched::End { partition }
            }
            err => Fetched::Error {
                // SAFETY: a live message's topic handle is null or live.
                topic: unsafe { topic.of(message.rkt) },
                partition,
                offset: message.offset,
                code: err.into(),
            },
        };
    }
    let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    // SAFETY: the message is live (the caller's promise).
    let timestamp = unsafe { rdsys::rd_kafka_message_timestamp(message, &mut kind) };
    let available = kind != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    Fetched::Record(RecordRef {
        // SAFETY: a live message's topic handle is live.
        topic: unsafe { topic.of(message.rkt) },
        partition,
        offset: message.offset.max(0) as u64,
        timestamp_ms: available.then_some(timestamp),
        // SAFETY: librdkafka's key and payload are `len` bytes owned by the live message.
        key: unsafe { bytes(message.key, message.key_len) },
        payload: unsafe { bytes(message.payload, message.len) },
    })
}

/// # Safety
/// `data` is null or points at `len` readable bytes that outlive `'a`.
unsafe fn bytes<'a>(data: *mut std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    // SAFETY: the caller's promise.
    (!data.is_null()).then(|| unsafe { std::slice::from_raw_parts(data as *const u8, len) })
}

/// Messages librdkafka handed over and not yet destroyed. If the callback panics, the rest are
/// destroyed as the stack unwinds: librdkafka must see every message destroyed before its
/// client, or destroying the client waits for them forever.
struct Owned<'a>(&'a mut [*mut rdsys::rd_kafka_message_t]);

impl Owned<'_> {
    /// Takes the next message; it is the caller's to destroy.
    fn next(&mut self) -> Option<*mut rdsys::rd_kafka_message_t> {
        let (first, rest) = std::mem::take(&mut self.0).split_first_mut()?;
        self.0 = rest;
        Some(*first)
    }
}

impl Drop for Owned<'_> {
    fn drop(&mut self) {
        for &message in self.0.iter() {
            // SAFETY: each pointer left here was handed over by librdkafka and never
            // destroyed: `next` removes a message before the caller reads it.
            unsafe { rdsys::rd_kafka_message_destroy(message) };
        }
    }
}
