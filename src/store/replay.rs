//! Replay: rebuilding the engine from the log at start-up.
//!
//! Each event table is read in one ordered scan (`ORDER BY id`, the rowid, so
//! no sort and no index); consecutive rows with the same `seq` form one event,
//! and the tables are merged by `seq` back into the exact order the writer
//! logged them in. Rows are trusted only through the domain's parsers: a row
//! they refuse, or a `seq` out of order, makes the store refuse to start
//! (`Corrupt`) rather than guess.
//!
//! Consecutive register imports are applied as one run: each import's rows
//! are upserted as soon as they are decoded (while the decoder reads the
//! next), and tree order is restored once at the end of the run. Two imports
//! back to back leave the same state as their concatenation, so the (parallel)
//! re-sort of the register runs once instead of once per import file.

use std::time::{Duration, Instant};

use std::sync::mpsc::{Receiver, SyncSender};

use rusqlite::{Connection, Row, Rows};

use super::{StoreError, log};
use crate::domain::register::HeadRow;
use crate::domain::{AreaPath, ExemptionReason, PersonId, TestResult, Timestamp, TubeId};
use crate::engine::register::PackedRows;
use crate::engine::{Engine, Event, ExemptionSpec, PackedRecords, ResultItem, RoundSpec};

/// The tables that hold engine events (each with `id` and `seq`).
pub const EVENT_TABLES: [&str; 11] = [
    "register_rows",
    "heads",
    "resident_deletes",
    "records",
    "results",
    "rounds",
    "round_closes",
    "exemptions",
    "exemption_deletes",
    "clears",
    "record_batches",
];

/// What a replay loaded and how long it took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Events applied (consecutive register imports counted once each).
    pub events: u64,
    pub register_rows: u64,
    pub head_rows: u64,
    pub records: u64,
    pub results: u64,
    /// Rounds, closes, exemptions, their deletions, clears, resident deletions.
    pub other_events: u64,
    /// The highest `seq` in the log (0 when empty).
    pub last_seq: u64,
    /// The `seq` the snapshot loaded holds (0 without one): the replay read
    /// only the log after it.
    pub snapshot_seq: u64,
    /// Loading that snapshot.
    pub snapshot_load: Duration,
    /// Reading, decoding and applying the log.
    pub replay: Duration,
    /// The part of `replay` spent inside `Engine::apply`.
    pub apply: Duration,
    /// `PRAGMA quick_check` when it ran before the replay (ahead of a
    /// migration); otherwise zero, and `Store::checked` tells how long it
    /// took after the replay.
    pub quick_check: Duration,
    /// The whole of `Store::open`.
    pub open: Duration,
}

/// Shared decoding state: one parse per run of rows in the same area.
#[derive(Default)]
struct Ctx {
    last_area: Option<AreaPath>,
}

impl Ctx {
    fn area(&mut self, s: &str) -> Result<AreaPath, String> {
        // Imports usually list a household's people together, so runs of
        // rows share an area. Otherwise parsing (a scan of a hot string)
        // beats a lookup in a map of every area (a cache miss or two).
        if let Some(a) = &self.last_area
            && a.as_str() == s
        {
            return Ok(a.clone());
        }
        let a = AreaPath::parse(s).map_err(|e| format!("area: {e}"))?;
        self.last_area = Some(a.clone());
        Ok(a)
    }
}

type Decoded<H, I> = (u64, H, I);
type DecodeFn<H, I> = fn(&Row<'_>, &mut Ctx) -> Result<Decoded<H, I>, String>;
type BuildFn<H, I> = fn(H, Vec<I>) -> Result<Event, String>;

/// One table's stream of events.
trait Source {
    /// The `seq` of the next event, `None` at the end.
    fn peek(&mut self, ctx: &mut Ctx) -> Result<Option<u64>, StoreError>;
    /// The next event (after `peek` returned `Some`) and its row count.
    fn take(&mut self, ctx: &mut Ctx) -> Result<(Item, u64), StoreError>;
    /// The rest of a register import `take` handed out only in part, one
    /// part per call, then `None`. Called until `None` before the next `peek`.
    fn more(&mut self) -> Result<Option<PackedRows>, StoreError> {
        Ok(None)
    }
}

/// What a source yields.
enum Item {
    Event(Event),
    /// One register import, or a part of one, packed.
    Register(PackedRows),
    /// One batch of records (its arrival time), packed.
    Records(Timestamp, PackedRecords),
}

/// Rows per part of a register import. The engine upserts one part while
/// the decoder reads the next, so a city's one big import is not decoded
/// whole before the engine starts on it (the two used to run one after the
/// other, seconds each).
/// (A few rows under test, so small imports cross part edges.)
const REGISTER_PART: usize = if cfg!(test) { 7 } else { 1 << 16 };

/// The register import table: rows go straight into [`PackedRows`] (no
/// strings per row), each import handed out in parts of [`REGISTER_PART`].
struct RegisterTable<'s> {
    rows: Rows<'s>,
    /// The `seq` of the import whose first row `buf` holds, not yet taken.
    head: Option<u64>,
    buf: PackedRows,
    /// The import being handed out in parts: from `take` to its last part.
    cur: Option<u64>,
    done: bool,
    /// Buffers the engine is done with, refilled instead of new ones (no
    /// fresh pages to fault in and zero for every part).
    spares: Receiver<PackedRows>,
}

