//! The Kafka source against librdkafka's mock cluster: batch reads hand out every record once,
//! in offset order per partition, with its key, payload and timestamp; ends and errors are
//! reported as before the batch reads.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{KafkaSource, Polled, Producer};
use crate::{ConnectorError, EmbeddedCluster};

const PATIENCE: Duration = Duration::from_secs(30);

fn filled(partitions: u32, records: u64) -> EmbeddedCluster {
    let cluster = EmbeddedCluster::start().unwrap();
    cluster.create_topic("t", partitions).unwrap();
    let producer = Producer::connect(cluster.bootstrap_servers()).unwrap();
    for i in 0..records {
        let key = format!("k{i}");
        let payload = format!("p{i}");
        producer
            .send(
                "t",
                Some(key.as_bytes()),
                payload.as_bytes(),
                Some(1_700_000_000_000 + i as i64),
            )
            .unwrap();
    }
    producer.flush(PATIENCE).unwrap();
    cluster
}

/// What a drain saw of one partition: records as (offset, key, payload, timestamp), and
/// whether its end was reported after its last record.
#[derive(Default, Debug)]
struct Seen {
    records: Vec<(u64, String, String, Option<i64>)>,
    ended_after: Option<usize>,
}

fn drain_all(source: &KafkaSource, expected: usize, max: usize) -> BTreeMap<u32, Seen> {
    let mut seen: BTreeMap<u32, Seen> = BTreeMap::new();
    let mut read = 0;
    let start = Instant::now();
    while (read < expected || seen.values().any(|s| s.ended_after.is_none()))
        && start.elapsed() < PATIENCE
    {
        let got = source
            .drain(max, Duration::from_millis(10), |polled| match polled {
                Polled::Record(r) => {
                    assert_eq!(r.topic, "t");
                    let text = |b: Option<&[u8]>| String::from_utf8(b.unwrap().to_vec()).unwrap();
                    let part = seen.entry(r.partition).or_default();
                    part.records
                        .push((r.offset, text(r.key), text(r.payload), r.timestamp_ms));
                    part.ended_after = None;
                }
                Polled::End { partition } => {
                    let part = seen.entry(partition).or_default();
                    part.ended_after = Some(part.records.len());
                }
            })
            .unwrap();
        assert!(
            got <= max,
            "a drain handed out {got} records, more than its max {max}"
        );
        read += got;
    }
    seen
}

#[test]
fn batch_reads_hand_out_every_record_once_in_offset_order() {
    let cluster = filled(4, 5_000);
    let source = KafkaSource::connect_with(cluster.bootstrap_servers(), true).unwrap();
    let starts: Vec<_> = (0..4).map(|p| ("t".to_string(), p, 0)).collect();
    source.assign(&starts).unwrap();
    // A max below the batch size, so drains stop mid-batch and pick up where they stopped.
    let seen = drain_all(&source, 5_000, 700);
    let mut total = 0;
    for (partition, part) in &seen {
        let offsets: Vec<u64> = part.records.iter().map(|r| r.0).collect();
        let expected: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(
            offsets, expected,
            "partition {partition}: offsets not exact"
        );
        assert_eq!(
            part.ended_after,
            Some(part.records.len()),
            "partition {partition}"
        );
        for (_, key, payload, ts) in &part.records {
            let i: i64 = key[1..].parse().unwrap();
            assert_eq!(payload, &format!("p{i}"));
            assert_eq!(*ts, Some(1_700_000_000_000 + i));
        }
        total += part.records.len();
    }
    assert_eq!(total, 5_000);
}

#[test]
fn a_source_starts_each_partition_at_its_next_offset() {
    let cluster = filled(2, 1_000);
    let source = KafkaSource::connect_with(cluster.bootstrap_servers(), true).unwrap();
    let info = source.topic_info("t").unwrap();
    let starts = vec![("t".to_string(), 0, 7), ("t".to_string(), 1, 0)];
    source.assign(&starts).unwrap();
    let seen = drain_all(&source, 1_000 - 7, 100_000);
    assert_eq!(seen[&0].records.first().unwrap().0, 7);
    assert_eq!(seen[&0].records.last().unwrap().0 + 1, info.watermarks[0].1);
    assert_eq!(seen[&1].records.len() as u64, info.watermarks[1].1);
}

#[test]
fn an_offset_the_broker_does_not_hold_is_an_error_naming_it() {
    let cluster = filled(2, 100);
    let source = KafkaSource::connect_with(cluster.bootstrap_servers(), true).unwrap();
    source.assign(&[("t".to_string(), 1, 1_000_000)]).unwrap();
    let start = Instant::now();
    let err = loop {
        assert!(
            start.elapsed() < PATIENCE,
            "no error for an offset past the log"
        );
        match source.drain(100, Duration::from_millis(10), |_| {}) {
            Ok(_) => continue,
            Err(err) => break err,
        }
    };
    assert!(!err.retryable(), "{err}");
    match err {
        ConnectorError::OffsetGone {
            topic, partition, ..
        } => assert_eq!((topic.as_str(), partition), ("t", 1)),
        other => panic!("expected OffsetGone, got {other}"),
    }
}

#[test]
fn an_unreachable_cluster_is_a_retryable_drain_error() {
    let cluster = filled(1, 10);
    let source = KafkaSource::connect_with(cluster.bootstrap_servers(), true).unwrap();
    source.assign(&[("t".to_string(), 0, 0)]).unwrap();
    drain_all(&source, 10, 100);
    cluster.set_broker_up(false).unwrap();
    let start = Instant::now();
    let err = loop {
        assert!(start.elapsed() < PATIENCE, "the outage was never reported");
        match source.drain(100, Duration::from_millis(10), |_| {}) {
            Ok(_) => continue,
            Err(err) => break err,
        }
    };
    assert!(err.retryable(), "{err}");
}
