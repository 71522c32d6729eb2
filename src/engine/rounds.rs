//! Rounds: scope, window, who was sampled (bitsets over person slots), the
//! close that freezes the in-scope set and flags the missing, and the
//! officials' views — counts, coverage by area node, missing lists, progress.

use rayon::prelude::*;

use std::borrow::Cow;
use std::sync::Arc;

use super::bitset::Bitset;
use super::register::{NONE, Register, Row, Slot};
use super::slots::Slots;
use super::{Engine, RestoreOn, RoundSpec, secs};
use crate::domain::{AreaPath, Timestamp};

/// A person's place in one round, in the contract's order of precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundState {
    Sampled { late: bool },
    MadeUp,
    Exempt,
    Missing,
}

/// The counts of docs/api.md: `in_scope = sampled + made_up + exempt + missing`,
/// `late` being part of `sampled`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub in_scope: u64,
    pub sampled: u64,
    pub late: u64,
    pub made_up: u64,
    pub exempt: u64,
    pub missing: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.in_scope += o.in_scope;
        self.sampled += o.sampled;
        self.late += o.late;
        self.made_up += o.made_up;
        self.exempt += o.exempt;
        self.missing += o.missing;
    }
}

/// Counts while they are summed: `missing` is what is left of `in_scope`.
/// Fields are 32 bits: a count never exceeds the register's rows.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    in_scope: u32,
    sampled: u32,
    late: u32,
    made_up: u32,
    exempt: u32,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.in_scope += o.in_scope;
        self.sampled += o.sampled;
        self.late += o.late;
        self.made_up += o.made_up;
        self.exempt += o.exempt;
    }

    fn minus(&self, o: &Tally) -> Tally {
        Tally {
            in_scope: self.in_scope - o.in_scope,
            sampled: self.sampled - o.sampled,
            late: self.late - o.late,
            made_up: self.made_up - o.made_up,
            exempt: self.exempt - o.exempt,
        }
    }

    fn counts(&self) -> Counts {
        Counts {
            in_scope: u64::from(self.in_scope),
            sampled: u64::from(self.sampled),
            late: u64::from(self.late),
            made_up: u64::from(self.made_up),
            exempt: u64::from(self.exempt),
            missing: u64::from(self.in_scope - self.sampled - self.made_up - self.exempt),
        }
    }
}

/// A round's per-person bits, read row by row without branching: the same
/// precedence as [`Round::state_of`] (sampled, made up, exempt, missing), for
/// scans over millions of rows.
struct StateBits<'a> {
    /// `None` while the round is open: every active row of the scanned
    /// ranges is in scope.
    frozen: Option<Cow<'a, Bitset>>,
    sampled: Cow<'a, Bitset>,
    late: Cow<'a, Bitset>,
    made_up: Cow<'a, Bitset>,
    exempt: Bitset,
}

impl<'a> StateBits<'a> {
    fn new(engine: &Engine, round: &'a Round) -> StateBits<'a> {
        StateBits {
            frozen: round.frozen.as_ref().map(Slots::dense),
            sampled: round.sampled.dense(),
            late: round.late.dense(),
            made_up: round.made_up.dense(),
            exempt: engine.exempt_bits(round),
        }
    }

    #[inline]
    fn tally(&self, t: &mut Tally, rows: &[Row]) {
        for r in rows {
            let s = r.slot;
            let f = u32::from(match &self.frozen {
                Some(b) => b.get(s),
                None => r.active,
            });
            let sampled = f & u32::from(self.sampled.get(s));
            let made_up = f & (sampled ^ 1) & u32::from(self.made_up.get(s));
            t.in_scope += f;
            t.sampled += sampled;
            t.late += sampled & u32::from(self.late.get(s));
            t.made_up += made_up;
            t.exempt += f & (sampled ^ 1) & (made_up ^ 1) & u32::from(self.exempt.get(s));
        }
    }
}

/// One node of a coverage answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoverageNode {
    pub area: AreaPath,
    pub counts: Counts,
    pub children: Vec<CoverageNode>,
}

/// A row of a missing list (index into the register's rows).
pub type MissingPerson = u32;

/// A mass-testing round.
#[derive(Clone, Debug)]
pub struct Round {
    pub id: u32,
    pub name: String,
    pub scope: Vec<AreaPath>,
    /// Scope nodes with nested ones dropped.
    scope_nodes: Vec<u32>,
    pub opens_at: Timestamp,
    /// The deadline now: moved to the close time by an early close.
    pub deadline: Timestamp,
    pub created_at: Timestamp,
    pub closed_at: Option<Timestamp>,
    /// How many people the close flagged.
    pub flipped: u64,
    sampled: Slots,
    late: Slots,
    made_up: Slots,
    made_up_neg: Slots,
    /// The hour of the first in-window sample per slot, for progress.
    first: FirstHours,
    frozen: Option<Slots>,
    /// While open: people whose first in-window sample (`true`) or first
    /// make-up (`false`) arrived after the deadline, with the arrival time.
    /// A close dated at the deadline (the scheduler's) must not count them:
    /// it sees only what had arrived by then.
    after_deadline: Vec<(Slot, Timestamp, bool)>,
    /// Retention archived it: `first` is gone, progress answers 410.
    pub archived: bool,
    /// A closed round's whole-round counts, set at the close and kept up to
    /// date as make-ups, late samples and exemptions change people's states
    /// (see `final_counts.rs`): listing rounds reads them.
    pub(super) final_counts: Option<Counts>,
}