impl<'s> RegisterTable<'s> {
    fn new(rows: Rows<'s>, spares: Receiver<PackedRows>) -> Self {
        RegisterTable {
            rows,
            head: None,
            buf: PackedRows::default(),
            cur: None,
            done: false,
            spares,
        }
    }

    fn fresh(&self) -> PackedRows {
        recycled(&self.spares, PackedRows::clear)
    }

    /// Reads rows of import `seq` into `into` until it holds
    /// [`REGISTER_PART`] rows or the import ends (then `cur` is cleared, and
    /// a row of the next import, if any, starts `buf`).
    fn read_part(&mut self, seq: u64, into: &mut PackedRows) -> Result<(), StoreError> {
        while into.len() < REGISTER_PART {
            let Some(row) = self.rows.next().map_err(StoreError::from)? else {
                self.done = true;
                self.cur = None;
                return Ok(());
            };
            let s = register_seq(row)?;
            if s == seq {
                push_register(row, into)?;
            } else {
                push_register(row, &mut self.buf)?;
                self.head = Some(s);
                self.cur = None;
                return Ok(());
            }
        }
        Ok(())
    }
}

/// A buffer the engine handed back, emptied, or a new one.
fn recycled<T: Default>(spares: &Receiver<T>, clear: fn(&mut T)) -> T {
    match spares.try_recv() {
        Ok(mut b) => {
            clear(&mut b);
            b
        }
        Err(_) => T::default(),
    }
}

fn register_err(row: &Row<'_>, e: &str) -> StoreError {
    let id: i64 = row.get(0).unwrap_or(-1);
    StoreError::Corrupt(format!("register_rows row with seq {id}: {e}"))
}

fn register_seq(row: &Row<'_>) -> Result<u64, StoreError> {
    seq(row).map_err(|e| register_err(row, &e))
}

fn push_register(row: &Row<'_>, into: &mut PackedRows) -> Result<(), StoreError> {
    let mut push = || -> Result<(), String> {
        time(row, 6)?;
        into.push(
            person(row, 1)?,
            text(row, 4)?,
            text(row, 5)?,
            text(row, 2)?,
            text(row, 3)?,
        )
        .map_err(|e| format!("area: {e}"))
    };
    push().map_err(|e| register_err(row, &e))
}

impl Source for RegisterTable<'_> {
    fn peek(&mut self, _: &mut Ctx) -> Result<Option<u64>, StoreError> {
        debug_assert!(
            self.cur.is_none(),
            "an import's parts are drained by `more`"
        );
        if self.head.is_none() && !self.done {
            match self.rows.next().map_err(StoreError::from)? {
                None => self.done = true,
                Some(row) => {
                    let s = register_seq(row)?;
                    push_register(row, &mut self.buf)?;
                    self.head = Some(s);
                }
            }
        }
        Ok(self.head)
    }

    fn take(&mut self, _: &mut Ctx) -> Result<(Item, u64), StoreError> {
        let seq = self.head.take().expect("take follows a successful peek");
        self.cur = Some(seq);
        let fresh = self.fresh();
        let mut part = std::mem::replace(&mut self.buf, fresh);
        self.read_part(seq, &mut part)?;
        let n = part.len() as u64;
        Ok((Item::Register(part), n))
    }

    fn more(&mut self) -> Result<Option<PackedRows>, StoreError> {
        let Some(seq) = self.cur else {
            return Ok(None);
        };
        let mut part = self.fresh();
        self.read_part(seq, &mut part)?;
        Ok((!part.is_empty()).then_some(part))
    }
}

/// The records table of schema versions 1 and 2 (a row per record): each
/// logged batch goes straight into [`PackedRecords`] (no strings per
/// record), one batch per `seq`.
struct RecordsTable<'s> {
    rows: Rows<'s>,
    /// The `seq` and arrival of the batch whose first record `buf` holds.
    head: Option<(u64, Timestamp)>,
    buf: PackedRecords,
    done: bool,
    /// Buffers the engine is done with.
    spares: &'s Receiver<PackedRecords>,
}

impl<'s> RecordsTable<'s> {
    fn new(rows: Rows<'s>, spares: &'s Receiver<PackedRecords>) -> Self {
        RecordsTable {
            rows,
            head: None,
            buf: PackedRecords::default(),
            done: false,
            spares,
        }
    }
}

fn records_err(row: &Row<'_>, e: &str) -> StoreError {
    let id: i64 = row.get(0).unwrap_or(-1);
    StoreError::Corrupt(format!("records row with seq {id}: {e}"))
}

