//! Kafka through rdkafka: a source with explicit partition assignment, and a producer that
//! loses nothing silently.
//!
//! # Constraints
//! - A [`KafkaSource`] starts each partition at the offset its caller gives (the store's next
//!   offsets, or 0): consumer-group commits are never read or written.
//! - `auto.offset.reset=error`: an offset the broker no longer holds is an error
//!   ([`ConnectorError::OffsetGone`]), never a silent jump.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, Timestamp};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::{ConnectorError, Result};

mod fetch;

use fetch::{FetchQueue, Fetched};

/// Metadata requests are answered in milliseconds on a healthy cluster; ten seconds leaves
/// room for a broker that is starting up.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// One record, borrowed from the consumer's buffers for the time of a callback.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub offset: u64,
    /// The record's Kafka timestamp (create or log-append time), if it has one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
}

/// What a drain hands out.
#[derive(Debug, Clone, Copy)]
pub enum Polled<'a> {
    Record(RecordRef<'a>),
    /// The partition has been read to the current end of its log.
    End {
        partition: u32,
    },
}

/// What the cluster says of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub topic: String,
    /// (low, high) watermark per partition: the first offset held, and the next to be written.
    pub watermarks: Vec<(u64, u64)>,
}

fn consumer_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        // A group id is required by librdkafka's consumer, but nothing is ever committed to it.
        .set("group.id", "rewind")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .set("allow.auto.create.topics", "false")
        // Freshness: a fetch returns after at most 10 ms even when little has arrived.
        .set("fetch.wait.max.ms", "10")
        // Throughput: keep plenty prefetched so a drain rarely waits on the network.
        .set("queued.min.messages", "200000")
        .set("fetch.max.bytes", "52428800")
        // Above fetch.max.bytes, as librdkafka requires; oversized records must arrive to be
        // counted as dead letters rather than stall the partition.
        .set("receive.message.max.bytes", "62914560")
        .set("max.partition.fetch.bytes", "16777216")
        // Back within a second of a broker's return, not librdkafka's default of up to 10 s.
        .set("reconnect.backoff.max.ms", "1000");
    config
}

/// Reads assigned partitions of one or more topics, from offsets the caller chooses.
pub struct KafkaSource {
    /// Declared before `consumer`, so it is dropped first: a queue must not outlive its client.
    fetch: FetchQueue,
    consumer: BaseConsumer,
    brokers: String,
}

impl KafkaSource {
    /// Connects without an assignment, for metadata.
    pub fn connect(brokers: &str) -> Result<KafkaSource> {
        Self::connect_with(brokers, false)
    }

    /// Connects; with `report_ends`, [`KafkaSource::drain`] also says when a partition has
    /// been read to the end of its log ([`Polled::End`]).
    pub fn connect_with(brokers: &str, report_ends: bool) -> Result<KafkaSource> {
        let consumer: BaseConsumer = consumer_config(brokers)
            .set(
                "enable.partition.eof",
                if report_ends { "true" } else { "false" },
            )
            .create()
            .map_err(ConnectorError::Setup)?;
        Ok(KafkaSource {
            fetch: FetchQueue::new(&consumer).map_err(ConnectorError::Setup)?,
            consumer,
            brokers: brokers.to_string(),
        })
    }

