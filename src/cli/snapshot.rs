//! `rewind snapshot`: a point-in-time-correct training set from a store's history.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use rewind::privacy::{KeySource, Pseudonymizer};
use rewind::snapshot::{self, Request};
use rewind_state::ReadOnlyStore;

/// Cut a training set: every label row gets each feature as of its `ts`, never later.
///
/// LABELS is CSV or Parquet with a `viewer_id` or `title_id` column, a `ts` column (ms since
/// the epoch or RFC 3339; in Parquet also a Timestamp, or a Date as of midnight UTC), and any
/// other columns, which pass through in order. OUT is Parquet or CSV, by extension; it is
/// written whole or not at all, and its column names must be unique.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[arg(long, default_value = "./rewind-data")]
    store: PathBuf,
    #[arg(long)]
    labels: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Comma-separated feature names (default: every feature of the labels' entity).
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    /// The `viewer_id` column holds raw account ids: pseudonymize them with the configured key
    /// (REWIND_PSEUDONYM_KEY or --key-file), inside the privacy boundary.
    #[arg(long)]
    raw_ids: bool,
    #[arg(long)]
    key_file: Option<PathBuf>,
}

pub fn run(args: SnapshotArgs) -> anyhow::Result<()> {
    let door = match args.raw_ids {
        true => Some(Pseudonymizer::load(&KeySource {
            key_file: args.key_file.clone(),
            create_in: None,
        })?),
        false => None,
    };
    let started = Instant::now();
    let store = ReadOnlyStore::open(&args.store)?;
    let labels = snapshot::read_labels(&args.labels)?;
    if let Some(warning) = snapshot::id_warning(&labels, args.raw_ids) {
        eprintln!("rewind: warning: {warning}");
    }
    let request = Request {
        features: args.features.clone(),
        raw_ids: door.as_ref(),
    };
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let batch = snapshot::cut(&store.snapshot()?, &labels, &request, |done, total| {
        if bar {
            eprint!(
                "\r{:>5.1}% of label rows cut",
                100.0 * done as f64 / total.max(1) as f64
            );
        }
    })?;
    if bar {
        eprintln!();
    }
    snapshot::write(&batch, &args.out)?;
    eprintln!(
        "rewind: wrote {} rows x {} columns to {} in {:.2} s",
        batch.num_rows(),
        batch.num_columns(),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
