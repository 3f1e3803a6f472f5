//! Subcommands: `run`, `serve`, `bench`, `gen`, `produce`, `get`, `features`, `replay`, `snapshot`, `verify`. Each file holds one, with its arguments.

mod bench;
mod features;
mod get;
mod produce;
mod replay;
mod run;
mod serve;
mod snapshot;
mod verify;
mod workload;

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
    }
}
