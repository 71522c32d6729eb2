//! The engine at city scale (the targets in docs/benchmarks.md): a register of 10 million
//! residents from the seeded generator, then
//! - `ingest`: 1 million records, judged and applied in batches of 500 (the
//!   store's judge, log, apply without the log);
//! - `close`: closing a 10-million-resident round with 95% sampled;
//! - `coverage`: the counts of every area node of that round (depth 0 from
//!   each top-level area computes them all: the generator's city has no
//!   single root), and the whole answer tree (depth 10, a million nodes);
//! - `close_and_coverage`: the close and every node's counts, which is
//!   DESIGN's "round close" figure (target < 0.1 s);
//! - `status`: one gate lookup.
//!
//! It also prints the process's resident memory per resident after building
//! the register (`VmRSS` before and after, register strings included) and per
//! record after the records. Every bench asserts its answer.
//!
//! `ROLLCALL_BENCH_RESIDENTS=200000 cargo bench --bench engine` for a quick
//! run; the machine is shared, so samples are few and short.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

use rollcall::cli::campaign::rss_bytes;
use rollcall::domain::{AreaPath, Colour, PersonId, ReasonCode, Timestamp, TubeId};
use rollcall::engine::{Engine, Event, Overlay, Policy, RecordItem, RoundSpec, Verdict};
use rollcall::synth::city;

const SEED: u64 = 1;
/// Register rows per import event: bounds the generator's transient strings
/// (freed small allocations stay in the heap and would count as resident).
const CHUNK: usize = 200_000;
const BATCH: usize = 500;
const POOL: usize = 10;
const HOUR: i64 = 3_600_000;

