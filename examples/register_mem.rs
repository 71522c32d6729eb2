//! Memory of the register alone at city scale: builds the seeded city's
//! register in the engine as the engine bench does (imports of 200,000 rows)
//! and prints `VmRSS` per resident (register strings included) and each
//! structure's reserved bytes per resident. Much quicker than the criterion
//! bench, which goes on to ingest and close rounds.
//!
//! With `replay`, the register is built as a restart builds it instead:
//! room reserved once, rows handed over in recycled packed parts of 64 k
//! (no strings per row), tree order restored once at the end.
//!
//! `cargo run --release --example register_mem -- 10000000 [replay]`

use std::time::Instant;

use rollcall::cli::campaign::rss_bytes;
use rollcall::domain::Timestamp;
use rollcall::engine::register::PackedRows;
use rollcall::engine::{Engine, Event, Policy};
use rollcall::synth::city;

const SEED: u64 = 1;
const CHUNK: usize = 200_000;
/// Rows per part of a replay (as `store::replay` hands them over).
const PART: usize = 65_536;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |s| s.parse().expect("a number of residents"));
    let at = Timestamp::parse("2022-04-19T08:00:00+08:00").expect("a valid time");
    let mut engine = Engine::new(Policy::default(), Engine::build_pool(2));
    let before = rss_bytes();
    let t0 = Instant::now();
    let mut rows = city(n, SEED);
    if std::env::args().nth(2).as_deref() == Some("replay") {
        engine.reserve_register(n as usize);
        let mut part = PackedRows::default();
        loop {
            part.clear();
            for r in rows.by_ref().take(PART) {
                part.push(
                    r.person_id,
                    r.area.as_str(),
                    &r.household,
                    &r.name,
                    &r.phone,
                )
                .expect("the generator's areas are valid");
            }
            if part.is_empty() {
                break;
            }
            engine.register_part(&part);
        }
        engine.register_done();
    } else {
        loop {
            let chunk: Vec<_> = rows.by_ref().take(CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            engine.apply(&Event::Register { rows: chunk, at });
        }
    }
    let built = t0.elapsed();
    let after = rss_bytes();
    assert_eq!(engine.resident_count(), n);
    let reg = engine.register();
    println!(
        "{n} residents in {built:.1?}; {} area nodes; VmRSS {:.0} -> {:.0} MiB: {:.1} B/resident",
        reg.nodes().len(),
        before as f64 / 1_048_576.0,
        after as f64 / 1_048_576.0,
        (after - before) as f64 / n as f64
    );
    // Every resident's ID looked up once, in an order that jumps about
    // the register (a stride coprime with n), as a batch of records does.
    let stride = (n / 3 + 1..=n + n / 3 + 1)
        .find(|s| gcd(*s, n) == 1)
        .expect("a stride");
    let ids: Vec<_> = (0..n)
        .map(|i| reg.resident(((i * stride) % n) as u32).person_id)
        .collect();
    let t0 = Instant::now();
    let found = ids.iter().filter(|&&id| reg.slot(id).is_some()).count();
    let looked = t0.elapsed();
    assert_eq!(found as u64, n);
    println!(
        "  {n} ID lookups in {looked:.2?}: {:.1} ns each",
        looked.as_nanos() as f64 / n as f64
    );
    let parts = reg.footprint();
    let total: usize = parts.iter().map(|p| p.1).sum();
    for (name, bytes) in parts {
        println!("  {name:<32} {:>6.1} B/resident", bytes as f64 / n as f64);
    }
    println!(
        "  {:<32} {:>6.1} B/resident",
        "register total",
        total as f64 / n as f64
    );
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}
