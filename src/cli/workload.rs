//! `rewind gen`: a seeded, realistic workload, to a file or into Kafka.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rewind::decode::{MAX_TS_MS, MIN_TS_MS};
use rewind::workload::{
    ConsentShape, ConsentStream, ErasureShape, ErasureStream, GenConfig, Generator, Record,
};
use rewind_connectors::Producer;

/// Generate a seeded viewing workload (events and titles) in the event schema (docs/events.md).
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Concurrent viewers.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=50_000_000))]
    viewers: u32,
    /// Titles in the catalog.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    titles: u32,
    /// Events to generate.
    #[arg(long)]
    events: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Event time of the first event, ms since the epoch (default 2026-01-01T00:00:00Z). The
    /// pipeline takes years 2000 to 2099; a start outside them would make every event a dead
    /// letter.
    #[arg(long, value_parser = clap::value_parser!(u64).range(MIN_TS_MS..MAX_TS_MS))]
    start_ms: Option<u64>,
    /// Fraction of events stamped up to 3 s early (reordering inside the default lateness).
    #[arg(long, default_value_t = 0.05)]
    disorder: f64,
    /// Fraction of events stamped 30 s early (late: beyond the default lateness).
    #[arg(long, default_value_t = 0.0)]
    late: f64,
    /// Write events as JSON lines here (titles go to --titles-out).
    #[arg(long, conflicts_with = "brokers", required_unless_present = "brokers")]
    out: Option<PathBuf>,
    /// Where titles go with --out (default: OUT with extension `.titles.jsonl`).
    #[arg(long, requires = "out")]
    titles_out: Option<PathBuf>,
    /// Where consent records (grants and revocations, up to the last event) go with --out
    /// (default: OUT with extension `.consent.jsonl`).
    #[arg(long, requires = "out")]
    consent_out: Option<PathBuf>,
    /// With --brokers: also produce consent records to this topic, merged with the events in
    /// time.
    #[arg(long, requires = "brokers")]
    consent_topic: Option<String>,
    /// Where erasure records (an occasional viewer asking to be forgotten, up to the last
    /// event) go with --out (default: OUT with extension `.erasures.jsonl`).
    #[arg(long, requires = "out")]
    erasures_out: Option<PathBuf>,
    /// With --brokers: also produce erasure records to this topic, merged with the events in
    /// time.
    #[arg(long, requires = "brokers")]
    erasure_topic: Option<String>,
    /// Produce into this Kafka cluster instead (HOST:PORT).
    #[arg(long)]
    brokers: Option<String>,
    #[arg(long, default_value = "events")]
    topic: String,
    #[arg(long, default_value = "titles")]
    titles_topic: String,
    /// With --brokers: events per second (default: as fast as possible).
    #[arg(long, requires = "brokers")]
    rate: Option<u64>,
}

pub fn run(args: GenArgs) -> anyhow::Result<()> {
    for (name, f) in [("--disorder", args.disorder), ("--late", args.late)] {
        if !(0.0..=1.0).contains(&f) {
            bail!("{name} is a fraction between 0 and 1, not {f}");
        }
    }
    let defaults = GenConfig::default();
    let config = GenConfig {
        viewers: args.viewers,
        titles: args.titles,
        seed: args.seed,
        start_ms: args.start_ms.unwrap_or(defaults.start_ms),
        disorder: args.disorder,
        late: args.late,
        ..defaults
    };
    let generator = Generator::new(config.clone());
    let consent = ConsentStream::new(&config, ConsentShape::default()).peekable();
    let erasures = ErasureStream::new(&config, ErasureShape::default()).peekable();
    let sides = Sides { consent, erasures };
    match (&args.out, &args.brokers) {
        (Some(out), _) => {
            let beside = side_files(out, &args)?;
            let titles_out = args
                .titles_out
                .clone()
                .unwrap_or_else(|| beside("titles.jsonl"));
            let consent_out = args
                .consent_out
                .clone()
                .unwrap_or_else(|| beside("consent.jsonl"));
            let erasures_out = args
                .erasures_out
                .clone()
                .unwrap_or_else(|| beside("erasures.jsonl"));
            let files = Files {
                out,
                titles_out: &titles_out,
                consent_out: &consent_out,
                erasures_out: &erasures_out,
            };
            write_files(generator, sides, args.events, files)
        }
        (None, Some(brokers)) => produce(generator, sides, &args, brokers, config.start_ms),
        (None, None) => bail!("give --out FILE or --brokers HOST:PORT"),
    }
}