fn record_seq(row: &Row<'_>) -> Result<u64, StoreError> {
    seq(row).map_err(|e| records_err(row, &e))
}

/// Pushes the record of `row` into `into`; returns its `seq` and arrival.
fn push_record(row: &Row<'_>, into: &mut PackedRecords) -> Result<(u64, Timestamp), StoreError> {
    let mut push = || -> Result<(u64, Timestamp), String> {
        into.push(person(row, 1)?, text(row, 2)?, text(row, 3)?, time(row, 4)?)
            .map_err(|e| format!("tube_id: {e}"))?;
        Ok((seq(row)?, time(row, 5)?))
    };
    push().map_err(|e| records_err(row, &e))
}

impl Source for RecordsTable<'_> {
    fn peek(&mut self, _: &mut Ctx) -> Result<Option<u64>, StoreError> {
        if self.head.is_none() && !self.done {
            match self.rows.next().map_err(StoreError::from)? {
                None => self.done = true,
                Some(row) => self.head = Some(push_record(row, &mut self.buf)?),
            }
        }
        Ok(self.head.map(|h| h.0))
    }

    fn take(&mut self, _: &mut Ctx) -> Result<(Item, u64), StoreError> {
        let (seq, arrived_at) = self.head.take().expect("take follows a successful peek");
        let mut next = None;
        while let Some(row) = self.rows.next().map_err(StoreError::from)? {
            if record_seq(row)? == seq {
                push_record(row, &mut self.buf)?;
            } else {
                // The first record of the next batch starts a new buffer.
                let mut buf = recycled(self.spares, PackedRecords::clear);
                self.head = Some(push_record(row, &mut buf)?);
                next = Some(buf);
                break;
            }
        }
        if self.head.is_none() {
            self.done = true;
        }
        let batch = std::mem::replace(&mut self.buf, next.unwrap_or_default());
        let n = batch.len() as u64;
        Ok((Item::Records(arrived_at, batch), n))
    }
}

/// The batches table (schema version 3 on): a row per logged batch, its
/// records packed in `body` ([`log::pack_records`]).
struct BatchesTable<'s> {
    rows: Rows<'s>,
    /// The next batch: `seq`, arrival, records, and how many.
    head: Option<(u64, Timestamp, PackedRecords, u64)>,
    done: bool,
    /// Buffers the engine is done with.
    spares: &'s Receiver<PackedRecords>,
}

impl Source for BatchesTable<'_> {
    fn peek(&mut self, _: &mut Ctx) -> Result<Option<u64>, StoreError> {
        if self.head.is_none() && !self.done {
            match self.rows.next().map_err(StoreError::from)? {
                None => self.done = true,
                Some(row) => self.head = Some(read_batch(row, self.spares)?),
            }
        }
        Ok(self.head.as_ref().map(|h| h.0))
    }

    fn take(&mut self, _: &mut Ctx) -> Result<(Item, u64), StoreError> {
        let (_, arrived_at, batch, n) = self.head.take().expect("take follows a successful peek");
        Ok((Item::Records(arrived_at, batch), n))
    }
}

/// One row of `record_batches` (`seq, arrived_at, count, body`), unpacked.
fn read_batch(
    row: &Row<'_>,
    spares: &Receiver<PackedRecords>,
) -> Result<(u64, Timestamp, PackedRecords, u64), StoreError> {
    let read = || -> Result<(u64, Timestamp, PackedRecords, u64), String> {
        let count = int(row, 2)?;
        let body = row
            .get_ref(3)
            .and_then(|v| v.as_blob().map_err(Into::into))
            .map_err(|e| e.to_string())?;
        let mut batch = recycled(spares, PackedRecords::clear);
        let n = log::unpack_records(body, &mut batch)?;
        if i64::try_from(n) != Ok(count) {
            return Err(format!(
                "the body holds {n} records, its count says {count}"
            ));
        }
        Ok((seq(row)?, time(row, 1)?, batch, n as u64))
    };
    read().map_err(|e| {
        let id: i64 = row.get(0).unwrap_or(-1);
        StoreError::Corrupt(format!("record_batches row with seq {id}: {e}"))
    })
}

struct Table<'s, H, I> {
    name: &'static str,
    rows: Rows<'s>,
    decode: DecodeFn<H, I>,
    build: BuildFn<H, I>,
    head: Option<Decoded<H, I>>,
    done: bool,
}

impl<'s, H, I> Table<'s, H, I> {
    fn new(
        name: &'static str,
        rows: Rows<'s>,
        decode: DecodeFn<H, I>,
        build: BuildFn<H, I>,
    ) -> Self {
        Table {
            name,
            rows,
            decode,
            build,
            head: None,
            done: false,
        }
    }

