//! `rewind replay`: the Kappa backfill. Recompute every feature from the start of the log,
//! through the same dataflows, into a fresh store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use rewind::engine::{ErasureConfig, LogSource, RunConfig, Shared};
use rewind::privacy::{KeySource, Pseudonymizer};
use rewind_connectors::file;

use super::run::{EngineArgs, Status, drive, print_summary};

/// Recompute everything from the start of a log into a fresh store (after a feature changed
/// or was added). Reads a Kafka cluster, or a JSON-lines file straight from disk.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Kafka bootstrap servers (HOST:PORT) holding the log.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    brokers: Option<String>,
    /// Events as JSON lines (as `rewind gen --out` writes them), instead of a cluster: one
    /// ordered log, every line of it read; a line that is not an event is a dead letter
    /// (its offset is its line number minus one).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Titles as JSON lines, with --file; they apply from the start of time.
    #[arg(long, requires = "file")]
    titles_file: Option<PathBuf>,
    /// Consent records as JSON lines, with --file and --consent-purposes: the file log's
    /// consent topic, read like the events.
    #[arg(long, requires = "file")]
    consent: Option<PathBuf>,
    /// Erasure records ({user_id, ts}) as JSON lines, with --file: the file log's erasure
    /// topic. Read before the events, as a replay from a cluster reads its erasure topic: no
    /// event an erasure reaches ever enters a viewer feature.
    #[arg(long, requires = "file")]
    erasures: Option<PathBuf>,
    #[arg(long, default_value = "events")]
    topic: String,
    #[arg(long, default_value = "titles")]
    titles_topic: String,
    /// The new store's directory; it must not hold a store yet.
    #[arg(long)]
    store: PathBuf,
    /// Declare the log finished and commit every tick, up to one past the last event. Without
    /// it, the store ends at the partitions' watermarks (the last `lateness` of events stays
    /// open), so `rewind run` can continue it over a longer log exactly as one run would.
    #[arg(long)]
    seal: bool,
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
    let signalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let signal = signalled.clone();
    ctrlc::set_handler(move || {
        signal.store(true, std::sync::atomic::Ordering::Relaxed);
        stopper.stop();
    })
    .context("installing the Ctrl-C handler")?;
    let mut topics = vec![args.topic.as_str(), args.titles_topic.as_str()];
    if args
        .engine
        .consent_purposes
        .as_deref()
        .is_some_and(|p| p != "none")
    {
        topics.push(&args.engine.consent_topic);
    }
    topics.push(&args.engine.erasure_topic);
    let (source, log_id, mut status) = match (&args.brokers, &args.file) {
        (Some(brokers), _) => (
            LogSource::Kafka {
                brokers: brokers.clone(),
            },
            format!("kafka:{}", args.topic),
            Status::progress(brokers, &topics),
        ),
        (None, Some(events)) => {
            // The progress bar's total, for a terminal only (the bar is drawn nowhere else):
            // counting is a whole pass over the files before any work, and the engine makes
            // its own to find where the log ends.
            let mut total = 0;
            let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let files = std::iter::once(events).chain(&args.titles_file);
            for path in files.chain(&args.consent).chain(&args.erasures) {
                match terminal {
                    true => total += file::count_lines(path)?,
                    // Before the store is made: a file that cannot be read leaves nothing.
                    false => drop(
                        std::fs::File::open(path)
                            .with_context(|| format!("reading {}", path.display()))?,
                    ),
                }
            }
            let source = LogSource::Files {
                events: events.clone(),
                titles: args.titles_file.clone(),
                consent: args.consent.clone(),
                erasures: args.erasures.clone(),
            };
            let log_id = format!("file:{}", events.display());
            (source, log_id, Status::lines(total))
        }
        (None, None) => bail!("give --brokers HOST:PORT or --file FILE"),
    };
    let consent = args.engine.consent("none")?;
    if args.consent.is_some() && consent.is_none() {
        bail!("--consent gates nothing without --consent-purposes: name the purposes it gates");
    }
    let config = RunConfig {
        consent,
        // Read before time moves, every erasure lands at the start.
        erasures: ErasureConfig {
            topic: args.engine.erasure_topic.clone(),
        },
        source,
        events_topic: args.topic.clone(),
        titles_topic: Some(args.titles_topic.clone()),
        store_dir: args.store.clone(),
        policy: args.engine.policy(),
        workers: args.engine.workers.into(),
        until_caught_up: true,
        seal: args.seal,
        titles_from_start: args.engine.titles_from_start,
        idle: Duration::from_secs(2),
        max_outage: args.engine.max_outage(),
        // Short, though nothing waits for freshness here: the writer folds whatever queued
        // while it committed into the next commit, so commits grow by themselves when it falls
        // behind. A long interval only left it idle while the worker ran ahead (then made it
        // land the last interval alone, after the worker was done), and held that much more
        // output in memory: 2 s cost a quarter of the replay's wall time.
        commit_interval: Duration::from_millis(100),
        door,
        log_id,
        retention_ms: args.engine.retention,
    };
    // Readers (`rewind serve`) refuse the store until the replay has finished: what it holds
    // before then is a prefix of the log, consistent but not the whole.
    let store_dir = args.store.clone();
    rewind_state::Store::open(&store_dir)?.put_meta(
        rewind_state::META_REPLAYING,
        &rewind::embedded::now_ms().to_le_bytes(),
    )?;
    let summary = match drive(config, shared, &mut status, None) {
        Ok(summary) => summary,
        Err(e) => {
            discard_if_empty(&store_dir);
            return Err(e);
        }
    };
    // Stopped by a signal, the store is a prefix of the log and stays marked so.
    if !signalled.load(std::sync::atomic::Ordering::Relaxed) {
        rewind_state::Store::open(&store_dir)?.remove_meta(rewind_state::META_REPLAYING)?;
    }
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    print_summary(&summary);
    Ok(())
}

/// A replay refused before it committed anything (bad settings, an unreadable log) leaves no
/// store behind, so that the same command can simply be run again once corrected. One that
/// committed keeps its store, marked as an unfinished replay.
fn discard_if_empty(dir: &std::path::Path) {
    let empty = rewind_state::ReadOnlyStore::open(dir)
        .and_then(|store| store.snapshot()?.frontier_ms())
        .is_ok_and(|frontier| frontier.is_none());
    if empty {
        let _ = std::fs::remove_file(dir.join(rewind_state::FILE_NAME));
        let _ = std::fs::remove_file(dir.join(rewind_state::COMMITS_FILE));
    }
}