/// Per slot, the hour (counted from the window's first hour) of the first
/// in-window sample, plus one (0: none): one byte a person for a window of
/// up to 254 hours, two beyond. Shared by clones until one writes, as the
/// sets' words are (see `bitset.rs`): 10 MB a round at 10 M residents.
#[derive(Clone, Debug)]
enum FirstHours {
    Narrow(Arc<Vec<u8>>),
    Wide(Arc<Vec<u16>>),
}

impl FirstHours {
    const HOUR: i64 = 3_600_000;

    fn for_window(opens_at: Timestamp, deadline: Timestamp) -> FirstHours {
        let start = opens_at.as_millis().div_euclid(Self::HOUR);
        let end = deadline.as_millis().div_euclid(Self::HOUR);
        if end - start < i64::from(u8::MAX) - 1 {
            FirstHours::Narrow(Arc::default())
        } else {
            FirstHours::Wide(Arc::default())
        }
    }

    /// Keeps the earlier of the hour held and `hour` (0-based).
    fn set_min(&mut self, slot: Slot, hour: i64) {
        /// `h` (1-based, never 0) at `i`, unless an earlier hour is there:
        /// then nothing is written, so shared hours are not copied.
        fn keep_min<T: Copy + Ord + Default>(v: &mut Arc<Vec<T>>, i: usize, h: T) {
            if v.get(i)
                .is_some_and(|&held| held != T::default() && held <= h)
            {
                return;
            }
            let v = Arc::make_mut(v);
            if v.len() <= i {
                v.resize(i + 1, T::default());
            }
            v[i] = h;
        }
        let i = slot as usize;
        match self {
            FirstHours::Narrow(v) => {
                keep_min(v, i, (hour + 1).clamp(1, i64::from(u8::MAX)) as u8);
            }
            FirstHours::Wide(v) => {
                keep_min(v, i, (hour + 1).clamp(1, i64::from(u16::MAX)) as u16);
            }
        }
    }

    /// The 0-based hour held for `slot`.
    fn get(&self, slot: Slot) -> Option<usize> {
        let h = match self {
            FirstHours::Narrow(v) => v.get(slot as usize).copied().map(u32::from),
            FirstHours::Wide(v) => v.get(slot as usize).copied().map(u32::from),
        };
        h.filter(|&h| h != 0).map(|h| h as usize - 1)
    }

    fn clear(&mut self) {
        match self {
            FirstHours::Narrow(v) => *v = Arc::default(),
            FirstHours::Wide(v) => *v = Arc::default(),
        }
    }
}

impl Round {
    pub(super) fn new(spec: &RoundSpec, register: &Register) -> Round {
        let mut nodes: Vec<u32> = spec.scope.iter().filter_map(|p| register.node(p)).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let all = nodes.clone();
        nodes.retain(|&n| !all.iter().any(|&o| o != n && register.is_under(n, o)));
        Round {
            id: spec.id,
            name: spec.name.clone(),
            scope: spec.scope.clone(),
            scope_nodes: nodes,
            opens_at: spec.opens_at,
            deadline: spec.deadline,
            created_at: spec.created_at,
            closed_at: None,
            flipped: 0,
            sampled: Slots::default(),
            late: Slots::default(),
            made_up: Slots::default(),
            made_up_neg: Slots::default(),
            first: FirstHours::for_window(spec.opens_at, spec.deadline),
            frozen: None,
            after_deadline: Vec::new(),
            archived: false,
            final_counts: None,
        }
    }

    /// The round without its per-person sets (for scope checks and listings).
    pub fn clone_header(&self) -> Round {
        Round {
            id: self.id,
            name: self.name.clone(),
            scope: self.scope.clone(),
            scope_nodes: self.scope_nodes.clone(),
            opens_at: self.opens_at,
            deadline: self.deadline,
            created_at: self.created_at,
            closed_at: self.closed_at,
            flipped: self.flipped,
            sampled: Slots::default(),
            late: Slots::default(),
            made_up: Slots::default(),
            made_up_neg: Slots::default(),
            first: FirstHours::Narrow(Arc::default()),
            frozen: None,
            after_deadline: Vec::new(),
            archived: self.archived,
            final_counts: self.final_counts,
        }
    }

