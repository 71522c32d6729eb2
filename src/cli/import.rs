//! `rollcall import register|heads FILE --data DIR`: offline import with the
//! same parser and the same all-or-nothing rules as the API.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::domain::register::{LineProblem, parse_heads, parse_register};
use crate::engine::clock::{Clock, SystemClock};
use crate::engine::{Command, Engine, Policy, Prepared};
use crate::store::Store;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum What {
    Register,
    Heads,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// `register` (`person_id,name,phone,area,household`) or `heads` (`area,title,name,phone`).
    pub what: What,
    /// The CSV file.
    pub file: PathBuf,
    /// Data directory.
    #[arg(long, env = "ROLLCALL_DATA", default_value = "./rollcall-data")]
    pub data: PathBuf,
}

fn report(problems: &[LineProblem]) -> anyhow::Error {
    for p in problems {
        eprintln!("line {}: {}: {}", p.line, p.code.as_str(), p.message);
    }
    anyhow::anyhow!(
        "the file was rejected ({} problem(s) shown); nothing was imported",
        problems.len()
    )
}

pub fn run(args: &ImportArgs) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let cmd = match args.what {
        What::Register => Command::Register(
            parse_register(&bytes, clock.now().shanghai_date()).map_err(|p| report(&p))?,
        ),
        What::Heads => Command::Heads(parse_heads(&bytes).map_err(|p| report(&p))?),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let prepared = rt.block_on(async {
        let engine = Arc::new(parking_lot::RwLock::new(Engine::new(
            Policy::default(),
            Engine::build_pool(2),
        )));
        let store = Store::open(&args.data, engine, clock, Arc::new(|_| 0))
            .with_context(|| format!("opening the store in {}", args.data.display()))?;
        // The import would wait for the check anyway; this says why it failed.
        store
            .checked()
            .await
            .with_context(|| format!("checking the store in {}", args.data.display()))?;
        let out = store.command(cmd).await.context("importing")?;
        anyhow::Ok(out.prepared)
    })?;
    if let Prepared::Import {
        total,
        inserted,
        updated,
        unchanged,
    } = prepared
    {
        let noun = match args.what {
            What::Register => "residents",
            What::Heads => "heads",
        };
        println!("{noun}: {total} (inserted {inserted}, updated {updated}, unchanged {unchanged})");
    }
    Ok(())
}
