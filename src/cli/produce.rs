//! `rewind produce`: load JSON lines into a topic.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use rewind_connectors::{Producer, file};
use serde::Deserialize;

/// Load a JSON-lines file into a Kafka topic, one record a line.
///
/// The key is the line's `user_id` (events) or `title_id` (titles); the record timestamp is its
/// `ts`, else --timestamp-ms, else the broker's clock. Lines that are not JSON objects are
/// produced as they are, without a key: deciding what is bad is the pipeline's job.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    file: PathBuf,
    /// Timestamp (ms since the epoch) for records without a `ts`, such as titles.
    #[arg(long)]
    timestamp_ms: Option<i64>,
}

#[derive(Deserialize)]
struct Keys<'a> {
    #[serde(borrow)]
    user_id: Option<&'a str>,
    #[serde(borrow)]
    title_id: Option<&'a str>,
    ts: Option<i64>,
}

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let producer = Producer::connect(&args.brokers)?;
    let count = load_lines(&producer, &args.topic, &args.file, args.timestamp_ms)?;
    producer.flush(Duration::from_secs(60))?;
    eprintln!("rewind: produced {count} records to {}", args.topic);
    Ok(())
}

/// Queues each line of `path` keyed by its `user_id` or `title_id` and stamped with its `ts`
/// (else `default_ts`); returns how many. The caller flushes.
pub(super) fn load_lines(
    producer: &Producer,
    topic: &str,
    path: &Path,
    default_ts: Option<i64>,
) -> anyhow::Result<u64> {
    let mut count = 0u64;
    file::for_each_line(path, |line| {
        let keys = serde_json::from_str::<Keys<'_>>(line).ok();
        let key = keys.as_ref().and_then(|k| k.user_id.or(k.title_id));
        let ts = keys.as_ref().and_then(|k| k.ts).or(default_ts);
        producer.send(topic, key.map(str::as_bytes), line.as_bytes(), ts)?;
        count += 1;
        if count.is_multiple_of(1024) {
            producer.poll();
        }
        Ok(())
    })?;
    Ok(count)
}