    /// Retention: the round drops what only progress reads and packs its
    /// sets (see `slots.rs`): its counts, coverage, missing list and flags
    /// answer as before, from a few bytes per person in a sparse set rather
    /// than a bit per resident in each.
    pub(super) fn archive(&mut self) {
        self.first.clear();
        for s in [
            &mut self.sampled,
            &mut self.late,
            &mut self.made_up,
            &mut self.made_up_neg,
        ] {
            *s = s.packed();
        }
        if let Some(f) = &mut self.frozen {
            *f = f.packed();
        }
        self.archived = true;
    }

    /// Bytes the round's per-person sets hold on the heap.
    pub fn heap_bytes(&self) -> usize {
        let first = match &self.first {
            FirstHours::Narrow(v) => v.capacity(),
            FirstHours::Wide(v) => v.capacity() * 2,
        };
        [&self.sampled, &self.late, &self.made_up, &self.made_up_neg]
            .into_iter()
            .chain(self.frozen.as_ref())
            .map(Slots::heap_bytes)
            .sum::<usize>()
            + first
            + self.after_deadline.capacity() * std::mem::size_of::<(Slot, Timestamp, bool)>()
    }

    pub fn is_closed(&self) -> bool {
        self.closed_at.is_some()
    }

    /// Records one sample of `slot` collected at `ms` (milliseconds since the
    /// Unix epoch: the window is judged to the millisecond), arrived at `arrived`.
    pub(super) fn mark_sample(&mut self, slot: Slot, ms: i64, arrived: Timestamp) {
        if ms >= self.opens_at.as_millis() && ms <= self.deadline.as_millis() {
            // Hours of compact seconds, as progress counts them.
            let collected = secs::millis(secs::of(Timestamp::from_millis(ms)));
            let hour = collected.div_euclid(FirstHours::HOUR)
                - self.opens_at.as_millis().div_euclid(FirstHours::HOUR);
            if !self.archived {
                self.first.set_min(slot, hour);
            }
            if !self.sampled.set(slot) {
                if self.closed_at.is_some_and(|c| arrived > c) {
                    self.late.set(slot);
                } else if self.closed_at.is_none() && arrived > self.deadline {
                    self.after_deadline.push((slot, arrived, true));
                }
            }
        } else if ms > self.deadline.as_millis()
            && !self.made_up.set(slot)
            && self.closed_at.is_none()
            && arrived > self.deadline
        {
            self.after_deadline.push((slot, arrived, false));
        }
    }

    /// A negative result for a sample of `slot` collected at `collected`.
    pub(super) fn mark_negative(&mut self, slot: Slot, ms: i64) {
        if ms > self.deadline.as_millis() {
            self.made_up_neg.set(slot);
        }
    }

    pub(super) fn reset_samples(&mut self) {
        self.sampled.clear_all();
        self.late.clear_all();
        self.made_up.clear_all();
        self.made_up_neg.clear_all();
        self.first.clear();
        self.after_deadline.clear();
    }

    pub(super) fn freeze(&mut self, in_scope: Bitset, at: Timestamp) {
        self.frozen = Some(Slots::Dense(in_scope));
        self.closed_at = Some(at);
    }

    /// For a close dated `at`: the people whose first sample or make-up
    /// arrived after `at` — they were missing as of the close (if not
    /// exempt), and their in-window samples count as late. Returns how many
    /// of them the close found missing.
    pub(super) fn settle_after(&mut self, at: Timestamp, exempt: &Bitset) -> u64 {
        let gap = std::mem::take(&mut self.after_deadline);
        let mut sampled_late = Bitset::default();
        let mut made_up_late = Bitset::default();
        let mut slots = Vec::new();
        for &(slot, arrived, in_window) in &gap {
            if arrived > at {
                if in_window {
                    sampled_late.set(slot);
                    self.late.set(slot);
                } else {
                    made_up_late.set(slot);
                }
                slots.push(slot);
            }
        }
        slots.sort_unstable();
        slots.dedup();
        slots
            .into_iter()
            .filter(|&s| {
                self.frozen_has(s)
                    && !exempt.get(s)
                    && (!self.sampled.get(s) || sampled_late.get(s))
                    && (!self.made_up.get(s) || made_up_late.get(s))
                    // Already counted as missing by the bitsets:
                    && (self.sampled.get(s) || self.made_up.get(s))
            })
            .count() as u64
    }

    /// `slot`'s bits: sampled, late, made up.
    pub(super) fn bits_of(&self, slot: Slot) -> (bool, bool, bool) {
        (
            self.sampled.get(slot),
            self.late.get(slot),
            self.made_up.get(slot),
        )
    }

    /// Whether `slot` is in the frozen in-scope set (false while open).
    pub fn frozen_has(&self, slot: Slot) -> bool {
        self.frozen.as_ref().is_some_and(|f| f.get(slot))
    }

    /// The frozen in-scope set (`None` while open).
    pub(super) fn frozen(&self) -> Option<&Slots> {
        self.frozen.as_ref()
    }

