//! `rewind privacy report`: the auditor's questions, answered from a store.

use super::outln;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use rewind::audit::{self, AuditConfig, RawIdShape};

#[derive(Debug, Args)]
pub struct PrivacyArgs {
    #[command(subcommand)]
    command: PrivacyCommand,
}

#[derive(Debug, Subcommand)]
enum PrivacyCommand {
    Report(ReportArgs),
}

/// Report what a store holds against the privacy rules: the oldest rows against the retention
/// limit, dead letters by reason, a byte scan of every file in the store directory for raw
/// ids, emails and IP addresses, and (with --brokers) how long Kafka keeps the raw events.
///
/// Read-only: it works while `rewind run` writes the store. Findings are given by kind and
/// byte offset, never by content.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(long, default_value = "./rewind-data")]
    store: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// The shape of a raw account id to scan for, PREFIX:DIGITS (repeatable): the prefix, then
    /// at least that many digits, as a word of its own.
    #[arg(long = "raw-id-shape", default_value = "u:7")]
    raw_id_shapes: Vec<RawIdShape>,
    /// A Kafka cluster (HOST:PORT) to ask how long it keeps the topics' raw events.
    #[arg(long)]
    brokers: Option<String>,
    /// Topics to ask --brokers about.
    #[arg(long, default_values = ["events", "titles"], value_delimiter = ',')]
    topics: Vec<String>,
    /// Exit with status 2 when anything calls for action (rows past retention, a finding).
    #[arg(long)]
    check: bool,
}

pub fn run(args: PrivacyArgs) -> anyhow::Result<()> {
    let PrivacyCommand::Report(args) = args.command;
    let report = audit::report(&AuditConfig {
        store_dir: args.store.clone(),
        raw_ids: args.raw_id_shapes,
        brokers: args.brokers.map(|b| (b, args.topics)),
    })
    .with_context(|| format!("reporting on the store in {}", args.store.display()))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        super::out(format_args!("{}", report.text()))?;
    }
    if args.check && !report.clean() {
        std::process::exit(2);
    }
    Ok(())
}