fn residents() -> u64 {
    std::env::var("ROLLCALL_BENCH_RESIDENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000)
}

/// The window of the rounds closed here opens at this time.
fn opens() -> Timestamp {
    Timestamp::parse("2022-04-19T08:00:00+08:00").expect("a valid time")
}

/// Resident `row`'s ID (rows are in tree order).
fn person(engine: &Engine, row: u32) -> PersonId {
    engine.register().resident(row).person_id
}

/// Records putting residents `rows` (every `skip`-th one left out when
/// `skip > 0`) into pools of ten, `collected` at the given time.
fn records(
    engine: &Engine,
    rows: impl Iterator<Item = u32>,
    tag: &str,
    collected: Timestamp,
) -> Vec<RecordItem> {
    let site: Arc<str> = Arc::from("S001");
    rows.enumerate()
        .map(|(i, row)| RecordItem {
            person_id: person(engine, row),
            tube_id: TubeId::parse(&format!("{tag}{}", i / POOL)).expect("a valid tube"),
            collected_at: collected.plus_millis((i % 600) as i64 * 60_000),
            site: site.clone(),
        })
        .collect()
}

/// Judges and applies batches of 500 as the store's writer does.
fn ingest(engine: &mut Engine, items: Vec<RecordItem>, now: Timestamp) -> u64 {
    let mut accepted_total = 0;
    let mut overlay = Overlay::default();
    let mut items = items.into_iter();
    loop {
        let batch: Vec<RecordItem> = items.by_ref().take(BATCH).collect();
        if batch.is_empty() {
            break;
        }
        overlay.clear();
        let verdicts = engine.judge_records(&batch, now, &mut overlay);
        let accepted: Vec<RecordItem> = batch
            .into_iter()
            .zip(&verdicts)
            .filter(|(_, v)| matches!(v, Verdict::Accepted { .. }))
            .map(|(it, _)| it)
            .collect();
        accepted_total += accepted.len() as u64;
        engine.apply(&Event::Records {
            arrived_at: now,
            items: accepted,
        });
    }
    accepted_total
}

fn top_areas(engine: &Engine) -> Vec<AreaPath> {
    engine
        .register()
        .nodes()
        .iter()
        .filter(|n| n.path.depth() == 1)
        .map(|n| n.path.clone())
        .collect()
}

fn create_round(
    engine: &mut Engine,
    scope: Vec<AreaPath>,
    opens_at: Timestamp,
    now: Timestamp,
) -> u32 {
    let id = engine.rounds().len() as u32 + 1;
    engine.apply(&Event::RoundCreate(RoundSpec {
        id,
        name: format!("第{id}轮"),
        scope,
        opens_at,
        deadline: opens_at.plus_millis(12 * HOUR),
        created_at: now,
    }));
    id
}

fn benches(c: &mut Criterion) {
    let n = residents();
    let pool = Engine::build_pool(2);
    let mut engine = Engine::new(Policy::default(), pool);

    // ---------------------------------------------------------- the register
    let before = rss_bytes();
    let t0 = Instant::now();
    let mut rows = city(n, SEED);
    loop {
        let chunk: Vec<_> = rows.by_ref().take(CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        engine.apply(&Event::Register {
            rows: chunk,
            at: opens(),
        });
    }
    let built = t0.elapsed();
    let after = rss_bytes();
    assert_eq!(engine.resident_count(), n);
    let per_resident = (after - before) as f64 / n as f64;
    println!(
        "register: {n} residents in {built:.1?}; VmRSS {:.0} MiB -> {:.0} MiB: {per_resident:.1} B/resident \
         (target <= 150), {} area nodes",
        before as f64 / 1_048_576.0,
        after as f64 / 1_048_576.0,
        engine.register().nodes().len()
    );
    let tops = top_areas(&engine);

    // ------------------------------------------------ ingest: 1 M per iteration
    // Collected the day before the window (they count in no round closed below),
    // into an open city-wide round of that day, as on a round day.
    let day_before = opens().plus_millis(-24 * HOUR);
    create_round(&mut engine, tops.clone(), day_before, day_before);
    let ingest_now = day_before.plus_millis(11 * HOUR);
    let per_iteration = 1_000_000.min(n) as u32;
    let mut iteration = 0u32;
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    let records_before = engine.record_count();
    let rss_before_records = rss_bytes();
    group.bench_function("ingest_1M_records_batches_of_500", |b| {
        // Setup (building the records) is not timed: the HTTP layer parses them.
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                iteration += 1;
                let start = u64::from(iteration - 1) * u64::from(per_iteration) % n;
                let rows = (0..u64::from(per_iteration)).map(|i| ((start + i) % n) as u32);
                let items = records(&engine, rows, &format!("D{iteration}-"), day_before);
                let t0 = Instant::now();
                let accepted = ingest(&mut engine, items, ingest_now);
                spent += t0.elapsed();
                assert_eq!(accepted, u64::from(per_iteration));
            }
            spent
        });
    });

    // -------------------------------------- 95% sampled inside the window
    let sampled_rows = (0..n as u32).filter(|r| r % 20 != 0);
    let expected_missing = n.div_ceil(20);
    let items = records(&engine, sampled_rows, "W", opens());
    let t0 = Instant::now();
    let sampled = ingest(&mut engine, items, opens().plus_millis(12 * HOUR));
    println!(
        "95% sample: {sampled} records in {:.1?} ({:.0} records/s, judge + apply)",
        t0.elapsed(),
        sampled as f64 / t0.elapsed().as_secs_f64()
    );
    let records_held = engine.record_count() - records_before;
    let per_record = (rss_bytes() as f64 - rss_before_records as f64) / records_held as f64;
    // VmRSS also keeps what the allocator holds of this bench's own freed
    // inputs (the records built above, ~100 B each; glibc does not return
    // small freed chunks), so the records' own storage is printed beside it.
    let stored = engine.tube_heap_bytes() as f64 / engine.record_count() as f64;
    println!(
        "records: {records_held} held; {per_record:.1} B/record of VmRSS, \
         {stored:.1} B/record in the tube storage (target <= 16)"
    );

    // ------------------------------------------------- a first close, once
    let now = opens().plus_millis(13 * HOUR);
    let deadline = opens().plus_millis(12 * HOUR);
    let first = create_round(&mut engine, tops.clone(), opens(), now);
    let t0 = Instant::now();
    let applied = engine.apply(&Event::RoundClose {
        id: first,
        at: deadline,
    });
    println!(
        "first close: {:.1?} (one shot), flipped {}",
        t0.elapsed(),
        applied.flipped
    );
    assert_eq!(applied.flipped, expected_missing);

    // ----------------------------------------------------------- status
    // A gate lookup of someone flagged by that close.
    let missed: Vec<PersonId> = (0..n as u32)
        .step_by(20)
        .take(1000)
        .map(|r| person(&engine, r))
        .collect();
    let mut i = 0;
    group.bench_function("status_lookup", |b| {
        b.iter(|| {
            i = (i + 1) % missed.len();
            let s = engine.status(black_box(missed[i]), now);
            assert_eq!(s.colour, Colour::Yellow);
            assert_eq!(s.reasons.len(), 1);
            assert_eq!(s.reasons[0].code, ReasonCode::MissedRound);
            s
        });
    });

    // --------------------------------------------------------- coverage
    // Every node's counts (depth 0 from each top-level area computes them
    // all and builds one answer node per area), and the whole answer tree
    // (depth 10: a million answer nodes).
    let check = |engine: &Engine, round: u32, depth: u32| {
        let round = engine.round(round).expect("the round");
        let mut in_scope = 0;
        let mut missing = 0;
        let mut nodes = 0u64;
        for top in &tops {
            let node = engine.register().node(top).expect("a top-level node");
            let cov = engine.coverage(round, node, depth);
            in_scope += cov.counts.in_scope;
            missing += cov.counts.missing;
            let mut stack = vec![&cov];
            while let Some(c) = stack.pop() {
                nodes += 1;
                assert_eq!(c.counts.in_scope, c.counts.sampled + c.counts.missing);
                stack.extend(c.children.iter());
            }
        }
        assert_eq!((in_scope, missing), (n, expected_missing));
        nodes
    };
    let t0 = Instant::now();
    let nodes = check(&engine, first, 10);
    println!("coverage: {nodes} nodes in {:.1?} (one shot)", t0.elapsed());
    group.bench_function("coverage_counts_of_every_node_10M", |b| {
        b.iter(|| black_box(check(&engine, first, 0)));
    });
    group.bench_function("coverage_tree_depth_10_10M", |b| {
        b.iter(|| black_box(check(&engine, first, 10)));
    });

    // ------------------------------------------------------------ close
    // Each iteration closes a fresh round (creating it is not timed); the
    // rounds pile up, so keep the measurement short.
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("close_10M_round_95pct_sampled", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let id = create_round(&mut engine, tops.clone(), opens(), now);
                let t0 = Instant::now();
                let applied = engine.apply(&Event::RoundClose { id, at: deadline });
                spent += t0.elapsed();
                assert_eq!(applied.flipped, expected_missing);
                assert_eq!(applied.changed.len() as u64, expected_missing);
            }
            spent
        });
    });
    group.bench_function("close_and_coverage_10M", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let id = create_round(&mut engine, tops.clone(), opens(), now);
                let t0 = Instant::now();
                let applied = engine.apply(&Event::RoundClose { id, at: deadline });
                black_box(check(&engine, id, 0));
                spent += t0.elapsed();
                assert_eq!(applied.flipped, expected_missing);
            }
            spent
        });
    });
    group.finish();

    // ------------------------------------------- archiving the closed rounds
    // Retention archives a round `retention_days` (30) after its close; an
    // event a day past that archives them all. The bytes their per-person
    // sets hold, per closed round, before and after.
    let held = |e: &Engine| -> (usize, usize) {
        let closed = e.rounds().iter().filter(|r| r.is_closed());
        (
            closed.clone().count(),
            closed.map(rollcall::engine::Round::heap_bytes).sum(),
        )
    };
    let (closed, bytes_before) = held(&engine);
    let rss_before = rss_bytes();
    engine.apply(&Event::Records {
        arrived_at: now.plus_millis(31 * 24 * HOUR),
        items: Vec::new(),
    });
    let (_, bytes_after) = held(&engine);
    assert!(
        engine
            .rounds()
            .iter()
            .filter(|r| r.is_closed())
            .all(|r| r.archived)
    );
    let per = |b: usize| b as f64 / closed.max(1) as f64;
    println!(
        "archiving: {closed} closed rounds; {:.0} B per round before, {:.0} B archived ({:.1}x less); \
         VmRSS {:.0} MiB -> {:.0} MiB",
        per(bytes_before),
        per(bytes_after),
        bytes_before as f64 / bytes_after.max(1) as f64,
        rss_before as f64 / 1_048_576.0,
        rss_bytes() as f64 / 1_048_576.0
    );
    println!(
        "{} rounds; final VmRSS {:.0} MiB",
        engine.rounds().len(),
        rss_bytes() as f64 / 1_048_576.0
    );
}

criterion_group!(engine, benches);
criterion_main!(engine);
