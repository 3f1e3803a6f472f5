//! `rewind snapshot`: a point-in-time-correct training set from a store's history.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use rewind::privacy::{KeySource, Pseudonymizer};
use rewind::served::file::LogReader;
use rewind::served::join::{ServedRequest, cut_served};
use rewind::served::{self};
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
    /// Join the labels to the values that were served (the store's served log, written by
    /// `--log-served`) instead of history: by a `request_id` column, or else by `viewer_id` or
    /// `title_id` and `ts` (the latest response served for the entity at or before `ts`, ms of
    /// wall time). Adds `served_request_id` and `served_at_ms`; unmatched rows get nulls.
    #[arg(long)]
    served: bool,
    /// Cut for this purpose (personalization, analytics, ads, or one a feature declares): only
    /// features declared for it (a named feature that is not is refused), and where the store
    /// gates the purpose by consent, each viewer row whose viewer did not consent at the row's
    /// time gets every feature's default; a `consent_<purpose>` column says which rows.
    #[arg(long, conflicts_with = "served")]
    purpose: Option<String>,
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
    if args.served {
        return served(&args, door.as_ref(), started);
    }
    let store = ReadOnlyStore::open(&args.store)?;
    let labels = snapshot::read_labels(&args.labels)?;
    if let Some(warning) = snapshot::id_warning(&labels, args.raw_ids) {
        eprintln!("rewind: warning: {warning}");
    }
    let request = Request {
        features: args.features.clone(),
        raw_ids: door.as_ref(),
        purpose: args.purpose.as_deref(),
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

/// `--served`: the labels joined to the served log.
fn served(
    args: &SnapshotArgs,
    door: Option<&Pseudonymizer>,
    started: Instant,
) -> anyhow::Result<()> {
    // The log obeys the store's retention; a log without its store (copied away, or the store
    // not yet written) obeys the longest.
    let retention_ms = match ReadOnlyStore::open(&args.store) {
        Ok(store) => served::store_retention_ms(&store.snapshot()?)?,
        Err(rewind_state::StoreError::Missing { .. }) => served::DEFAULT_RETENTION_MS,
        Err(e) => return Err(e.into()),
    };
    let log = LogReader::open(&args.store)?;
    let labels = snapshot::read_labels(&args.labels)?;
    if let Some(warning) = snapshot::id_warning(&labels, args.raw_ids) {
        eprintln!("rewind: warning: {warning}");
    }
    let now_ms = served::now_ms();
    let request = ServedRequest {
        features: args.features.clone(),
        raw_ids: door,
        now_ms,
        not_before_ms: now_ms.saturating_sub(retention_ms),
    };
    let (batch, report) = cut_served(&log, &labels, &request)?;
    if report.unmatched > 0 {
        let rule = match report.by_request_id {
            true => "request id",
            false => "entity served at or before ts",
        };
        let unknown = match report.unknown_request_ids.is_empty() {
            true => String::new(),
            false => format!(
                " (unknown request ids include {})",
                report.unknown_request_ids.join(", ")
            ),
        };
        eprintln!(
            "rewind: warning: {} of {} label rows matched no served response by {rule}; their \
             served columns are null{unknown}",
            report.unmatched,
            report.unmatched + report.matched
        );
    }
    if report.dropped > 0 {
        eprintln!(
            "rewind: warning: the servers could not log {} responses (their log queue was full); \
             labels of those responses matched none",
            report.dropped
        );
    }
    snapshot::write(&batch, &args.out)?;
    eprintln!(
        "rewind: wrote {} rows x {} columns ({} matched a served response) to {} in {:.2} s",
        batch.num_rows(),
        batch.num_columns(),
        report.matched,
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