    fn fill(&mut self, ctx: &mut Ctx) -> Result<(), StoreError> {
        if self.head.is_some() || self.done {
            return Ok(());
        }
        match self.rows.next().map_err(StoreError::from)? {
            None => self.done = true,
            Some(row) => {
                let decoded = (self.decode)(row, ctx).map_err(|e| {
                    let id: i64 = row.get(0).unwrap_or(-1);
                    StoreError::Corrupt(format!("{} row with seq {id}: {e}", self.name))
                })?;
                self.head = Some(decoded);
            }
        }
        Ok(())
    }
}

impl<H, I> Source for Table<'_, H, I> {
    fn peek(&mut self, ctx: &mut Ctx) -> Result<Option<u64>, StoreError> {
        self.fill(ctx)?;
        Ok(self.head.as_ref().map(|h| h.0))
    }

    fn take(&mut self, ctx: &mut Ctx) -> Result<(Item, u64), StoreError> {
        let (seq, header, first) = self.head.take().expect("take follows a successful peek");
        let mut items = Vec::with_capacity(1);
        items.push(first);
        loop {
            self.fill(ctx)?;
            match self.head.take() {
                Some((s, _, item)) if s == seq => items.push(item),
                other => {
                    self.head = other;
                    break;
                }
            }
        }
        let n = items.len() as u64;
        let event = (self.build)(header, items)
            .map_err(|e| StoreError::Corrupt(format!("{} event with seq {seq}: {e}", self.name)))?;
        Ok((Item::Event(event), n))
    }
}

// ------------------------------------------------------------ decoding

fn seq(r: &Row<'_>) -> Result<u64, String> {
    let s: i64 = r.get(0).map_err(|e| e.to_string())?;
    u64::try_from(s).map_err(|_| format!("negative seq {s}"))
}

fn int(r: &Row<'_>, i: usize) -> Result<i64, String> {
    r.get::<_, i64>(i).map_err(|e| e.to_string())
}

fn text<'r>(r: &'r Row<'_>, i: usize) -> Result<&'r str, String> {
    r.get_ref(i)
        .and_then(|v| v.as_str().map_err(Into::into))
        .map_err(|e| e.to_string())
}

fn time(r: &Row<'_>, i: usize) -> Result<Timestamp, String> {
    int(r, i).map(Timestamp::from_millis)
}

fn person(r: &Row<'_>, i: usize) -> Result<PersonId, String> {
    let v = int(r, i)?;
    let v = u64::try_from(v).map_err(|_| "negative person_id".to_owned())?;
    PersonId::from_u64(v).map_err(|e| format!("person_id: {e}"))
}

fn small_id(r: &Row<'_>, i: usize) -> Result<u32, String> {
    let v = int(r, i)?;
    u32::try_from(v).map_err(|_| format!("id {v} out of range"))
}

fn one<H>(header: H, items: &[()]) -> Result<H, String> {
    if items.len() == 1 {
        Ok(header)
    } else {
        Err(format!("{} rows share one seq", items.len()))
    }
}

fn decode_heads(r: &Row<'_>, ctx: &mut Ctx) -> Result<Decoded<Timestamp, HeadRow>, String> {
    let row = HeadRow {
        area: ctx.area(text(r, 1)?)?,
        title: text(r, 2)?.to_owned(),
        name: text(r, 3)?.to_owned(),
        phone: text(r, 4)?.to_owned(),
    };
    Ok((seq(r)?, time(r, 5)?, row))
}

fn decode_resident_delete(r: &Row<'_>, _: &mut Ctx) -> Result<Decoded<Event, ()>, String> {
    let ev = Event::ResidentDelete {
        person_id: person(r, 1)?,
        at: time(r, 2)?,
    };
    Ok((seq(r)?, ev, ()))
}

fn decode_result(r: &Row<'_>, _: &mut Ctx) -> Result<Decoded<Timestamp, ResultItem>, String> {
    let item = ResultItem {
        tube_id: TubeId::parse(text(r, 1)?).map_err(|e| format!("tube_id: {e}"))?,
        result: text(r, 2)?
            .parse::<TestResult>()
            .map_err(|e| e.to_string())?,
        reported_at: time(r, 3)?,
    };
    Ok((seq(r)?, time(r, 4)?, item))
}

fn decode_round(r: &Row<'_>, ctx: &mut Ctx) -> Result<Decoded<Event, ()>, String> {
    let scope: Vec<String> =
        serde_json::from_str(text(r, 3)?).map_err(|e| format!("scope: {e}"))?;
    let scope = scope
        .iter()
        .map(|s| ctx.area(s))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = RoundSpec {
        id: small_id(r, 1)?,
        name: text(r, 2)?.to_owned(),
        scope,
        opens_at: time(r, 4)?,
        deadline: time(r, 5)?,
        created_at: time(r, 6)?,
    };
    Ok((seq(r)?, Event::RoundCreate(spec), ()))
}

