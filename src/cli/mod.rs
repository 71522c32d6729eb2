//! The command line: one file per subcommand.
//!
//! - `serve.rs`: `rollcall serve`, the HTTP server on a data directory.
//! - `demo/`: `rollcall demo`, the main job end to end on the fixture city,
//!   one file per part of its story.
//! - `generate.rs`: `rollcall gen`, a synthetic city written to CSV files.
//! - `import.rs`: `rollcall import`, a register or heads file loaded offline.
//! - `load.rs`: `rollcall load`, scanners' ingest or gates' lookups against a server.
//! - `sim.rs`: the simulated round day the demo and the benchmarks drive.

pub mod campaign;
pub mod demo;
pub mod generate;
pub mod import;
pub mod load;
pub mod serve;
pub mod sim;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "rollcall",
    version,
    about = "Mass-testing rounds: records in, missing lists and gate colours out"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the HTTP API.
    Serve(crate::settings::ServeArgs),
    /// Import a register or heads CSV file offline (same rules as the API).
    Import(import::ImportArgs),
    /// Write a synthetic city (register, heads, sites).
    Gen(generate::GenArgs),
    /// The main job end to end: the fixture city, a simulated round day, the close.
    Demo(demo::DemoArgs),
    /// Load a running server: scanners' ingest or gates' lookups.
    Load(load::LoadArgs),
    /// Simulations on the real engine and store.
    #[command(subcommand)]
    Sim(SimCmd),
}

#[derive(Subcommand, Debug)]
enum SimCmd {
    /// Daily rounds for days on a simulated clock: memory, disk and restart per day.
    Campaign(campaign::CampaignArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Cmd::Serve(args) => serve::run(&args),
        Cmd::Import(args) => import::run(&args),
        Cmd::Gen(args) => generate::run(&args),
        Cmd::Demo(args) => demo::run(&args),
        Cmd::Load(args) => load::run(&args),
        Cmd::Sim(SimCmd::Campaign(args)) => campaign::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