/// Where a side file goes by default: beside `out`, with `extension` for its own. Only a
/// regular file (or a new one) has a beside: `/dev/null` sends its sides there too, and any
/// other device or pipe needs them named, rather than a file made next to it (in `/dev`).
fn side_files(out: &Path, args: &GenArgs) -> anyhow::Result<impl Fn(&str) -> PathBuf> {
    let special = std::fs::metadata(out).is_ok_and(|m| !m.is_file() && !m.is_dir());
    let null = special
        && out
            .canonicalize()
            .is_ok_and(|p| p == Path::new("/dev/null"));
    let all_named =
        args.titles_out.is_some() && args.consent_out.is_some() && args.erasures_out.is_some();
    if special && !null && !all_named {
        bail!(
            "--out {} is not a regular file, so titles, consent and erasure records cannot go \
             beside it: name them with --titles-out, --consent-out and --erasures-out \
             (/dev/null discards them)",
            out.display()
        );
    }
    let out = out.to_path_buf();
    Ok(move |extension: &str| match null {
        true => PathBuf::from("/dev/null"),
        false => out.with_extension(extension),
    })
}

struct Files<'a> {
    out: &'a Path,
    titles_out: &'a Path,
    consent_out: &'a Path,
    erasures_out: &'a Path,
}

/// The records beside the events, each merged in by due time.
struct Sides {
    consent: std::iter::Peekable<ConsentStream>,
    erasures: std::iter::Peekable<ErasureStream>,
}

/// The next record of `side` due by `due_ms`.
fn due(
    side: &mut std::iter::Peekable<impl Iterator<Item = Record>>,
    due_ms: u64,
) -> Option<Record> {
    side.next_if(|r| r.due_ms <= due_ms)
}

fn write_files(
    generator: Generator,
    mut sides: Sides,
    events: u64,
    files: Files<'_>,
) -> anyhow::Result<()> {
    let mut titles = create(files.titles_out)?;
    for record in generator.title_records() {
        writeln!(titles, "{}", record.json)?;
    }
    titles.flush()?;
    let mut file = create(files.out)?;
    let mut consent_file = create(files.consent_out)?;
    let mut erasures_file = create(files.erasures_out)?;
    let (mut consent_records, mut erasure_records) = (0u64, 0u64);
    for record in generator.take(events as usize) {
        while let Some(c) = due(&mut sides.consent, record.due_ms) {
            writeln!(consent_file, "{}", c.json)?;
            consent_records += 1;
        }
        while let Some(e) = due(&mut sides.erasures, record.due_ms) {
            writeln!(erasures_file, "{}", e.json)?;
            erasure_records += 1;
        }
        writeln!(file, "{}", record.json)?;
    }
    file.flush()?;
    consent_file.flush()?;
    erasures_file.flush()?;
    eprintln!(
        "rewind: wrote {events} events to {}, titles to {}, {consent_records} consent \
         records to {} and {erasure_records} erasure records to {}",
        files.out.display(),
        files.titles_out.display(),
        files.consent_out.display(),
        files.erasures_out.display()
    );
    Ok(())
}

fn create(path: &Path) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(std::io::BufWriter::new(file))
}

fn produce(
    generator: Generator,
    mut sides: Sides,
    args: &GenArgs,
    brokers: &str,
    start_ms: u64,
) -> anyhow::Result<()> {
    let producer = Producer::connect(brokers)?;
    // A minute before the first event, so every event sees its title's metadata.
    let titles_ts = start_ms.saturating_sub(60_000) as i64;
    for t in generator.title_records() {
        producer.send(
            &args.titles_topic,
            Some(t.key.as_bytes()),
            t.json.as_bytes(),
            Some(titles_ts),
        )?;
    }
    let started = Instant::now();
    for (i, record) in generator.take(args.events as usize).enumerate() {
        if let Some(rate) = args.rate.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        while let Some(topic) = &args.consent_topic
            && let Some(c) = due(&mut sides.consent, record.due_ms)
        {
            let ts = Some(c.ts_ms as i64);
            producer.send(topic, Some(c.key.as_bytes()), c.json.as_bytes(), ts)?;
        }
        while let Some(topic) = &args.erasure_topic
            && let Some(e) = due(&mut sides.erasures, record.due_ms)
        {
            let ts = Some(e.ts_ms as i64);
            producer.send(topic, Some(e.key.as_bytes()), e.json.as_bytes(), ts)?;
        }
        let key = Some(record.key.as_bytes());
        producer.send(
            &args.topic,
            key,
            record.json.as_bytes(),
            Some(record.ts_ms as i64),
        )?;
        if i % 1024 == 0 {
            producer.poll();
        }
    }
    producer.flush(Duration::from_secs(60))?;
    eprintln!(
        "rewind: produced {} events to {} on {brokers}",
        args.events, args.topic
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::Cli;

    fn gen_from(start_ms: &str) -> Result<Cli, clap::Error> {
        let args = ["rewind", "gen", "--events", "1", "--out", "/dev/null"];
        Cli::try_parse_from(args.into_iter().chain(["--start-ms", start_ms]))
    }

    #[test]
    fn a_start_time_outside_the_pipelines_years_is_refused() {
        for start in ["18446744073709551000", "4102444800000", "0", "946684799999"] {
            let err = gen_from(start).unwrap_err().to_string();
            assert!(err.contains("--start-ms"), "{start}: {err}");
        }
        for start in ["946684800000", "1767225600000", "4102444799999"] {
            gen_from(start).unwrap_or_else(|e| panic!("{start}: {e}"));
        }
    }
}
