//! What a gate lookup pays to trust a cached value (issue 14 item 11, issue
//! 18's fast gates): the ID's keyed digest it already paid before the MAC,
//! the MAC check of a cache hit (`Keyer::authentic`), and a value's
//! encoding with its MAC (once per write-through or write-back).
//!
//! `cargo bench --bench cache_value`
//!
//! Measured 2026-12-05 08:29 UTC on the shared 2-core machine (load average
//! about 4), `-- --warm-up-time 1 --measurement-time 4`, a 248-byte value:
//! digest of an ID 204 ns, MAC check of a hit 418 ns, encoding with the MAC
//! 585 ns. Against a gate lookup's whole cost over HTTP (about 44 µs of
//! core time per lookup: two cores at 45,000/s, docs/benchmarks.md) the check is
//! about 1%; a round close's 500,000 flips pay about 0.2 s more CPU to encode.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use rollcall::domain::{PersonId, ReasonCode, Timestamp};
use rollcall::engine::status::{Reason, Status};
use rollcall::status_cache::Keyer;

fn benches(c: &mut Criterion) {
    let keyer = Keyer::new(&[0x5a; 32]);
    let person: PersonId = "61080219850312001X".parse().unwrap();
    let digest = keyer.digest(person);
    let t = Timestamp::parse("2022-04-15T09:02:00+08:00").unwrap();
    let status = Status::from_reasons(
        vec![Reason {
            code: ReasonCode::MissedRound,
            round_id: Some("3".into()),
        }],
        None,
        Some(t),
        Some(t),
    );
    let raw = keyer.encode_value(&digest, 42, &status);
    assert!(keyer.authentic(&digest, &raw));
    println!("value: {} bytes", raw.len());

    c.bench_function("digest_of_an_id", |b| {
        b.iter(|| keyer.digest(black_box(person)));
    });
    c.bench_function("authentic_hit", |b| {
        b.iter(|| keyer.authentic(black_box(&digest), black_box(&raw)));
    });
    c.bench_function("encode_value_with_mac", |b| {
        b.iter(|| keyer.encode_value(black_box(&digest), 42, black_box(&status)));
    });
}

criterion_group!(cache_value, benches);
criterion_main!(cache_value);
