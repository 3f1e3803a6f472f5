//! Subcommands: `run`, `serve`, `bench`, `gen`, `produce`, `get`, `features`, `replay`, `snapshot`, `verify`,
//! `privacy`, `erase`. Each file holds one, with its arguments.

mod bench;
mod erase;
mod features;
mod get;
mod privacy;
mod produce;
mod replay;
mod run;
mod serve;
mod snapshot;
mod verify;
mod workload;

use std::io::Write;

use clap::{Parser, Subcommand};

/// rewind: an embedded, incremental feature store for streaming-video personalization.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(run::RunArgs),
    Serve(serve::ServeArgs),
    Bench(bench::BenchArgs),
    Gen(workload::GenArgs),
    Produce(produce::ProduceArgs),
    Get(get::GetArgs),
    Features(features::FeaturesArgs),
    Replay(replay::ReplayArgs),
    Snapshot(snapshot::SnapshotArgs),
    Verify(verify::VerifyArgs),
    Privacy(privacy::PrivacyArgs),
    Erase(erase::EraseArgs),
}

pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Gen(args) => workload::run(args),
        Command::Produce(args) => produce::run(args),
        Command::Get(args) => get::run(args),
        Command::Features(args) => features::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Snapshot(args) => snapshot::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Privacy(args) => privacy::run(args),
        Command::Erase(args) => erase::run(args),
    }
}

/// Writes a command's output to stdout. A reader that closes the pipe early (`rewind features |
/// head -1`) has what it wanted: that ends the command quietly and successfully, as it does for
/// `ls` or `cat`, instead of the panic `println!` gives.
pub(crate) fn out(text: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        result => Ok(result?),
    }
}

/// `println!` through [`out`].
macro_rules! outln {
    ($($arg:tt)*) => {
        crate::cli::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;
