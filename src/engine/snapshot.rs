//! The engine's whole state as bytes and back: what a snapshot file holds
//! (the store adds the header, the log position and the checksum, and does
//! the I/O). A plain little-endian encoding written by hand: lengths before
//! contents, every structure in its in-memory order, so decoding rebuilds
//! the same slots, rows, nodes and tube indices as the engine that was
//! encoded — a snapshot plus the log after it answers exactly as a replay of
//! the whole log.
//!
//! Decoding trusts nothing: a short buffer, an index out of range or a
//! string the domain's parsers refuse is an error, never a panic.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::bitset::Bitset;
use super::slots::Slots;
use super::{Engine, Exemption, Policy, PositiveHit};
use crate::domain::{AreaPath, ExemptionReason, PersonId, TestResult, Timestamp};

/// The version of the encoding; a snapshot of another version is ignored.
/// 3: a round's sets in their packed forms (archived rounds).
pub const FORMAT: u32 = 3;

/// Appends values to a buffer.
#[derive(Default)]
pub struct Enc {
    pub buf: Vec<u8>,
}

impl Enc {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
    pub fn str(&mut self, s: &str) {
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }
    pub fn time(&mut self, t: Timestamp) {
        self.i64(t.as_millis());
    }
    pub fn opt_time(&mut self, t: Option<Timestamp>) {
        self.bool(t.is_some());
        if let Some(t) = t {
            self.time(t);
        }
    }
    /// An array as its length and its values, written in place (one
    /// resize, then a tight loop: arrays of tens of millions).
    pub fn u32s(&mut self, v: &[u32]) {
        self.u32_parts(v.len(), std::iter::once(v));
    }
    /// A chunked array, as the same bytes as [`Enc::u32s`] of its rows.
    pub fn u32s_chunked(&mut self, v: &super::chunked::Chunked<u32>) {
        self.u32_parts(v.len(), v.slices(0..v.len()));
    }
    /// `n` values, given as consecutive parts, as one array.
    fn u32_parts<'v>(&mut self, n: usize, parts: impl Iterator<Item = &'v [u32]>) {
        self.len(n);
        let start = self.buf.len();
        self.buf.resize(start + n * 4, 0);
        let mut out = self.buf[start..].chunks_exact_mut(4);
        for x in parts.flatten() {
            out.next()
                .expect("the parts hold n values")
                .copy_from_slice(&x.to_le_bytes());
        }
    }
    pub fn u16s(&mut self, v: &[u16]) {
        self.len(v.len());
        let start = self.buf.len();
        self.buf.resize(start + v.len() * 2, 0);
        for (c, x) in self.buf[start..].chunks_exact_mut(2).zip(v) {
            c.copy_from_slice(&x.to_le_bytes());
        }
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.buf.extend_from_slice(v);
    }
    /// A set of slots in its form: 0 a bitset, 1 the slots in it, 2 a
    /// length and the slots below it missing from it.
    pub fn slots(&mut self, s: &Slots) {
        match s {
            Slots::Dense(b) => {
                self.u8(0);
                self.bitset(b);
            }
            Slots::Ones(v) => {
                self.u8(1);
                self.u32s(v);
            }
            Slots::Zeros { len, zeros } => {
                self.u8(2);
                self.u32(*len);
                self.u32s(zeros);
            }
        }
    }
    pub fn bitset(&mut self, b: &Bitset) {
        self.len(b.words().len());
        let start = self.buf.len();
        self.buf.resize(start + b.words().len() * 8, 0);
        for (c, w) in self.buf[start..].chunks_exact_mut(8).zip(b.words()) {
            c.copy_from_slice(&w.to_le_bytes());
        }
    }
}

/// Reads values back; every read checks the bounds.
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