    /// Partition count and watermarks of `topic`.
    pub fn topic_info(&self, topic: &str) -> Result<TopicInfo> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(ConnectorError::Metadata)?;
        let no_topic = |detail: String| ConnectorError::NoTopic {
            topic: topic.to_string(),
            brokers: self.brokers.clone(),
            detail,
        };
        let meta = metadata.topics().iter().find(|t| t.name() == topic);
        let meta = meta.ok_or_else(|| no_topic("not in metadata".into()))?;
        if let Some(err) = meta.error() {
            return Err(no_topic(format!("{:?}", RDKafkaErrorCode::from(err))));
        }
        if meta.partitions().is_empty() {
            return Err(no_topic("no partitions".into()));
        }
        let mut watermarks = Vec::with_capacity(meta.partitions().len());
        for partition in 0..meta.partitions().len() as i32 {
            let (low, high) = self
                .consumer
                .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
                .map_err(ConnectorError::Metadata)?;
            watermarks.push((low.max(0) as u64, high.max(0) as u64));
        }
        Ok(TopicInfo {
            topic: topic.to_string(),
            watermarks,
        })
    }

    /// Whether a broker answers a metadata request within `timeout`.
    pub fn reachable(&self, timeout: Duration) -> bool {
        self.consumer.fetch_metadata(None, timeout).is_ok()
    }

    /// Starts reading each (topic, partition) at its next offset.
    pub fn assign(&self, starts: &[(String, u32, u64)]) -> Result<()> {
        let mut list = TopicPartitionList::new();
        for (topic, partition, next_offset) in starts {
            list.add_partition_offset(
                topic,
                *partition as i32,
                Offset::Offset(*next_offset as i64),
            )
            .map_err(ConnectorError::Setup)?;
            self.fetch
                .forward(topic, *partition as i32)
                .map_err(ConnectorError::Setup)?;
        }
        self.consumer.assign(&list).map_err(ConnectorError::Setup)
    }

    /// Hands up to `max` available records to `f`, waiting at most `wait` for the first.
    ///
    /// One wake-up drains what librdkafka has prefetched, in batches, so the caller pays for
    /// one dataflow step per batch, not per record. Returns the number of records handed out.
    ///
    /// While the cluster is unreachable librdkafka queues an error event per failed attempt,
    /// and reconnects by itself: a drain reads past them all, and fails with the last one
    /// (retryable) only if it read no record. A partition error that waiting cannot heal
    /// fails the drain at once, after the records that came before it.
    pub fn drain(
        &self,
        max: usize,
        wait: Duration,
        mut f: impl FnMut(Polled<'_>),
    ) -> Result<usize> {
        let mut count = 0;
        let mut transient = None;
        let mut fatal = None;
        self.fetch.consume(max, wait, |fetched| {
            if fatal.is_some() {
                return;
            }
            match fetched {
                Fetched::Record(record) => {
                    f(Polled::Record(record));
                    count += 1;
                }
                Fetched::End { partition } => f(Polled::End { partition }),
                Fetched::Error {
                    topic,
                    partition,
                    offset,
                    code,
                } => match partition_error(topic, partition, offset, code) {
                    err if err.retryable() => transient = Some(err),
                    err => fatal = Some(err),
                },
            }
        });
        if let Some(err) = fatal {
            return Err(err);
        }
        // Client-wide errors (broker down, transport) stay on the consumer's own queue.
        while let Some(polled) = self.consumer.poll(Duration::ZERO) {
            match polled {
                // Records and partition events never come here (every assigned partition is
                // forwarded to the fetch queue), but if one does it is handled as there: a
                // record is never dropped, an end is an end, a trimmed log is `OffsetGone`.
                Ok(message) => {
                    f(Polled::Record(record_of(&message)));
                    count += 1;
                }
                Err(KafkaError::PartitionEOF(partition)) => f(Polled::End {
                    partition: partition as u32,
                }),
                Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset)) => {
                    return Err(self.offset_gone());
                }
                Err(err) => match ConnectorError::Consume(err) {
                    err if err.retryable() => transient = Some(err),
                    err => return Err(err),
                },
            }
        }
        match transient {
            Some(err) if count == 0 => Err(err),
            _ => Ok(count),
        }
    }
}

