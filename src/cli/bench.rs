//! `rewind bench`: load benchmarks of the pipeline. See `BENCHMARKS.md` for figures.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rewind::bench::serve::ServeConfig;
use rewind::bench::{self, IngestConfig, Load, Spike};
use rewind::privacy::{KeySource, Pseudonymizer};

use rewind::TimePolicy;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    Ingest(IngestArgs),
    Serve(ServeArgs),
}

/// Drive the seeded workload into Kafka and measure throughput, freshness, lag and memory.
///
/// Freshness is from an event's origin (when it was due, in open loop) to when its effect is
/// readable in the online store, so it includes the time policy's wait: up to one tick plus
/// the lateness. The benchmark's defaults (100 ms ticks, 100 ms lateness) keep that small.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Kafka bootstrap servers (HOST:PORT). Without it, the embedded cluster is used.
    #[arg(long)]
    brokers: Option<String>,
    /// Events topic on --brokers (created if missing; default: a fresh one per run).
    #[arg(long)]
    topic: Option<String>,
    /// Concurrent viewers the generator simulates.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=50_000_000))]
    viewers: u32,
    /// Titles in the generated catalog.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    titles: u32,
    /// Open loop: events per second, whatever the pipeline does.
    #[arg(long, conflicts_with = "max", value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    rate: Option<u64>,
    /// As fast as the pipeline keeps up, for throughput.
    #[arg(long)]
    max: bool,
    /// How long to produce: 60, 60s, 2m.
    #[arg(long, default_value = "30s", value_parser = bench::parse_duration)]
    duration: Duration,
    /// The start not measured, while state and caches fill.
    #[arg(long, default_value = "5s", value_parser = bench::parse_duration)]
    warmup: Duration,
    /// A premiere: FACTORx@START[+LENGTH], e.g. 3x@30s (10 s long unless given).
    #[arg(long)]
    spike: Option<Spike>,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Partitions of the events topic (a topic that exists keeps its own).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    partitions: u32,
    /// Timely worker threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// Logical time step in ms.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    tick_ms: u64,
    /// How late an event may arrive and still be on time, in ms.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    lateness_ms: u64,
    /// How often the writer lands completed ticks, in ms.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    commit_ms: u64,
    /// The store's retention (as `rewind run --retention`): a short one makes the purge run
    /// during the benchmark.
    #[arg(long, default_value = "365d", value_parser = super::run::parse_retention)]
    retention: u64,
    /// Store directory; must not hold a store. Default: a temporary one, removed afterwards.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Also write the figures, with per-second samples, as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Ingest(args) => ingest(args),
        BenchCommand::Serve(args) => serve(args),
    }
}

fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    if args.warmup >= args.duration {
        bail!(
            "--warmup ({:?}) must be shorter than --duration ({:?})",
            args.warmup,
            args.duration
        );
    }
    let load = match (args.rate, args.max) {
        (Some(rate), _) => Load::Rate(rate),
        (None, true) => Load::Max,
        (None, false) => bail!("say how to load: --rate EVENTS_PER_S (open loop) or --max"),
    };
    let (store_dir, temporary) = match &args.store {
        Some(dir) => {
            if dir.join(rewind_state::FILE_NAME).exists() {
                bail!(
                    "{} already holds a store; the benchmark needs a fresh one",
                    dir.display()
                );
            }
            (dir.clone(), false)
        }
        None => {
            let dir = std::env::temp_dir().join(format!("rewind-bench-{}", std::process::id()));
            (dir, true)
        }
    };
    let door = Pseudonymizer::load(&KeySource {
        key_file: None,
        create_in: Some(store_dir.clone()),
    })?;
    let stamp = rewind::embedded::now_ms();
    let events_topic = args
        .topic
        .clone()
        .unwrap_or(format!("rewind-bench-{stamp}-events"));
    let config = IngestConfig {
        brokers: args.brokers.clone(),
        titles_topic: format!("{events_topic}-titles"),
        events_topic,
        partitions: args.partitions,
        viewers: args.viewers,
        titles: args.titles,
        seed: args.seed,
        load,
        spike: args.spike,
        duration: args.duration,
        warmup: args.warmup,
        workers: args.workers.into(),
        policy: TimePolicy {
            tick_ms: args.tick_ms,
            lateness_ms: args.lateness_ms,
        },
        commit_interval: Duration::from_millis(args.commit_ms),
        store_dir: store_dir.clone(),
        retention_ms: args.retention,
    };
    eprintln!(
        "rewind bench: {} for {:?} ({:?} warm-up), {} viewers, store {}",
        match load {
            Load::Rate(r) => format!("{r} events/s open loop"),
            Load::Max => "max load".into(),
        },
        args.duration,
        args.warmup,
        args.viewers,
        store_dir.display()
    );
    let result = bench::ingest(&config, door);
    if temporary {
        let _ = std::fs::remove_dir_all(&store_dir);
    }
    let report = result?;
    super::out(format_args!("{}", report.table()))?;
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Measure serving latency while `rewind run` ingests into the same store.
///
/// Starts `rewind run` (embedded, paced at --rate) and `rewind serve` on one store, then
/// measures Feast `get-online-features` requests over HTTP at each --connections, and the same
/// reads in-process, for one viewer and for batches. See BENCHMARKS.md for figures.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Events per second `rewind run` ingests during the measurement.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    rate: u64,
    /// Concurrent viewers the run's generator simulates.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=50_000_000))]
    viewers: u32,
    /// How long the run ingests before the first measurement.
    #[arg(long, default_value = "15s", value_parser = bench::parse_duration)]
    warmup: Duration,
    /// How long each scenario runs.
    #[arg(long, default_value = "10s", value_parser = bench::parse_duration)]
    duration: Duration,
    /// Keep-alive connections, comma-separated: one scenario each.
    #[arg(long, default_value = "1,8,64", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..=1024))]
    connections: Vec<u16>,
    /// Entities per request in the batch scenarios.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    batch: u16,
    /// Directory for the store and the two processes' logs; must not hold a store. Default: a
    /// temporary one, removed afterwards.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write the figures as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (dir, temporary) = match &args.dir {
        Some(dir) => {
            if dir.join("store").join(rewind_state::FILE_NAME).exists() {
                bail!(
                    "{} already holds a store; the benchmark needs a fresh one",
                    dir.display()
                );
            }
            (dir.clone(), false)
        }
        None => (
            std::env::temp_dir().join(format!("rewind-bench-serve-{}", std::process::id())),
            true,
        ),
    };
    let config = ServeConfig {
        exe: std::env::current_exe().context("finding the rewind binary")?,
        store_dir: dir.clone(),
        rate: args.rate,
        viewers: args.viewers,
        warmup: args.warmup,
        duration: args.duration,
        connections: args.connections.iter().map(|&c| c.into()).collect(),
        batch: args.batch.into(),
    };
    eprintln!(
        "rewind bench serve: `rewind run` at {} events/s, {:?} warm-up, {:?} per scenario, in {}",
        args.rate,
        args.warmup,
        args.duration,
        dir.display()
    );
    let result = bench::serve::serve(&config);
    if temporary && result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let report = result?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