fn decode_round_close(r: &Row<'_>, _: &mut Ctx) -> Result<Decoded<Event, ()>, String> {
    let ev = Event::RoundClose {
        id: small_id(r, 1)?,
        at: time(r, 2)?,
    };
    Ok((seq(r)?, ev, ()))
}

fn decode_exemption(r: &Row<'_>, _: &mut Ctx) -> Result<Decoded<Event, ()>, String> {
    let spec = ExemptionSpec {
        id: small_id(r, 1)?,
        person_id: person(r, 2)?,
        reason: text(r, 3)?
            .parse::<ExemptionReason>()
            .map_err(|e| e.to_string())?,
        from: time(r, 4)?,
        until: time(r, 5)?,
        note: text(r, 6)?.to_owned(),
        created_at: time(r, 7)?,
    };
    Ok((seq(r)?, Event::ExemptionCreate(spec), ()))
}

fn decode_exemption_delete(r: &Row<'_>, _: &mut Ctx) -> Result<Decoded<Event, ()>, String> {
    let ev = Event::ExemptionDelete {
        id: small_id(r, 1)?,
        at: time(r, 2)?,
    };
    Ok((seq(r)?, ev, ()))
}

fn decode_clear(r: &Row<'_>, _: &mut Ctx) -> Result<Decoded<Event, ()>, String> {
    let ev = Event::Clear {
        person_id: person(r, 1)?,
        note: text(r, 2)?.to_owned(),
        at: time(r, 3)?,
    };
    Ok((seq(r)?, ev, ()))
}

#[allow(clippy::unnecessary_wraps)]
fn build_heads(at: Timestamp, rows: Vec<HeadRow>) -> Result<Event, String> {
    Ok(Event::Heads { rows, at })
}

#[allow(clippy::unnecessary_wraps)]
fn build_results(arrived_at: Timestamp, items: Vec<ResultItem>) -> Result<Event, String> {
    Ok(Event::Results { arrived_at, items })
}

#[allow(clippy::needless_pass_by_value)] // the signature is every table's BuildFn
fn build_single(event: Event, items: Vec<()>) -> Result<Event, String> {
    one(event, &items)
}

// ------------------------------------------------------------ the merge

/// Reads the whole log in `seq` order and applies it to `engine`. Fails with
/// `Corrupt` on a row the parsers refuse or a `seq` seen twice.
///
/// Two threads: this one applies, a scoped one reads and decodes, with a
/// short queue between them, so SQLite's scans and the allocations of
/// decoding overlap with the engine's work (a big register import is read
/// and upserted part by part).
pub fn replay(
    conn: Connection,
    engine: &mut Engine,
    after: u64,
) -> Result<ReplayStats, StoreError> {
    let started = Instant::now();
    let mut apply_time = Duration::ZERO;
    let starts = EVENT_TABLES
        .iter()
        .map(|t| first_id_after(&conn, t, after))
        .collect::<Result<Vec<i64>, StoreError>>()?;
    // Room for the whole register at once (the table's id span bounds it).
    engine.reserve_register(id_span(&conn, "register_rows", starts[0])?);
    let decoded = std::thread::scope(|scope| {
        // Bounded, so memory holds part of the log, not all of it; but deep
        // enough (up to ~2 M records, ~150 MB) for the decoder to keep
        // working while the engine spends seconds on a big register import.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Step>(4096);
        // Buffers go back to the decoder to be refilled, so neither thread
        // allocates (nor frees the other's memory) per part or batch.
        let (rows_back, rows_spares) = std::sync::mpsc::sync_channel::<PackedRows>(4);
        let (records_back, records_spares) = std::sync::mpsc::sync_channel::<PackedRecords>(64);
        let decoder = std::thread::Builder::new()
            .name("store-replay".into())
            .spawn_scoped(scope, move || {
                decode(
                    &conn,
                    &starts,
                    after,
                    (rows_spares, records_spares),
                    |step| tx.send(step).is_ok(),
                )
            })?;
        // A large store takes seconds: say how far it has got every few.
        let (mut steps, mut logged) = (0u64, Instant::now());
        for step in rx {
            steps += 1;
            if logged.elapsed() >= Duration::from_secs(2) {
                logged = Instant::now();
                tracing::info!(
                    steps,
                    elapsed_s = started.elapsed().as_secs(),
                    "replaying the store's log"
                );
            }
            let t = Instant::now();
            match step {
                Step::Apply(event) => {
                    engine.apply(&event);
                }
                Step::RegisterPart(rows) => {
                    engine.register_part(&rows);
                    recycle(&rows_back, rows);
                }
                Step::RegisterDone => engine.register_done(),
                Step::Records(arrived_at, batch) => {
                    engine.replay_records(arrived_at, &batch);
                    recycle(&records_back, batch);
                }
            }
            apply_time += t.elapsed();
        }
        decoder
            .join()
            .unwrap_or_else(|_| Err(StoreError::Corrupt("the replay decoder panicked".into())))
    });
    let mut stats = decoded?;
    stats.apply = apply_time;
    stats.replay = started.elapsed();
    Ok(stats)
}