pub type DecResult<T> = Result<T, String>;

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Dec<'a> {
        Dec { buf, pos: 0 }
    }

    pub fn done(&self) -> bool {
        self.pos == self.buf.len()
    }

    fn take(&mut self, n: usize) -> DecResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("cut short at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self) -> DecResult<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    pub fn u8(&mut self) -> DecResult<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn bool(&mut self) -> DecResult<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("{b} is not a boolean")),
        }
    }
    pub fn u16(&mut self) -> DecResult<u16> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    pub fn u32(&mut self) -> DecResult<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    pub fn u64(&mut self) -> DecResult<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    pub fn i64(&mut self) -> DecResult<i64> {
        Ok(i64::from_le_bytes(self.arr()?))
    }
    /// A length, checked against the bytes left (each item at least `min` bytes).
    pub fn len(&mut self, min: usize) -> DecResult<usize> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min.max(1) as u64) > left && min > 0 {
            return Err(format!("a length of {n} runs past the end"));
        }
        usize::try_from(n).map_err(|_| format!("a length of {n}"))
    }
    pub fn str(&mut self) -> DecResult<&'a str> {
        let n = self.len(1)?;
        std::str::from_utf8(self.take(n)?).map_err(|e| e.to_string())
    }
    pub fn time(&mut self) -> DecResult<Timestamp> {
        Ok(Timestamp::from_millis(self.i64()?))
    }
    pub fn opt_time(&mut self) -> DecResult<Option<Timestamp>> {
        Ok(if self.bool()? {
            Some(self.time()?)
        } else {
            None
        })
    }
    pub fn u32s(&mut self) -> DecResult<Vec<u32>> {
        let n = self.len(4)?;
        let raw = self.take(n * 4)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }
    /// [`Dec::u32s`] into chunks, without a whole array in between.
    pub fn u32s_chunked(&mut self) -> DecResult<super::chunked::Chunked<u32>> {
        let n = self.len(4)?;
        let raw = self.take(n * 4)?;
        Ok(super::chunked::Chunked::collect(raw.chunks_exact(4).map(
            |c| u32::from_le_bytes(c.try_into().expect("4 bytes")),
        )))
    }
    /// [`Dec::u16s`] into chunks.
    pub fn u16s_chunked(&mut self) -> DecResult<super::chunked::Chunked<u16>> {
        let n = self.len(2)?;
        let raw = self.take(n * 2)?;
        Ok(super::chunked::Chunked::collect(raw.chunks_exact(2).map(
            |c| u16::from_le_bytes(c.try_into().expect("2 bytes")),
        )))
    }
    pub fn u16s(&mut self) -> DecResult<Vec<u16>> {
        let n = self.len(2)?;
        let raw = self.take(n * 2)?;
        Ok(raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes(c.try_into().expect("2 bytes")))
            .collect())
    }
    pub fn bytes(&mut self) -> DecResult<&'a [u8]> {
        let n = self.len(1)?;
        self.take(n)
    }
    /// The set [`Enc::slots`] wrote; lists must ascend (and zeros stay
    /// below their length), as reads search them.
    pub fn slots(&mut self) -> DecResult<Slots> {
        let ascending = |v: &[u32]| v.windows(2).all(|w| w[0] < w[1]);
        match self.u8()? {
            0 => Ok(Slots::Dense(self.bitset()?)),
            1 => {
                let v = self.u32s()?;
                if !ascending(&v) {
                    return Err("a set's slots out of order".into());
                }
                Ok(Slots::Ones(v))
            }
            2 => {
                let len = self.u32()?;
                let zeros = self.u32s()?;
                if !ascending(&zeros) || zeros.last().is_some_and(|&z| z >= len) {
                    return Err("a set's missing slots out of order".into());
                }
                Ok(Slots::Zeros { len, zeros })
            }
            other => Err(format!("set form {other}")),
        }
    }
    pub fn bitset(&mut self) -> DecResult<Bitset> {
        let n = self.len(8)?;
        let raw = self.take(n * 8)?;
        Ok(Bitset::from_words(
            raw.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        ))
    }
    pub fn person(&mut self) -> DecResult<PersonId> {
        let v = self.u64()?;
        PersonId::from_u64(v).map_err(|e| format!("{v} is not a person ID: {e}"))
    }
    pub fn area(&mut self) -> DecResult<AreaPath> {
        let s = self.str()?;
        AreaPath::parse(s).map_err(|e| format!("area {s:?}: {e}"))
    }
}

fn reason_code(r: ExemptionReason) -> u8 {
    ExemptionReason::ALL
        .iter()
        .position(|&x| x == r)
        .expect("every reason is in ALL") as u8
}

fn reason_of(b: u8) -> DecResult<ExemptionReason> {
    ExemptionReason::ALL
        .get(usize::from(b))
        .copied()
        .ok_or_else(|| format!("exemption reason {b}"))
}

pub fn result_code(r: Option<TestResult>) -> u8 {
    match r {
        None => 0,
        Some(TestResult::Negative) => 1,
        Some(TestResult::Positive) => 2,
    }
}

pub fn result_of(b: u8) -> DecResult<Option<TestResult>> {
    Ok(match b {
        0 => None,
        1 => Some(TestResult::Negative),
        2 => Some(TestResult::Positive),
        other => return Err(format!("result {other}")),
    })
}

