//! `rewind produce`: load JSON lines into a topic.

use std::path::PathBuf;
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
    let mut count = 0u64;
    file::for_each_line(&args.file, |line| {
        let keys = serde_json::from_str::<Keys<'_>>(line).ok();
        let key = keys.as_ref().and_then(|k| k.user_id.or(k.title_id));
        let ts = keys.as_ref().and_then(|k| k.ts).or(args.timestamp_ms);
        producer.send(&args.topic, key.map(str::as_bytes), line.as_bytes(), ts)?;
        count += 1;
        if count.is_multiple_of(1024) {
            producer.poll();
        }
        Ok(())
    })?;
    producer.flush(Duration::from_secs(60))?;
    eprintln!("rewind: produced {count} records to {}", args.topic);
    Ok(())
}
