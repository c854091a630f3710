//! `p2pe`: the command-line tool. Thin: parse, configure, call the engine.

mod cmd;
mod logging;
mod metrics;

use clap::{Parser, Subcommand};

/// p2pe: push one large file or directory to many machines over BitTorrent.
#[derive(Parser, Debug)]
#[command(name = "p2pe", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More diagnostics on stderr: `-v` debug, `-vv` trace (`RUST_LOG`, when
    /// set, overrides; e.g. `RUST_LOG=p2pe=debug`).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Diagnostics on stderr as human text or as one JSON object per line
    /// (for log shippers). stdout is unaffected: results only.
    #[arg(long, value_enum, default_value_t = logging::LogFormat::Text, global = true, value_name = "FORMAT")]
    log_format: logging::LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a .torrent (BEP 3, v1) from a file or directory.
    Create(cmd::create::Args),
    /// Show what a .torrent holds.
    Inspect(cmd::inspect::Args),
    /// Run the seeded swarm simulator.
    Sim(cmd::sim::Args),
    /// Serve a local copy of a torrent to peers until killed.
    Seed(cmd::seed::Args),
    /// Download a torrent from peers (resumes a partial copy).
    Get(cmd::get::Args),
    /// Run one seeder and N leechers on 127.0.0.1 and check every copy.
    Swarm(cmd::swarm::Args),
    /// System benchmarks (swarm on emulated hosts; needs root).
    Bench(cmd::bench::Args),
    /// Run a BitTorrent tracker (HTTP and UDP announce and scrape).
    Tracker(cmd::tracker::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, cli.verbose);
    let result = match cli.command {
        Command::Create(args) => cmd::create::run(args),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Sim(args) => cmd::sim::run(args),
        Command::Seed(args) => cmd::seed::run(args),
        Command::Get(args) => cmd::get::run(args),
        Command::Swarm(args) => cmd::swarm::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Tracker(args) => cmd::tracker::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("p2pe: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
