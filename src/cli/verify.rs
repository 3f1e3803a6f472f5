//! `rewind verify`: online values against history, for every entity and feature.

use super::outln;
use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use rewind::{utc, verify};
use rewind_state::ReadOnlyStore;

/// Check that every online value equals the history as of the store's frontier (what
/// training snapshots read), and report each difference. Every stored value's checksum is
/// checked on the way; a store left unclean by a writer that died is repaired first.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[arg(long, default_value = "./rewind-data")]
    store: PathBuf,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let store = ReadOnlyStore::open(&args.store)?;
    let report = verify::verify(&store.snapshot()?)?;
    let Some(as_of) = report.as_of_ms else {
        outln!(
            "{}: no output committed yet; nothing to verify",
            args.store.display()
        )?;
        return Ok(());
    };
    for difference in report.differences.iter().take(100) {
        outln!("{difference}")?;
    }
    let found = report.differences.len();
    if found > 0 {
        bail!(
            "{found} difference(s) between online values and history as of {}",
            utc::format_ms(as_of)
        );
    }
    outln!(
        "ok: {} online values equal history ({} rows) as of {}; every stored value's checksum \
         holds",
        report.online_rows,
        report.history_rows,
        utc::format_ms(as_of)
    )?;
    Ok(())
}