/// Hands used buffers back to the decoder, if it has room for them.
fn recycle<T>(spares: &SyncSender<T>, used: T) {
    // Full or gone: the decoder has enough, or has finished; drop them.
    let _ = spares.try_send(used);
}

/// How many rows a table can hold at most: `max(id) - min(id) + 1`, two
/// lookups at the ends of its b-tree (asked apart: SQLite's min/max
/// shortcut only applies to a query with one of them, and both at once
/// scan the table).
fn id_span(conn: &Connection, table: &str, from: i64) -> Result<usize, StoreError> {
    let end = |f: &str| -> Result<Option<i64>, StoreError> {
        Ok(conn.query_row(&format!("SELECT {f}(id) FROM {table}"), [], |r| r.get(0))?)
    };
    Ok(match (end("min")?, end("max")?) {
        (Some(lo), Some(hi)) => usize::try_from(hi - lo.max(from) + 1).unwrap_or(0),
        _ => 0,
    })
}

/// The first `id` of `table` whose row has a `seq` above `after` (`seq`
/// grows with `id`), so a replay after a snapshot skips the rows it holds
/// without a scan.
pub(super) fn first_id_after(
    conn: &Connection,
    table: &str,
    after: u64,
) -> Result<i64, StoreError> {
    if after == 0 {
        return Ok(i64::MIN);
    }
    first_id_above(conn, table, "seq", after as i64)
}