impl Engine {
    /// The whole state, encoded (the policy and the pool are not state:
    /// they come from the settings when the snapshot is loaded).
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut e = Enc::default();
        self.register.encode(&mut e);
        self.tubes.encode(&mut e);
        e.u32s_chunked(&self.last_sample);
        e.u32s_chunked(&self.last_negative);
        let mut positives: Vec<(&u32, &Vec<PositiveHit>)> = self.positives.iter().collect();
        positives.sort_unstable_by_key(|(s, _)| **s);
        e.len(positives.len());
        for (slot, hits) in positives {
            e.u32(*slot);
            e.len(hits.len());
            for h in hits {
                e.u32(h.tube);
                e.bool(h.pooled);
                e.u32(h.collected);
                e.bool(h.cleared);
            }
        }
        e.len(self.rounds.len());
        for r in &self.rounds {
            r.encode(&mut e);
        }
        e.u32s(&self.closed_order);
        e.len(self.exemptions.len());
        for x in self.exemptions.values() {
            e.u32(x.id);
            e.u32(x.slot);
            e.u64(x.person_id.as_u64());
            e.u8(reason_code(x.reason));
            e.time(x.from);
            e.time(x.until);
            e.str(&x.note);
        }
        e.u32(self.next_exemption);
        e.u64(self.records);
        e.i64(self.clock);
        e.i64(self.next_prune);
        e.buf
    }

    /// An engine from [`Engine::encode_snapshot`]'s bytes.
    pub fn decode_snapshot(
        bytes: &[u8],
        policy: Policy,
        pool: Arc<rayon::ThreadPool>,
    ) -> DecResult<Engine> {
        let mut d = Dec::new(bytes);
        let register = super::Register::decode(&mut d)?;
        let slots = register.slots();
        let tubes = super::tubes::Tubes::decode(&mut d, slots)?;
        let last_sample = d.u32s_chunked()?;
        let last_negative = d.u32s_chunked()?;
        if last_sample.len() != slots || last_negative.len() != slots {
            return Err("per-person times do not match the slots".into());
        }
        let mut positives = FxHashMap::default();
        for _ in 0..d.len(12)? {
            let slot = d.u32()?;
            if slot as usize >= slots {
                return Err(format!("a positive for slot {slot}"));
            }
            let n = d.len(10)?;
            let mut hits = Vec::with_capacity(n);
            for _ in 0..n {
                hits.push(PositiveHit {
                    tube: d.u32()?,
                    pooled: d.bool()?,
                    collected: d.u32()?,
                    cleared: d.bool()?,
                });
            }
            positives.insert(slot, hits);
        }
        let mut rounds = Vec::new();
        for i in 0..d.len(16)? {
            let r = super::Round::decode(&mut d)?;
            if r.id as usize != i + 1 {
                return Err(format!("round {} in place {}", r.id, i + 1));
            }
            if !r.nodes_within(register.nodes().len()) {
                return Err(format!("round {} names an area node out of range", r.id));
            }
            rounds.push(r);
        }
        let closed_order = d.u32s()?;
        if closed_order
            .iter()
            .any(|&o| o == 0 || o as usize > rounds.len())
        {
            return Err("closed rounds out of range".into());
        }
        let mut exemptions = BTreeMap::new();
        let mut exemptions_of: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
        for _ in 0..d.len(30)? {
            let id = d.u32()?;
            let slot = d.u32()?;
            let person_id = d.person()?;
            let reason = reason_of(d.u8()?)?;
            let from = d.time()?;
            let until = d.time()?;
            let note = d.str()?.to_owned();
            if slot as usize >= slots || register.person_id(slot) != person_id {
                return Err(format!("exemption {id} names the wrong slot"));
            }
            exemptions_of.entry(slot).or_default().push(id);
            exemptions.insert(
                id,
                Exemption {
                    id,
                    slot,
                    person_id,
                    reason,
                    from,
                    until,
                    note,
                },
            );
        }
        let next_exemption = d.u32()?;
        let records = d.u64()?;
        let clock = d.i64()?;
        let next_prune = d.i64()?;
        if !d.done() {
            return Err("bytes left after the state".into());
        }
        let mut engine = Engine {
            policy,
            pool,
            register: Arc::new(register),
            tubes,
            last_sample,
            last_negative,
            positives,
            rounds,
            closed_order,
            exemptions,
            exemptions_of,
            next_exemption,
            records,
            clock,
            next_prune,
        };
        // Whole-round counts are not stored: counted once here.
        for ix in 0..engine.rounds.len() {
            engine.take_final_counts(ix);
        }
        Ok(engine)
    }
}
