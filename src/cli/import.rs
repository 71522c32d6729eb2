//! `rollcall import register|heads FILE --data DIR`: offline import with the
//! same parser and the same all-or-nothing rules as the API; a file named
//! `*.xlsx` is read as a spreadsheet (its first sheet), any other as CSV.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::domain::register::{FileKind, LineProblem, parse_heads_as, parse_register_as};
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
    /// The CSV file, or an XLSX workbook (`*.xlsx`).
    pub file: PathBuf,
    /// Data directory.
    #[arg(long, env = "ROLLCALL_DATA", default_value = "./rollcall-data")]
    pub data: PathBuf,
}

fn report(problems: &[LineProblem]) -> anyhow::Error {
    for p in problems {
        match &p.sheet {
            Some(sheet) => eprintln!(
                "sheet {sheet:?} row {}: {}: {}",
                p.line,
                p.code.as_str(),
                p.message
            ),
            None => eprintln!("line {}: {}: {}", p.line, p.code.as_str(), p.message),
        }
    }
    anyhow::anyhow!(
        "the file was rejected ({} problem(s) shown); nothing was imported",
        problems.len()
    )
}

/// A spreadsheet by its name (`.xlsx`, any case), else CSV.
fn file_kind(path: &std::path::Path) -> FileKind {
    let xlsx = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("xlsx"));
    if xlsx { FileKind::Xlsx } else { FileKind::Csv }
}

pub fn run(args: &ImportArgs) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let kind = file_kind(&args.file);
    let cmd = match args.what {
        What::Register => Command::Register(
            parse_register_as(kind, &bytes, clock.now().shanghai_date()).map_err(|p| report(&p))?,
        ),
        What::Heads => Command::Heads(parse_heads_as(kind, &bytes).map_err(|p| report(&p))?),
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
