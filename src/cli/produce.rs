//! `rewind produce`: load JSON lines into a topic.
//!
//! Every line is produced as its bytes, whatever they hold: judging a record is the pipeline's
//! job (a bad one becomes a dead letter), so no line stops a load. What can stop one (an
//! unreadable file, a broker that refuses) is reported with how far the load got.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use rewind::decode::{MAX_TS_MS, MIN_TS_MS};
use rewind_connectors::{Producer, file};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Load a JSON-lines file into a Kafka topic, one record a line.
///
/// The key is the line's `user_id` (events) or `title_id` (titles); the record timestamp is its
/// `ts` when that is a plausible time (years 2000 to 2099), else --timestamp-ms, else the
/// broker's clock. Lines that are not JSON objects, or not UTF-8, are produced as they are,
/// without a key: deciding what is bad is the pipeline's job.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    file: PathBuf,
    /// Timestamp (ms since the epoch, years 2000 to 2099) for records without a `ts`, such as
    /// titles.
    #[arg(long, value_parser = clap::value_parser!(i64).range(MIN_TS_MS as i64..MAX_TS_MS as i64))]
    timestamp_ms: Option<i64>,
}

/// The fields a line's key and timestamp come from, each read leniently: a mistyped one is
/// left out, never a reason to drop the others.
#[derive(Deserialize)]
struct Keys<'a> {
    #[serde(borrow)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow)]
    title_id: Option<&'a RawValue>,
    #[serde(borrow)]
    ts: Option<&'a RawValue>,
}

/// How far a load got.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Records handed to the producer.
    pub queued: u64,
    /// Every record of the lines up to this one (1-based) is queued; nothing after it is.
    pub through_line: u64,
}

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let producer = Producer::connect(&args.brokers)?;
    let mut progress = Progress::default();
    let loaded = load(
        &producer,
        &args.topic,
        &args.file,
        args.timestamp_ms,
        &mut progress,
    );
    // What was queued before a failure is delivered all the same, so the report is exact.
    let flushed = producer.flush(Duration::from_secs(60));
    let (n, line, topic, file) = (
        progress.queued,
        progress.through_line,
        &args.topic,
        args.file.display(),
    );
    match (loaded, flushed) {
        (Ok(()), Ok(())) => {
            eprintln!("rewind: produced {n} records to {topic}");
            Ok(())
        }
        (Err(err), Ok(())) => bail!(
            "{err:#}\nrewind: stopped after line {line} of {file}: its {n} records up to there \
             are in {topic}, none after. To go on, fix the cause and produce the rest: \
             `tail -n +{} {file} > rest.jsonl`",
            line + 1
        ),
        (_, Err(err)) => bail!(
            "{err}\nrewind: of the {n} records queued from lines 1 to {line} of {file}, some \
             did not reach {topic}"
        ),
    }
}

/// Queues each line of `path` keyed by its `user_id` or `title_id` and stamped with its `ts`
/// (else `default_ts`), counting what was queued in `progress`. The caller flushes.
fn load(
    producer: &Producer,
    topic: &str,
    path: &Path,
    default_ts: Option<i64>,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    file::for_each_line_bytes(path, |number, line| {
        let keys = serde_json::from_slice::<Keys<'_>>(line).ok();
        let key = keys
            .as_ref()
            .and_then(|k| text(k.user_id).or(text(k.title_id)));
        let ts = keys.as_ref().and_then(|k| record_ts(k.ts)).or(default_ts);
        producer.send(topic, key.as_deref().map(str::as_bytes), line, ts)?;
        progress.queued += 1;
        progress.through_line = number;
        if progress.queued.is_multiple_of(1024) {
            producer.poll();
        }
        Ok(())
    })?;
    Ok(())
}

fn text(raw: Option<&RawValue>) -> Option<String> {
    serde_json::from_str(raw?.get()).ok()
}

/// A line's `ts` as the record's timestamp, if it is a plausible time. Anything else (negative,
/// far future, not an integer) would mislead whatever reads Kafka timestamps: the record goes
/// out with the default, and the pipeline dead-letters it by its `ts`.
fn record_ts(raw: Option<&RawValue>) -> Option<i64> {
    let ts: u64 = serde_json::from_str(raw?.get()).ok()?;
    (MIN_TS_MS..MAX_TS_MS).contains(&ts).then_some(ts as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plausible_ts_becomes_the_record_timestamp() {
        let ts = |json: &str| {
            let keys: Keys<'_> = serde_json::from_str(json).unwrap();
            record_ts(keys.ts)
        };
        assert_eq!(ts(r#"{"ts":1767225600000}"#), Some(1_767_225_600_000));
        for bad in [
            "-5",
            "0",
            "99",
            "99999999999999",
            "1.5e12",
            "\"1767225600000\"",
        ] {
            assert_eq!(ts(&format!(r#"{{"ts":{bad}}}"#)), None, "{bad}");
        }
    }

    #[test]
    fn a_mistyped_field_does_not_cost_the_others() {
        let json = r#"{"user_id":7,"title_id":"t\u00e9","ts":1767225600000}"#;
        let keys: Keys<'_> = serde_json::from_str(json).unwrap();
        assert_eq!(text(keys.user_id), None);
        assert_eq!(text(keys.title_id).as_deref(), Some("té"));
        assert_eq!(record_ts(keys.ts), Some(1_767_225_600_000));
    }
}