/// The first `id` of `table` whose `column` is above `v`, for a column that
/// grows with `id`: a binary search of a few dozen lookups on the rowid.
/// (`i64::MIN` for an empty table; past the last `id` when no row is above.)
pub(super) fn first_id_above(
    conn: &Connection,
    table: &str,
    column: &str,
    v: i64,
) -> Result<i64, StoreError> {
    let mut probe = conn.prepare(&format!(
        "SELECT id, {column} FROM {table} WHERE id >= ?1 ORDER BY id LIMIT 1"
    ))?;
    let mut row_at = |id: i64| -> Result<Option<(i64, i64)>, StoreError> {
        let mut rows = probe.query([id])?;
        Ok(match rows.next()? {
            Some(r) => Some((r.get(0)?, r.get(1)?)),
            None => None,
        })
    };
    let Some((mut lo, _)) = row_at(i64::MIN)? else {
        return Ok(i64::MIN);
    };
    let mut hi: i64 = conn.query_row(&format!("SELECT max(id) FROM {table}"), [], |r| r.get(0))?;
    hi += 1;
    // Rows before `lo` hold values up to `v`; from `hi` on, above it.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match row_at(mid)? {
            Some((id, x)) if x <= v => lo = id + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// What the decoder hands the engine.
enum Step {
    Apply(Event),
    /// One import of a run of consecutive register imports, upserted as it
    /// comes (the decoder goes on with the next meanwhile) ...
    RegisterPart(PackedRows),
    /// ... and the end of the run: tree order is restored once.
    RegisterDone,
    /// One batch of records and its arrival time.
    Records(Timestamp, PackedRecords),
}

/// Reads the log in `seq` order and hands it to `emit` (which returns false
/// to stop), consecutive register imports as one run of parts.
fn decode(
    conn: &Connection,
    starts: &[i64],
    after: u64,
    (rows_spares, records_spares): (Receiver<PackedRows>, Receiver<PackedRecords>),
    mut emit: impl FnMut(Step) -> bool,
) -> Result<ReplayStats, StoreError> {
    let prep = |sql: &str| conn.prepare(sql).map_err(StoreError::from);
    let mut register = prep(
        "SELECT seq, person_id, name, phone, area, household, at FROM register_rows WHERE id >= ?1 ORDER BY id",
    )?;
    let mut heads =
        prep("SELECT seq, area, title, name, phone, at FROM heads WHERE id >= ?1 ORDER BY id")?;
    let mut deletes =
        prep("SELECT seq, person_id, at FROM resident_deletes WHERE id >= ?1 ORDER BY id")?;
    let mut records = prep(
        "SELECT seq, person_id, tube_id, site, collected_at, arrived_at FROM records WHERE id >= ?1 ORDER BY id",
    )?;
    let mut results = prep(
        "SELECT seq, tube_id, result, reported_at, arrived_at FROM results WHERE id >= ?1 ORDER BY id",
    )?;
    let mut rounds = prep(
        "SELECT seq, round_id, name, scope, opens_at, deadline, created_at FROM rounds WHERE id >= ?1 ORDER BY id",
    )?;
    let mut closes = prep("SELECT seq, round_id, at FROM round_closes WHERE id >= ?1 ORDER BY id")?;
    let mut exemptions = prep(
        "SELECT seq, exemption_id, person_id, reason, from_at, until_at, note, created_at
         FROM exemptions WHERE id >= ?1 ORDER BY id",
    )?;
    let mut ex_deletes =
        prep("SELECT seq, exemption_id, at FROM exemption_deletes WHERE id >= ?1 ORDER BY id")?;
    let mut clears =
        prep("SELECT seq, person_id, note, at FROM clears WHERE id >= ?1 ORDER BY id")?;
    let mut batches =
        prep("SELECT seq, arrived_at, count, body FROM record_batches WHERE id >= ?1 ORDER BY id")?;
    let mut sources: Vec<Box<dyn Source + '_>> = vec![
        Box::new(RegisterTable::new(
            register.query([starts[0]])?,
            rows_spares,
        )),
        Box::new(Table::new(
            "heads",
            heads.query([starts[1]])?,
            decode_heads,
            build_heads,
        )),
        Box::new(Table::new(
            "resident_deletes",
            deletes.query([starts[2]])?,
            decode_resident_delete,
            build_single,
        )),
        Box::new(RecordsTable::new(
            records.query([starts[3]])?,
            &records_spares,
        )),
        Box::new(Table::new(
            "results",
            results.query([starts[4]])?,
            decode_result,
            build_results,
        )),
        Box::new(Table::new(
            "rounds",
            rounds.query([starts[5]])?,
            decode_round,
            build_single,
        )),
        Box::new(Table::new(
            "round_closes",
            closes.query([starts[6]])?,
            decode_round_close,
            build_single,
        )),
        Box::new(Table::new(
            "exemptions",
            exemptions.query([starts[7]])?,
            decode_exemption,
            build_single,
        )),
        Box::new(Table::new(
            "exemption_deletes",
            ex_deletes.query([starts[8]])?,
            decode_exemption_delete,
            build_single,
        )),
        Box::new(Table::new(
            "clears",
            clears.query([starts[9]])?,
            decode_clear,
            build_single,
        )),
        Box::new(BatchesTable {
            rows: batches.query([starts[10]])?,
            head: None,
            done: false,
            spares: &records_spares,
        }),
    ];

    let mut ctx = Ctx::default();
    let mut stats = ReplayStats {
        last_seq: after,
        snapshot_seq: after,
        ..ReplayStats::default()
    };
    // Whether a run of register imports is open (not yet `RegisterDone`).
    let mut in_register = false;
    loop {
        let mut best: Option<(usize, u64)> = None;
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some(seq) = s.peek(&mut ctx)? {
                match best {
                    Some((_, b)) if b == seq => {
                        return Err(StoreError::Corrupt(format!(
                            "two tables hold events with seq {seq}"
                        )));
                    }
                    Some((_, b)) if b < seq => {}
                    _ => best = Some((i, seq)),
                }
            }
        }
        let Some((i, seq)) = best else { break };
        if seq <= stats.last_seq {
            return Err(StoreError::Corrupt(format!(
                "seq {seq} follows seq {} in {}",
                stats.last_seq, EVENT_TABLES[i]
            )));
        }
        stats.last_seq = seq;
        let (item, rows) = sources[i].take(&mut ctx)?;
        let step = match item {
            Item::Register(part) => {
                stats.register_rows += rows;
                in_register = true;
                if !emit(Step::RegisterPart(part)) {
                    return Ok(stats);
                }
                while let Some(part) = sources[i].more()? {
                    stats.register_rows += part.len() as u64;
                    if !emit(Step::RegisterPart(part)) {
                        return Ok(stats);
                    }
                }
                continue;
            }
            Item::Records(arrived_at, batch) => {
                stats.records += rows;
                Step::Records(arrived_at, batch)
            }
            Item::Event(event) => {
                match &event {
                    Event::Heads { .. } => stats.head_rows += rows,
                    Event::Records { .. } => stats.records += rows,
                    Event::Results { .. } => stats.results += rows,
                    _ => stats.other_events += 1,
                }
                Step::Apply(event)
            }
        };
        if std::mem::take(&mut in_register) {
            stats.events += 1;
            if !emit(Step::RegisterDone) {
                return Ok(stats);
            }
        }
        stats.events += 1;
        if !emit(step) {
            return Ok(stats);
        }
    }
    if in_register {
        stats.events += 1;
        emit(Step::RegisterDone);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::register::RegisterRow;
    use crate::engine::{Policy, RecordItem};

    fn pid(n: u64) -> PersonId {
        // 1990-01-01 onwards, three-digit sequence; the check digit computed.
        let body = format!("610802199001{:02}{:03}", 1 + n / 999 % 28, n % 999 + 1);
        let first17: &[u8; 17] = body.as_bytes().try_into().unwrap();
        let check = crate::domain::person_id::compute_check_char(first17);
        format!("{body}{check}").parse().unwrap()
    }

    fn resident(n: u64, name: &str) -> RegisterRow {
        RegisterRow {
            person_id: pid(n),
            name: format!("{name}{n}"),
            phone: format!("139{n:08}"),
            area: AreaPath::parse(&format!("街道/社区{}/{}号楼", n % 3, n / 4)).unwrap(),
            household: format!("户{}", n / 2),
        }
    }

    fn register(ns: std::ops::Range<u64>, name: &str, at: Timestamp) -> Event {
        Event::Register {
            rows: ns.map(|n| resident(n, name)).collect(),
            at,
        }
    }

    /// A batch of records of people `ns`, four to a tube.
    fn records(ns: std::ops::Range<u64>, site: &str, at: Timestamp) -> Event {
        Event::Records {
            arrived_at: at,
            items: ns
                .map(|n| RecordItem {
                    person_id: pid(n),
                    tube_id: TubeId::parse(&format!("T{}", n / 4)).unwrap(),
                    site: site.into(),
                    collected_at: at.plus_millis(n as i64),
                })
                .collect(),
        }
    }

    /// The replay's error on a log of four residents (`seq` 1) and what
    /// `then` writes after them.
    fn replay_error(then: impl FnOnce(&Connection, Timestamp)) -> StoreError {
        let at = Timestamp::parse("2022-04-19T08:00:00+08:00").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sqlite3");
        let mut conn = Connection::open(&path).unwrap();
        super::super::schema::migrate(&mut conn, 0).unwrap();
        super::super::log::write_event(&conn, 1, &register(0..4, "甲", at)).unwrap();
        then(&conn, at);
        drop(conn);
        let mut engine = Engine::new(Policy::default(), Engine::build_pool(1));
        let e = replay(Connection::open(&path).unwrap(), &mut engine, 0).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
        e
    }

    #[test]
    fn a_record_row_the_parsers_refuse_stops_the_replay() {
        let e = replay_error(|conn, at| {
            // A row of `records`, as versions before 3 logged a record.
            conn.execute(
                "INSERT INTO records (seq, person_id, tube_id, site, collected_at, arrived_at)
                 VALUES (2, ?1, 'T 1', 'S1', ?2, ?2)",
                rusqlite::params![pid(2).as_u64() as i64, at.as_millis()],
            )
            .unwrap();
        });
        let msg = e.to_string();
        assert!(msg.contains("records row with seq 2: tube_id"), "{msg}");
    }

    #[test]
    fn a_damaged_batch_of_records_stops_the_replay() {
        for (damage, says) in [
            (
                "UPDATE record_batches SET body = substr(body, 1, 40)",
                "bytes short",
            ),
            ("UPDATE record_batches SET count = 5", "count says 5"),
        ] {
            let e = replay_error(|conn, at| {
                super::super::log::write_event(conn, 2, &records(0..4, "S1", at)).unwrap();
                conn.execute_batch(damage).unwrap();
            });
            let msg = e.to_string();
            assert!(msg.contains("record_batches row with seq 2"), "{msg}");
            assert!(msg.contains(says), "{msg}");
        }
    }

    #[test]
    fn imports_handed_over_in_parts_replay_as_they_were_applied() {
        let at = Timestamp::parse("2022-04-19T08:00:00+08:00").unwrap();
        let events = vec![
            // Longer than a part, not a multiple of it.
            register(0..20, "甲", at),
            // Right after it (one run of imports), updating some of it.
            register(10..17, "乙", at),
            records(0..5, "S1", at),
            // Two batches back to back, the second from two sites.
            records(5..9, "S2", at),
            Event::Records {
                arrived_at: at.plus_millis(1000),
                items: [records(9..12, "S2", at), records(12..14, "S3", at)]
                    .into_iter()
                    .flat_map(|e| match e {
                        Event::Records { items, .. } => items,
                        _ => unreachable!(),
                    })
                    .collect(),
            },
            // Exactly one part, then a single row.
            register(30..37, "丙", at),
            register(40..41, "丁", at),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sqlite3");
        let mut conn = Connection::open(&path).unwrap();
        super::super::schema::migrate(&mut conn, 0).unwrap();
        let mut direct = Engine::new(Policy::default(), Engine::build_pool(1));
        for (seq, e) in (1..).zip(&events) {
            super::super::log::write_event(&conn, seq, e).unwrap();
            direct.apply(e);
        }
        drop(conn);

        let mut replayed = Engine::new(Policy::default(), Engine::build_pool(1));
        let stats = replay(Connection::open(&path).unwrap(), &mut replayed, 0).unwrap();
        assert_eq!(stats.register_rows, 20 + 7 + 7 + 1);
        assert_eq!(stats.records, 14);
        assert_eq!(stats.last_seq, 7);
        // One run of two imports, three batches, one run of two imports.
        assert_eq!(stats.events, 5);
        assert_eq!(replayed.resident_count(), 20 + 7 + 1);
        assert_eq!(replayed.digest(at), direct.digest(at));
        let person = replayed.register().slot(pid(12)).unwrap();
        let row = replayed.register().row_of(person).unwrap();
        assert_eq!(replayed.register().resident(row).name, "乙12");
    }
}