    pub(super) fn made_up_negative(&self, slot: Slot) -> bool {
        self.made_up_neg.get(slot)
    }

    pub(super) fn state_of(&self, slot: Slot, exempt: impl FnOnce() -> bool) -> RoundState {
        if self.sampled.get(slot) {
            RoundState::Sampled {
                late: self.late.get(slot),
            }
        } else if self.made_up.get(slot) {
            RoundState::MadeUp
        } else if exempt() {
            RoundState::Exempt
        } else {
            RoundState::Missing
        }
    }

    /// At the close: the missing count, and everyone the close flags
    /// (the missing, plus under `negative_result` the made-up people whose
    /// make-up has no negative result yet).
    pub(super) fn flag_sets(&self, exempt: &Bitset, restore_on: RestoreOn) -> (u64, Bitset) {
        let frozen = self.frozen.as_ref().expect("flag_sets after freeze");
        let n = frozen.words_len();
        let mut flagged = Vec::with_capacity(n);
        let mut missing = 0u64;
        for i in 0..n {
            let base = frozen.word(i) & !self.sampled.word(i) & !exempt.word(i);
            let miss = base & !self.made_up.word(i);
            missing += u64::from(miss.count_ones());
            let mut f = miss;
            if restore_on == RestoreOn::NegativeResult {
                f |= base & self.made_up.word(i) & !self.made_up_neg.word(i);
            }
            flagged.push(f);
        }
        (missing, Bitset::from_words(flagged))
    }
}

impl Round {
    /// The round as snapshot bytes.
    pub(super) fn encode(&self, e: &mut super::snapshot::Enc) {
        e.u32(self.id);
        e.str(&self.name);
        e.len(self.scope.len());
        for p in &self.scope {
            e.str(p.as_str());
        }
        e.u32s(&self.scope_nodes);
        e.time(self.opens_at);
        e.time(self.deadline);
        e.time(self.created_at);
        e.opt_time(self.closed_at);
        e.u64(self.flipped);
        // An archived round's sets in their packed form, computed afresh:
        // the same sets give the same bytes however they were reached (a
        // packed list may have grown back into a bitset since).
        for b in [&self.sampled, &self.late, &self.made_up, &self.made_up_neg] {
            e.slots(&b.canonical(self.archived));
        }
        match &self.frozen {
            Some(f) => {
                e.bool(true);
                e.slots(&f.canonical(self.archived));
            }
            None => e.bool(false),
        }
        match &self.first {
            FirstHours::Narrow(v) => {
                e.u8(1);
                e.len(v.len());
                e.buf.extend_from_slice(v);
            }
            FirstHours::Wide(v) => {
                e.u8(2);
                e.len(v.len());
                for &h in v.iter() {
                    e.u16(h);
                }
            }
        }
        e.len(self.after_deadline.len());
        for &(slot, arrived, in_window) in &self.after_deadline {
            e.u32(slot);
            e.time(arrived);
            e.bool(in_window);
        }
        e.bool(self.archived);
    }

    /// Whether every scope node is below `nodes` (a decoded round's check).
    pub(super) fn nodes_within(&self, nodes: usize) -> bool {
        self.scope_nodes.iter().all(|&n| (n as usize) < nodes)
    }

    /// The round [`Round::encode`] wrote.
    pub(super) fn decode(d: &mut super::snapshot::Dec<'_>) -> Result<Round, String> {
        let id = d.u32()?;
        let name = d.str()?.to_owned();
        let mut scope = Vec::new();
        for _ in 0..d.len(8)? {
            scope.push(d.area()?);
        }
        let scope_nodes = d.u32s()?;
        let opens_at = d.time()?;
        let deadline = d.time()?;
        let created_at = d.time()?;
        let closed_at = d.opt_time()?;
        let flipped = d.u64()?;
        let sampled = d.slots()?;
        let late = d.slots()?;
        let made_up = d.slots()?;
        let made_up_neg = d.slots()?;
        let frozen = if d.bool()? { Some(d.slots()?) } else { None };
        let first = match d.u8()? {
            1 => {
                let n = d.len(1)?;
                FirstHours::Narrow(Arc::new((0..n).map(|_| d.u8()).collect::<Result<_, _>>()?))
            }
            2 => {
                let n = d.len(2)?;
                FirstHours::Wide(Arc::new((0..n).map(|_| d.u16()).collect::<Result<_, _>>()?))
            }
            other => return Err(format!("round {id}: first-hour kind {other}")),
        };
        let mut after_deadline = Vec::new();
        for _ in 0..d.len(13)? {
            after_deadline.push((d.u32()?, d.time()?, d.bool()?));
        }
        let archived = d.bool()?;
        Ok(Round {
            id,
            name,
            scope,
            scope_nodes,
            opens_at,
            deadline,
            created_at,
            closed_at,
            flipped,
            sampled,
            late,
            made_up,
            made_up_neg,
            first,
            frozen,
            after_deadline,
            archived,
            final_counts: None,
        })
    }
}