impl KafkaSource {
    /// An offset gone, reported on the consumer's own queue, where librdkafka does not say
    /// which partition: the assignment's first position stands for it.
    fn offset_gone(&self) -> ConnectorError {
        let first = self.consumer.position().ok().and_then(|list| {
            list.elements().first().map(|e| {
                let offset = e.offset().to_raw().unwrap_or(0).max(0) as u64;
                (e.topic().to_string(), e.partition() as u32, offset)
            })
        });
        let (topic, partition, next_offset) = first.unwrap_or_default();
        ConnectorError::OffsetGone {
            topic,
            partition,
            next_offset,
        }
    }
}

/// A partition's error as rewind reports it: an offset the broker no longer holds is
/// [`ConnectorError::OffsetGone`], never a silent jump.
fn partition_error(
    topic: &str,
    partition: u32,
    offset: i64,
    code: RDKafkaErrorCode,
) -> ConnectorError {
    if code == RDKafkaErrorCode::AutoOffsetReset {
        return ConnectorError::OffsetGone {
            topic: topic.to_string(),
            partition,
            next_offset: offset.max(0) as u64,
        };
    }
    ConnectorError::Consume(KafkaError::MessageConsumption(code))
}

fn record_of<'a>(message: &'a BorrowedMessage<'_>) -> RecordRef<'a> {
    let timestamp_ms = match message.timestamp() {
        Timestamp::NotAvailable => None,
        Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
    };
    RecordRef {
        topic: message.topic(),
        partition: message.partition() as u32,
        offset: message.offset() as u64,
        timestamp_ms,
        key: message.key(),
        payload: message.payload(),
    }
}

/// Counts deliveries that failed, so a producer can report them instead of dropping them.
#[derive(Default)]
struct DeliveryTracker {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

#[derive(Clone, Default)]
struct TrackingContext(Arc<DeliveryTracker>);

impl ClientContext for TrackingContext {}

impl ProducerContext for TrackingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((err, _)) = result {
            self.0.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.0.first_error.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| err.to_string());
        }
    }
}

/// Writes records to Kafka; [`Producer::flush`] fails if any record was not delivered.
pub struct Producer {
    inner: BaseProducer<TrackingContext>,
    tracker: Arc<DeliveryTracker>,
}

impl Producer {
    /// Batches for throughput: 5 ms of linger costs little freshness.
    pub fn connect(brokers: &str) -> Result<Producer> {
        Producer::connect_lingering(brokers, Duration::from_millis(5))
    }

    /// Waits up to `linger` to fill a batch: a broker that pays per request (tansu commits a
    /// transaction per partition per produce request) needs fewer, larger ones.
    pub fn connect_lingering(brokers: &str, linger: Duration) -> Result<Producer> {
        let context = TrackingContext::default();
        let tracker = context.0.clone();
        let inner = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", linger.as_millis().to_string())
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("compression.type", "none")
            // Oversized records are the pipeline's to judge (as dead letters), not the loader's.
            .set("message.max.bytes", "16777216")
            .create_with_context(context)
            .map_err(ConnectorError::Setup)?;
        Ok(Producer { inner, tracker })
    }

    /// Queues one record; waits for room when the local queue is full.
    pub fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        timestamp_ms: Option<i64>,
    ) -> Result<()> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(ts) = timestamp_ms {
            record = record.timestamp(ts);
        }
        loop {
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.inner.poll(Duration::from_millis(10));
                }
                Err((err, _)) => return Err(ConnectorError::Produce(err.to_string())),
            }
        }
    }

    /// Serves delivery reports without waiting; call now and then while sending.
    pub fn poll(&self) {
        self.inner.poll(Duration::ZERO);
    }

    /// Waits until every queued record is delivered; fails if any delivery failed.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.inner
            .flush(timeout)
            .map_err(|e| ConnectorError::Produce(e.to_string()))?;
        let failed = self.tracker.failed.load(Ordering::Relaxed);
        if failed > 0 {
            let first = self
                .tracker
                .first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let first = first.clone().unwrap_or_default();
            return Err(ConnectorError::Produce(format!(
                "{failed} records were not delivered; first error: {first}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
