//! A plain librdkafka consumer, for comparing with rewind's own: reads every partition of a
//! topic from offset 0 to its end as of start and prints records/s. No decoding, no dataflow.
//!
//! ```text
//! cargo run --release -p rewind-connectors --example plain_consume -- BROKERS TOPIC [KEY=VALUE...]
//! ```
//!
//! Extra `KEY=VALUE` arguments are librdkafka settings (e.g. `fetch.wait.max.ms=500`), to
//! find which ones matter against a given broker. With TOPIC given as `rewind:TOPIC`, it
//! reads through rewind's own [`KafkaSource`] instead (its settings, its drain), as the
//! engine's workers do. With BROKERS given as `embedded:N`, it first fills TOPIC (32
//! partitions) of an in-process mock cluster with N records of 200 bytes (at most ~25k per
//! partition: the mock keeps 5 MiB of each): the consumer's own
//! cost, without a network or a broker's.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use rewind_connectors::{EmbeddedCluster, KafkaSource, Polled, Producer};

/// Gives up on a broker that stops serving, rather than hanging a benchmark.
const GIVE_UP: Duration = Duration::from_secs(300);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, topic, settings @ ..] = args.as_slice() else {
        eprintln!("usage: plain_consume BROKERS [rewind:]TOPIC [KEY=VALUE...]");
        std::process::exit(2);
    };
    let embedded = brokers.strip_prefix("embedded:").map(|n| {
        let topic = topic.trim_start_matches("rewind:");
        fill_embedded(topic, n.parse().expect("embedded:N takes a record count"))
    });
    let brokers = embedded
        .as_ref()
        .map_or(brokers.as_str(), |c| c.bootstrap_servers());
    let start = Instant::now();
    let (read, bytes, total) = match topic.strip_prefix("rewind:") {
        Some(topic) => rewind(brokers, topic),
        None => plain(brokers, topic, settings),
    };
    let secs = start.elapsed().as_secs_f64();
    let who = if topic.starts_with("rewind:") {
        "rewind's"
    } else {
        "plain"
    };
    println!(
        "{who} consumer: {read} of {total} records ({:.1} MB) in {secs:.2} s: {:.0} records/s",
        bytes as f64 / 1e6,
        read as f64 / secs
    );
}

/// (records read, payload bytes, records in the topic) through a bare `BaseConsumer`.
fn plain(brokers: &str, topic: &str, settings: &[String]) -> (u64, usize, u64) {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", "plain_consume")
        .set("enable.auto.commit", "false");
    for setting in settings {
        let (key, value) = setting.split_once('=').expect("settings are KEY=VALUE");
        config.set(key, value);
    }
    let consumer: BaseConsumer = config.create().expect("consumer");
    let ends = ends(&KafkaSource::connect(brokers).expect("connect"), topic);
    let mut list = TopicPartitionList::new();
    for partition in 0..ends.len() {
        list.add_partition_offset(topic, partition as i32, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&list).expect("assign");
    let start = Instant::now();
    let (mut read, mut bytes) = (0, 0);
    let mut left: Vec<bool> = ends.iter().map(|&end| end > 0).collect();
    while left.contains(&true) && start.elapsed() < GIVE_UP {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        if message.offset() as u64 + 1 >= ends[message.partition() as usize] {
            left[message.partition() as usize] = false;
        }
        read += 1;
        bytes += message.payload().map_or(0, <[u8]>::len);
    }
    (read, bytes, ends.iter().sum())
}

/// The same through rewind's [`KafkaSource::drain`], in the engine's batch size.
fn rewind(brokers: &str, topic: &str) -> (u64, usize, u64) {
    let source = KafkaSource::connect_with(brokers, true).expect("connect");
    let info = source.topic_info(topic).expect("topic info");
    let starts: Vec<_> = (0..info.watermarks.len() as u32)
        .map(|p| (topic.to_string(), p, info.watermarks[p as usize].0))
        .collect();
    let ends = ends(&source, topic);
    source.assign(&starts).expect("assign");
    let start = Instant::now();
    let (mut read, mut bytes) = (0, 0);
    let mut left: Vec<bool> = ends.iter().map(|&end| end > 0).collect();
    while left.contains(&true) && start.elapsed() < GIVE_UP {
        let drained = source.drain(16_384, Duration::from_millis(2), |polled| {
            if let Polled::Record(record) = polled {
                if record.offset + 1 >= ends[record.partition as usize] {
                    left[record.partition as usize] = false;
                }
                read += 1;
                bytes += record.payload.map_or(0, <[u8]>::len);
            }
        });
        drained.expect("drain");
    }
    (read, bytes, ends.iter().sum())
}

/// The next offset to be written, per partition, as of now.
fn ends(source: &KafkaSource, topic: &str) -> Vec<u64> {
    let info = source.topic_info(topic).expect("topic info");
    info.watermarks.iter().map(|&(_, high)| high).collect()
}

/// A mock cluster whose `topic` holds `records` records, spread over 32 partitions.
fn fill_embedded(topic: &str, records: u64) -> EmbeddedCluster {
    let cluster = EmbeddedCluster::start().expect("embedded cluster");
    cluster.create_topic(topic, 32).expect("topic");
    let producer = Producer::connect(cluster.bootstrap_servers()).expect("producer");
    let payload = [b'x'; 200];
    for i in 0..records {
        producer
            .send(topic, Some(&i.to_le_bytes()), &payload, None)
            .expect("send");
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    cluster
}