/// The in-scope set of an open round right now: active residents under a scope node.
///
/// The scope's rows are cut into one part per thread of the pool; each part
/// sets its bits straight into its own words (slots follow rows closely, so
/// the writes stream), and the parts are OR'ed together.
pub(super) fn scope_bits(round: &Round, register: &Register) -> Bitset {
    const PIECE: usize = 1 << 16;
    let rows = register.rows();
    let words = register.slots().div_ceil(64);
    let pieces: Vec<&[super::register::Row]> = round
        .scope_nodes
        .iter()
        .flat_map(|&n| {
            let node = &register.nodes()[n as usize];
            rows[node.start as usize..node.end as usize].chunks(PIECE)
        })
        .collect();
    let parts = rayon::current_num_threads().max(1);
    let per_part = pieces.len().div_ceil(parts).max(1);
    pieces
        .par_chunks(per_part)
        .map(|part| {
            let mut w = vec![0u64; words];
            for r in part.iter().flat_map(|p| p.iter()) {
                w[(r.slot >> 6) as usize] |= u64::from(r.active) << (r.slot & 63);
            }
            w
        })
        .reduce_with(|mut a, b| {
            a.iter_mut().zip(b).for_each(|(x, y)| *x |= y);
            a
        })
        .map_or_else(Bitset::default, Bitset::from_words)
}

const CHUNK: usize = 1 << 15;

impl Engine {
    /// Row ranges to scan for a round (within `area` when given), and
    /// whether membership is the frozen set (closed) or "active" (open).
    fn scan_ranges(&self, round: &Round, area: Option<u32>) -> Vec<(u32, u32)> {
        let nodes = self.register.nodes();
        let area_range = area.map(|a| (nodes[a as usize].start, nodes[a as usize].end));
        if round.frozen.is_some() {
            return vec![area_range.unwrap_or((0, self.register.rows().len() as u32))];
        }
        round
            .scope_nodes
            .iter()
            .filter_map(|&n| {
                let (s, e) = (nodes[n as usize].start, nodes[n as usize].end);
                let (s, e) = match area_range {
                    Some((a, b)) => (s.max(a), e.min(b)),
                    None => (s, e),
                };
                (s < e).then_some((s, e))
            })
            .collect()
    }

    fn in_round(&self, round: &Round, row: u32) -> bool {
        let r = &self.register.rows()[row as usize];
        match &round.frozen {
            Some(f) => f.get(r.slot),
            None => r.active,
        }
    }

    fn count_rows(&self, bits: &StateBits<'_>, from: u32, to: u32) -> Counts {
        let mut t = Tally::default();
        bits.tally(&mut t, &self.register.rows()[from as usize..to as usize]);
        t.counts()
    }

