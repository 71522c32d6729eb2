//! `rollcall import register|heads FILE --data DIR`: offline import with the
//! same parser and the same all-or-nothing rules as the API; a file named
//! `*.xlsx` is read as a spreadsheet (its first sheet), any other as CSV.
//! On a terminal a progress bar follows its steps (hidden otherwise); its
//! figures (rows, sizes, times) go to stderr, the answer to stdout.

use std::path::PathBuf;
use std::sync::Arc;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

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

/// The import's steps on a terminal (hidden otherwise): read, check, open
/// the store (its replay), write.
fn progress_bar() -> ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(4), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:24}] {pos}/{len} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    } else {
        ProgressBar::hidden()
    }
}

pub fn run(args: &ImportArgs) -> anyhow::Result<()> {
    let bar = progress_bar();
    let started = Instant::now();
    bar.set_message(format!("reading {}", args.file.display()));
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let read_s = started.elapsed().as_secs_f64();
    bar.inc(1);
    bar.set_message("checking every line");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let kind = file_kind(&args.file);
    let t = Instant::now();
    let parsed = match args.what {
        What::Register => parse_register_as(kind, &bytes, clock.now().shanghai_date())
            .map(|rows| (rows.len(), Command::Register(rows))),
        What::Heads => parse_heads_as(kind, &bytes).map(|rows| (rows.len(), Command::Heads(rows))),
    };
    let (lines, cmd) = parsed.map_err(|p| {
        bar.finish_and_clear();
        report(&p)
    })?;
    let check_s = t.elapsed().as_secs_f64();
    bar.inc(1);
    bar.set_message(format!("opening the store in {}", args.data.display()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut open_s = 0.0;
    let t = Instant::now();
    let written = rt.block_on(async {
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
        open_s = t.elapsed().as_secs_f64();
        bar.inc(1);
        bar.set_message(format!("writing {lines} rows"));
        let t = Instant::now();
        let out = store.command(cmd).await.context("importing")?;
        anyhow::Ok((out.prepared, t.elapsed().as_secs_f64()))
    });
    bar.finish_and_clear();
    let (prepared, write_s) = written?;
    eprintln!(
        "import: {lines} rows, {:.1} MB read in {read_s:.2} s, checked in {check_s:.2} s; \
         store opened in {open_s:.2} s, written (one transaction, fsynced) in {write_s:.2} s",
        bytes.len() as f64 / 1e6
    );
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
