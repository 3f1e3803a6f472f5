//! `rewind replay`: the Kappa backfill. Recompute every feature from the start of the log,
//! through the same dataflows, into a fresh store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use rewind::engine::{RunConfig, Shared};
use rewind::privacy::{KeySource, Pseudonymizer};
use rewind_connectors::{EmbeddedCluster, Producer};

use super::produce::load_lines;
use super::run::{EngineArgs, Status, drive, print_summary};

/// Recompute everything from the start of a log into a fresh store (after a feature changed
/// or was added). Reads a Kafka cluster, or a JSON-lines file through an in-process cluster.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Kafka bootstrap servers (HOST:PORT) holding the log.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    brokers: Option<String>,
    /// Events as JSON lines (as `rewind gen --out` writes them), instead of a cluster.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Titles as JSON lines, with --file.
    #[arg(long, requires = "file")]
    titles_file: Option<PathBuf>,
    #[arg(long, default_value = "events")]
    topic: String,
    #[arg(long, default_value = "titles")]
    titles_topic: String,
    /// The new store's directory; it must not hold a store yet.
    #[arg(long)]
    store: PathBuf,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let existing = args.store.join(rewind_state::FILE_NAME);
    if existing.exists() {
        bail!(
            "{} already holds a store; replay builds a fresh one: give a new --store",
            args.store.display()
        );
    }
    let door = Pseudonymizer::load(&KeySource {
        key_file: args.engine.key_file.clone(),
        create_in: None,
    })?;
    let shared = Arc::new(Shared::default());
    let stopper = shared.clone();
    ctrlc::set_handler(move || stopper.stop()).context("installing the Ctrl-C handler")?;
    // Kept alive until the replay ends: an in-process log for --file.
    let mut _cluster = None;
    let (brokers, log_id) = match (&args.brokers, &args.file) {
        (Some(brokers), _) => (brokers.clone(), format!("kafka:{}", args.topic)),
        (None, Some(file)) => {
            let cluster = load_files(file, args.titles_file.as_deref(), &args)?;
            let brokers = cluster.bootstrap_servers().to_string();
            _cluster = Some(cluster);
            (brokers, format!("file:{}", file.display()))
        }
        (None, None) => bail!("give --brokers HOST:PORT or --file FILE"),
    };
    let config = RunConfig {
        brokers: brokers.clone(),
        events_topic: args.topic.clone(),
        titles_topic: Some(args.titles_topic.clone()),
        store_dir: args.store.clone(),
        policy: args.engine.policy(),
        workers: args.engine.workers.into(),
        until_caught_up: true,
        idle: Duration::from_secs(2),
        // No freshness constraint: land big batches.
        commit_interval: Duration::from_secs(2),
        door,
        log_id,
    };
    let mut status = Status::progress(&brokers, &[&args.topic, &args.titles_topic]);
    let summary = drive(config, shared, &mut status, None)?;
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    print_summary(&summary);
    Ok(())
}

/// The mock cluster keeps ~5 MiB per partition: spread a file so nothing is trimmed.
const BYTES_PER_PARTITION: u64 = 3 << 20;

fn load_files(
    events: &Path,
    titles: Option<&Path>,
    args: &ReplayArgs,
) -> anyhow::Result<EmbeddedCluster> {
    let size = std::fs::metadata(events)
        .with_context(|| format!("reading {}", events.display()))?
        .len();
    let partitions = (size / BYTES_PER_PARTITION + 1).min(4096) as u32;
    let cluster = EmbeddedCluster::start()?;
    cluster.create_topic(&args.topic, partitions)?;
    cluster.create_topic(&args.titles_topic, 1)?;
    let producer = Producer::connect(cluster.bootstrap_servers())?;
    if let Some(titles) = titles {
        // A titles file has no time of its own: its records apply from the start.
        let start = Some(rewind::decode::MIN_TS_MS as i64);
        load_lines(&producer, &args.titles_topic, titles, start)?;
    }
    load_lines(&producer, &args.topic, events, None)?;
    producer.flush(Duration::from_secs(300))?;
    eprintln!(
        "rewind: loaded {} into an in-process log of {partitions} partitions",
        events.display()
    );
    Ok(cluster)
}