    fn chunks(ranges: &[(u32, u32)]) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for &(s, e) in ranges {
            let mut a = s;
            while a < e {
                let b = (a as usize + CHUNK).min(e as usize) as u32;
                out.push((a, b));
                a = b;
            }
        }
        out
    }

    /// The round's counts, over the whole round or under one area node.
    pub fn counts(&self, round: &Round, area: Option<u32>) -> Counts {
        if area.is_none()
            && let Some(frozen) = &round.frozen
        {
            return round
                .final_counts
                .unwrap_or_else(|| self.closed_counts(round, frozen));
        }
        let chunks = Self::chunks(&self.scan_ranges(round, area));
        let bits = StateBits::new(self, round);
        self.pool.install(|| {
            chunks
                .par_iter()
                .map(|&(a, b)| self.count_rows(&bits, a, b))
                .reduce(Counts::default, |mut x, y| {
                    x.add(&y);
                    x
                })
        })
    }

    /// Whole-round counts of a closed round, word by word over the bitsets.
    pub(super) fn closed_counts(&self, round: &Round, frozen: &Slots) -> Counts {
        let exempt = self.exempt_bits(round);
        let mut c = Counts::default();
        for i in 0..frozen.words_len() {
            let f = frozen.word(i);
            if f == 0 {
                continue;
            }
            let s = f & round.sampled.word(i);
            let m = f & !s & round.made_up.word(i);
            let e = f & !s & !m & exempt.word(i);
            c.in_scope += u64::from(f.count_ones());
            c.sampled += u64::from(s.count_ones());
            c.late += u64::from((s & round.late.word(i)).count_ones());
            c.made_up += u64::from(m.count_ones());
            c.exempt += u64::from(e.count_ones());
        }
        c.missing = c.in_scope - c.sampled - c.made_up - c.exempt;
        c
    }

    /// Coverage of `area` and its descendants `depth` levels down; children
    /// are the child nodes with at least one resident in scope, by path.
    ///
    /// The subtree's nodes, in depth-first order, own consecutive runs of
    /// rows (rows are sorted by node rank). One parallel pass over those runs
    /// tallies every node's own rows branch-free from the round's bitsets;
    /// a prefix sum over the depth-first order then gives any node's subtree
    /// as a difference (its subtree is the next `size` places). Only the
    /// answer's nodes are built. A city has about one node per ten residents:
    /// nothing here may cost more per node than a few adds.
    pub fn coverage(&self, round: &Round, area: u32, depth: u32) -> CoverageNode {
        // Small under test, so the property test's cities cross task edges.
        const NODES_PER_TASK: usize = if cfg!(test) { 3 } else { 1 << 12 };
        let nodes = self.register.nodes();
        let rows = self.register.rows();
        let (first, ends) = self.register.subtree_row_ends(area);
        let mut scope = self.scan_ranges(round, Some(area));
        scope.sort_unstable();
        let bits = StateBits::new(self, round);
        // sums[i + 1] = the own tallies of places 0..=i, once summed.
        let mut sums = vec![Tally::default(); ends.len() + 1];
        self.pool.install(|| {
            sums[1..]
                .par_chunks_mut(NODES_PER_TASK)
                .enumerate()
                .for_each(|(k, out)| {
                    let i0 = k * NODES_PER_TASK;
                    let mut row = if i0 == 0 { first } else { ends[i0 - 1] };
                    let mut sc = scope.partition_point(|&(_, e)| e <= row);
                    for (t, &end) in out.iter_mut().zip(&ends[i0..]) {
                        // The node's own rows, clipped to the scanned ranges
                        // (sorted; one that runs past `end` is kept for the
                        // next node).
                        while let Some(&(s, e)) = scope.get(sc) {
                            if s >= end {
                                break;
                            }
                            let (x, y) = (s.max(row), e.min(end));
                            if x < y {
                                bits.tally(t, &rows[x as usize..y as usize]);
                            }
                            if e > end {
                                break;
                            }
                            sc += 1;
                        }
                        row = end;
                    }
                });
        });
        for i in 1..sums.len() {
            let prev = sums[i - 1];
            sums[i].add(&prev);
        }
        let base = nodes[area as usize].rank;
        let count = |n: u32| {
            let node = &nodes[n as usize];
            let i = (node.rank - base) as usize;
            sums[i + node.size as usize].minus(&sums[i]).counts()
        };
        self.pool
            .install(|| self.coverage_tree(area, depth, &count))
    }

    /// The answer's node `n`: its children in parallel where the subtree is
    /// large (building a million answer nodes is mostly allocation).
    fn coverage_tree(
        &self,
        n: u32,
        depth: u32,
        count: &(impl Fn(u32) -> Counts + Sync),
    ) -> CoverageNode {
        let nodes = self.register.nodes();
        let node = &nodes[n as usize];
        let kept = |c: &&u32| count(**c).in_scope > 0;
        let build = |&c: &u32| self.coverage_tree(c, depth - 1, count);
        // Children are kept sorted by segment, which for siblings is plain
        // path order.
        let children: Vec<CoverageNode> = if depth == 0 {
            Vec::new()
        } else if node.size > 4096 {
            node.children.par_iter().filter(kept).map(build).collect()
        } else {
            node.children.iter().filter(kept).map(build).collect()
        };
        debug_assert!(children.is_sorted_by(|a, b| a.area.as_str() < b.area.as_str()));
        CoverageNode {
            area: node.path.clone(),
            counts: count(n),
            children,
        }
    }

    /// The people still `missing` (under `area` when given), sorted by area,
    /// household, name (plain string order).
    pub fn missing(&self, round: &Round, area: Option<u32>) -> Vec<MissingPerson> {
        let chunks = Self::chunks(&self.scan_ranges(round, area));
        let rows = self.register.rows();
        let mut out: Vec<u32> = self.pool.install(|| {
            chunks
                .par_iter()
                .flat_map_iter(|&(a, b)| {
                    (a..b).filter(move |&row| {
                        self.in_round(round, row)
                            && self.state_in(round, rows[row as usize].slot) == RoundState::Missing
                    })
                })
                .collect()
        });
        // Tree order already groups by area; plain string order differs only
        // for segments holding characters below '/', so a stable sort fixes
        // those and costs little on sorted input.
        out.par_sort_by(|&a, &b| self.list_order(a, b));
        out
    }

    /// The order of people in lists: by area, household, name (plain string
    /// order). Equal people keep their row order under a stable sort.
    pub fn list_order(&self, a: u32, b: u32) -> std::cmp::Ordering {
        let reg = &self.register;
        let rows = reg.rows();
        let (ra, rb) = (&rows[a as usize], &rows[b as usize]);
        let pa = reg.nodes()[ra.node as usize].path.as_str();
        let pb = reg.nodes()[rb.node as usize].path.as_str();
        pa.cmp(pb)
            .then_with(|| reg.household(ra.household).cmp(reg.household(rb.household)))
            .then_with(|| reg.name_of(ra).cmp(reg.name_of(rb)))
    }

    /// In-scope people by the hour of their first in-window sample, every
    /// hour from the window's first to its last (or the current one).
    pub fn progress(
        &self,
        round: &Round,
        area: Option<u32>,
        now: Timestamp,
    ) -> Vec<(Timestamp, u64)> {
        const HOUR: i64 = 3_600_000;
        let start = round.opens_at.as_millis().div_euclid(HOUR) * HOUR;
        let end_t = if round.is_closed() || now >= round.deadline {
            round.deadline
        } else {
            // Up to the current hour — or the next, when a sample was
            // collected a little in the future (clock skew is accepted up to
            // FUTURE_SLACK_MS), so every sampled person is in some bucket.
            now.plus_millis(super::FUTURE_SLACK_MS)
                .min(round.deadline)
                .max(round.opens_at)
        };
        let end = end_t.as_millis().div_euclid(HOUR) * HOUR;
        let hours = ((end - start) / HOUR + 1).clamp(1, 24 * 400) as usize;
        let chunks = Self::chunks(&self.scan_ranges(round, area));
        let rows = self.register.rows();
        let buckets = self.pool.install(|| {
            chunks
                .par_iter()
                .map(|&(a, b)| {
                    let mut v = vec![0u64; hours];
                    for row in a..b {
                        if !self.in_round(round, row) {
                            continue;
                        }
                        let slot = rows[row as usize].slot;
                        if let Some(h) = round.first.get(slot)
                            && round.sampled.get(slot)
                            && h < hours
                        {
                            v[h] += 1;
                        }
                    }
                    v
                })
                .reduce(
                    || vec![0u64; hours],
                    |mut x, y| {
                        x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
                        x
                    },
                )
        });
        buckets
            .into_iter()
            .enumerate()
            .map(|(i, n)| (Timestamp::from_millis(start + i as i64 * HOUR), n))
            .collect()
    }

    /// Whether a round's scope lies inside `area` (an official may manage it).
    pub fn round_inside(round: &Round, area: &AreaPath) -> bool {
        round.scope.iter().all(|s| area.is_prefix_of(s))
    }

    /// The round's counts over the part of it inside `area` (an official's
    /// view): the whole round's when its scope lies inside `area`, else the
    /// same numbers as `coverage` of `area` at depth 0 — a scan of `area`'s
    /// rows only, never of the whole round.
    pub fn counts_within(&self, round: &Round, area: &AreaPath) -> Counts {
        if Self::round_inside(round, area) {
            return self.counts(round, None);
        }
        match self.register.node(area) {
            Some(n) if n != NONE => self.counts(round, Some(n)),
            _ => Counts::default(),
        }
    }

    /// Whether a round's scope overlaps `area` (an official may list it).
    pub fn round_overlaps(round: &Round, area: &AreaPath) -> bool {
        round
            .scope
            .iter()
            .any(|s| area.is_prefix_of(s) || s.is_prefix_of(area))
    }

    /// The lowest area node holding the whole scope (coverage's default).
    pub fn scope_root(&self, round: &Round) -> Option<u32> {
        let mut it = round.scope.iter();
        let first = it.next()?.clone();
        let mut root = first;
        for p in it {
            while !root.is_prefix_of(p) {
                root = root.parent()?;
            }
        }
        self.register.node(&root).filter(|&n| n != NONE)
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::Timestamp;
    use crate::engine::tests::support::*;
    use crate::engine::{Counts, CoverageNode, Policy};

    fn opens() -> Timestamp {
        t("2022-04-19T08:00:00+08:00")
    }

    /// Residents under 甲 in areas whose plain string order differs from
    /// tree order (' ' and '-' sort before '/').
    fn city() -> (Fx, u32) {
        let mut fx = Fx::new(Policy::default());
        fx.register(
            vec![
                row(1, "甲/a/1", "2", "王"),
                row(2, "甲/a/1", "10", "李"),
                row(3, "甲/a/1", "10", "A"),
                row(4, "甲/a", "1", "王"),
                row(5, "甲/a-b/1", "1", "王"),
                row(6, "甲/a b", "1", "王"),
                row(7, "甲/b", "1", "王"),
                row(8, "乙/x", "1", "王"),
            ],
            opens(),
        );
        let r = fx.round(&["甲"], opens(), opens().plus_millis(12 * HOUR), opens());
        (fx, r)
    }

    fn shape(c: &CoverageNode) -> String {
        let kids: Vec<String> = c.children.iter().map(shape).collect();
        if kids.is_empty() {
            format!("{}:{}", c.area.leaf(), c.counts.in_scope)
        } else {
            format!(
                "{}:{}({})",
                c.area.leaf(),
                c.counts.in_scope,
                kids.join(" ")
            )
        }
    }

    fn coverage(fx: &Fx, r: u32, path: &str, depth: u32) -> CoverageNode {
        let e = &fx.engine;
        e.coverage(
            e.round(r).unwrap(),
            e.register().node(&area(path)).unwrap(),
            depth,
        )
    }

    #[test]
    fn the_missing_list_is_sorted_by_area_household_name_in_plain_string_order() {
        let (fx, r) = city();
        let expected = [4, 6, 5, 3, 2, 1, 7].map(pid).to_vec();
        assert_eq!(fx.missing(r, None), expected);
        assert_eq!(fx.missing(r, Some("甲/a")), [4, 3, 2, 1].map(pid).to_vec());
        let mut fx = fx;
        fx.close(r, opens().plus_millis(HOUR));
        assert_eq!(fx.missing(r, None), expected, "the same order once closed");
        assert!(fx.missing(r, Some("乙")).is_empty(), "outside the scope");
    }

    /// Counts add up at every node.
    fn counts_add_up(c: &CoverageNode) {
        let k = c.counts;
        assert_eq!(k.in_scope, k.sampled + k.made_up + k.exempt + k.missing);
        if !c.children.is_empty() {
            let sum: u64 = c.children.iter().map(|x| x.counts.in_scope).sum();
            assert!(sum <= k.in_scope, "own residents make up the rest");
        }
        c.children.iter().for_each(counts_add_up);
    }

    #[test]
    fn coverage_lists_children_with_someone_in_scope_sorted_by_path_at_every_depth() {
        let (mut fx, r) = city();
        fx.heads(vec![head("甲/c", "长", "无人")], opens()); // a node with nobody in it
        let c = coverage(&fx, r, "甲", 10);
        assert_eq!(shape(&c), "甲:7(a:4(1:3) a b:1 a-b:1(1:1) b:1)");
        assert_eq!(
            shape(&coverage(&fx, r, "甲", 1)),
            "甲:7(a:4 a b:1 a-b:1 b:1)"
        );
        assert_eq!(shape(&coverage(&fx, r, "甲", 0)), "甲:7");
        assert_eq!(
            shape(&coverage(&fx, r, "乙", 3)),
            "乙:0",
            "outside the scope: nothing"
        );
        fx.records(
            vec![rec(1, "T1", opens().plus_millis(HOUR))],
            opens().plus_millis(HOUR),
        );
        fx.close(r, opens().plus_millis(2 * HOUR));
        let c = coverage(&fx, r, "甲", 10);
        counts_add_up(&c);
        assert_eq!(
            coverage(&fx, r, "甲/a/1", 0).counts,
            Counts {
                in_scope: 3,
                sampled: 1,
                late: 0,
                made_up: 0,
                exempt: 0,
                missing: 2
            }
        );
    }

    #[test]
    fn coverage_of_a_closed_round_keeps_people_who_moved_out_where_they_lived() {
        let (mut fx, r) = city();
        fx.close(r, opens().plus_millis(HOUR));
        fx.move_out(5, opens().plus_millis(2 * HOUR));
        assert_eq!(coverage(&fx, r, "甲/a-b", 0).counts.missing, 1);
        assert_eq!(fx.counts(r).in_scope, 7);
    }

    #[test]
    fn progress_buckets_first_samples_by_hour_with_empty_hours_as_zero() {
        let (mut fx, r) = city();
        let o = opens();
        fx.records(
            vec![
                rec(1, "T1", o),
                rec(1, "T2", o.plus_millis(3 * HOUR)), // not the first: ignored
                rec(2, "T3", o.plus_millis(2 * HOUR + 59 * MIN)),
                rec(3, "T4", o.plus_millis(-MIN)), // before the window
                rec(8, "T5", o.plus_millis(MIN)),  // out of scope
            ],
            o.plus_millis(3 * HOUR),
        );
        let now = o.plus_millis(3 * HOUR + 30 * MIN);
        let e = &fx.engine;
        let p = e.progress(e.round(r).unwrap(), None, now);
        let hours: Vec<(Timestamp, u64)> = (0..4)
            .map(|h| (o.plus_millis(h * HOUR), [1, 0, 1, 0][h as usize]))
            .collect();
        assert_eq!(p, hours, "to the current hour while open");
        let a1 = e.register().node(&area("甲/a/1")).unwrap();
        assert_eq!(e.progress(e.round(r).unwrap(), Some(a1), now)[2].1, 1);
        // Once past the deadline, every hour of the window.
        let p = e.progress(e.round(r).unwrap(), None, o.plus_millis(2 * 24 * HOUR));
        assert_eq!(p.len(), 13);
        assert_eq!(p.last().unwrap().0, o.plus_millis(12 * HOUR));
        // Before the window opens, its first hour alone.
        assert_eq!(
            e.progress(e.round(r).unwrap(), None, o.plus_millis(-5 * HOUR)),
            vec![(o, 1)]
        );
    }
}
