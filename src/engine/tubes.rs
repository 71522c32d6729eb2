//! Tubes: who was sampled into which tube, at which site, and the tube's lab
//! result (kept even when it arrives before any record).
//!
//! Stored flat, because a 30-day window holds tens of millions of records
//! (issue 13 aims at ≤ 16 B a record): a record is one row of three
//! parallel member arrays (person slot, second, millisecond: 10 B), each tube
//! owning one contiguous range of them; tube IDs sit back to back in one byte
//! array and are found through a table of tube indices hashed by those bytes;
//! a tube's own fields, where its ID sits included, are one 24-byte row.
//! Nothing is allocated per tube or per record. A tube that gains a member
//! while its range is not the last one moves its range to the end; ranges
//! nobody owns any more (moved, or dropped by retention) are squeezed out by
//! [`Tubes::prune`] once they are a sixteenth of the arrays. Every array but
//! the index is chunked ([`Chunked`]), so a snapshot's copy
//! ([`Tubes::frozen`]) shares them rather than copying them.

use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap};

use super::chunked::Chunked;
use super::register::{NONE, Slot};
use crate::domain::{TestResult, TubeId};

/// One person's sample in a tube. Times are compact seconds (see `secs`)
/// plus the milliseconds within that second: a round's window is judged to
/// the millisecond (a sample 300 ms after the deadline is a make-up, not an
/// on-time sample), while per-person times (last sample, last negative) are
/// kept to the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    pub slot: Slot,
    pub collected: u32,
    pub sub_ms: u16,
}

impl Member {
    pub fn new(slot: Slot, collected: crate::domain::Timestamp) -> Member {
        Member {
            slot,
            collected: super::secs::of(collected),
            sub_ms: collected.as_millis().rem_euclid(1000) as u16,
        }
    }

    /// When the sample was collected, in milliseconds since the Unix epoch.
    pub fn collected_ms(&self) -> i64 {
        super::secs::millis(self.collected) + i64::from(self.sub_ms)
    }
}

/// A tube's own fields; its members are `start..start + len` of the arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Meta {
    start: u32,
    len: u32,
    /// Index into the site table; `NONE` until a record arrives.
    site: u32,
    /// The latest sample or report time the tube has seen (compact seconds):
    /// once older than the acceptance window, nothing can touch it again.
    touched: u32,
    /// The tube's ID: `id_len` bytes of `ids` from `id_at` (in one chunk).
    id_at: u32,
    result: Option<TestResult>,
    id_len: u8,
}

#[derive(Debug, Default)]
pub struct Tubes {
    /// Tube indices, hashed by their IDs' bytes. Not in a snapshot's copy
    /// (a decode rebuilds it).
    ix: HashTable<u32>,
    /// Every tube's ID, back to back (but never across a chunk's end).
    ids: Chunked<u8>,
    meta: Chunked<Meta>,
    /// The member arrays (see the module doc).
    slot: Chunked<u32>,
    secs: Chunked<u32>,
    ms: Chunked<u16>,
    /// Member rows no tube owns (moved or dropped), until the next squeeze.
    dead: usize,
    sites: Vec<Box<str>>,
    site_ix: FxHashMap<Box<str>, u32>,
}

fn hash(id: &[u8]) -> u64 {
    let mut h = FxBuildHasher.build_hasher();
    h.write(id);
    h.finish()
}

fn id_of<'a>(ids: &'a Chunked<u8>, meta: &Chunked<Meta>, t: u32) -> &'a [u8] {
    let m = meta.get(t as usize);
    ids.slice(m.id_at as usize, usize::from(m.id_len))
}

fn index(n: usize) -> u32 {
    u32::try_from(n).expect("tube storage past 4 G entries")
}

impl Tubes {
    /// The index of tube `id`, if held.
    pub fn find(&self, id: &str) -> Option<u32> {
        let (ids, meta) = (&self.ids, &self.meta);
        self.ix
            .find(hash(id.as_bytes()), |&t| {
                id_of(ids, meta, t) == id.as_bytes()
            })
            .copied()
    }

    /// The index of tube `id` (a valid tube ID), creating it if new.
    pub fn intern(&mut self, id: &str) -> u32 {
        if let Some(t) = self.find(id) {
            return t;
        }
        assert!(
            TubeId::validate(id).is_ok(),
            "the engine is given valid tube IDs"
        );
        let t = index(self.meta.len());
        self.push_tube(
            id.as_bytes(),
            Meta {
                start: 0,
                len: 0,
                site: NONE,
                touched: 0,
                id_at: 0,
                result: None,
                id_len: 0,
            },
        );
        let (ids, meta) = (&self.ids, &self.meta);
        self.ix
            .insert_unique(hash(id.as_bytes()), t, |&x| hash(id_of(ids, meta, x)));
        t
    }

    /// Appends a tube with ID `id` and fields `m` (where its ID sits aside),
    /// leaving the index to the caller.
    fn push_tube(&mut self, id: &[u8], m: Meta) {
        let id_len = u8::try_from(id.len()).expect("tube IDs are short");
        let id_at = index(self.ids.push_unsplit(id, 0));
        self.meta.push(Meta { id_at, id_len, ..m });
    }

    /// Tube `t`'s ID.
    pub fn id(&self, t: u32) -> &str {
        std::str::from_utf8(id_of(&self.ids, &self.meta, t)).expect("tube IDs are ASCII")
    }

    /// How many members tube `t` holds.
    pub fn members_len(&self, t: u32) -> u32 {
        self.meta.get(t as usize).len
    }

    /// Tube `t`'s site (an index into the site table), `NONE` before any record.
    pub fn site_of(&self, t: u32) -> u32 {
        self.meta.get(t as usize).site
    }

    pub fn result(&self, t: u32) -> Option<TestResult> {
        self.meta.get(t as usize).result
    }

    fn range(&self, t: u32) -> std::ops::Range<usize> {
        let m = self.meta.get(t as usize);
        m.start as usize..(m.start + m.len) as usize
    }

    fn member_at(&self, i: usize) -> Member {
        Member {
            slot: self.slot.get(i),
            collected: self.secs.get(i),
            sub_ms: self.ms.get(i),
        }
    }

    /// Whether `slot` is a member of tube `t`.
    pub fn has(&self, t: u32, slot: Slot) -> bool {
        self.slot
            .slices(self.range(t))
            .any(|rows| rows.contains(&slot))
    }

    /// Tube `t`'s members, in the order they came.
    pub fn members(&self, t: u32) -> impl Iterator<Item = Member> + '_ {
        self.range(t).map(|i| self.member_at(i))
    }

    /// Every member of every tube, with its tube's result.
    pub fn all_members(&self) -> impl Iterator<Item = (Member, Option<TestResult>)> + '_ {
        self.meta.iter().flat_map(move |m| {
            (m.start as usize..(m.start + m.len) as usize)
                .map(move |i| (self.member_at(i), m.result))
        })
    }

    /// Adds a member to tube `t`: at the end of the arrays, moving the
    /// tube's range there first unless it already is the last one.
    pub fn push(&mut self, t: u32, m: Member) {
        let end = self.slot.len();
        let meta = self.meta.get(t as usize);
        if meta.len == 0 {
            self.meta.get_mut(t as usize).start = index(end);
        } else if (meta.start + meta.len) as usize != end {
            let r = meta.start as usize..(meta.start + meta.len) as usize;
            self.slot.extend_from_within(r.clone());
            self.secs.extend_from_within(r.clone());
            self.ms.extend_from_within(r);
            self.dead += meta.len as usize;
            self.meta.get_mut(t as usize).start = index(end);
        }
        self.slot.push(m.slot);
        self.secs.push(m.collected);
        self.ms.push(m.sub_ms);
        let meta = self.meta.get_mut(t as usize);
        meta.len += 1;
        meta.touched = meta.touched.max(m.collected);
    }

    /// Gives tube `t` its site unless it has one.
    pub fn set_site_once(&mut self, t: u32, site: u32) {
        let m = self.meta.get_mut(t as usize);
        if m.site == NONE {
            m.site = site;
        }
    }

    /// Notes that tube `t` was touched at `secs` (compact seconds).
    pub fn touch(&mut self, t: u32, secs: u32) {
        let m = self.meta.get_mut(t as usize);
        m.touched = m.touched.max(secs);
    }

    pub fn set_result(&mut self, t: u32, result: TestResult) {
        self.meta.get_mut(t as usize).result = Some(result);
    }

    pub fn site_ix(&self, site: &str) -> Option<u32> {
        self.site_ix.get(site).copied()
    }

    pub fn intern_site(&mut self, site: &str) -> u32 {
        if let Some(&s) = self.site_ix.get(site) {
            return s;
        }
        let s = self.sites.len() as u32;
        self.sites.push(site.into());
        self.site_ix.insert(site.into(), s);
        s
    }

    pub fn site_name(&self, ix: u32) -> &str {
        &self.sites[ix as usize]
    }

    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Bytes the tube storage holds on the heap (its arrays' chunks and
    /// the index table; the site table aside).
    pub fn heap_bytes(&self) -> usize {
        self.ix.allocation_size()
            + self.ids.heap_bytes()
            + self.meta.heap_bytes()
            + self.slot.heap_bytes()
            + self.secs.heap_bytes()
            + self.ms.heap_bytes()
    }

    /// Drops every tube last touched before `cutoff` (compact seconds); the
    /// site table (a few hundred names) stays. Returns each old index's new
    /// one (`NONE` when dropped), for whoever holds tube indices, and how
    /// many members were dropped with them.
    pub fn prune(&mut self, cutoff: u32) -> (Vec<u32>, u64) {
        let mut remap = Vec::with_capacity(self.meta.len());
        let mut next = 0u32;
        let mut dropped = 0u64;
        for m in self.meta.iter() {
            if m.touched < cutoff {
                remap.push(NONE);
                dropped += u64::from(m.len);
            } else {
                remap.push(next);
                next += 1;
            }
        }
        if next as usize == self.meta.len() {
            return (remap, 0);
        }
        // The kept IDs go to fresh chunks; the rows move down in index
        // order, so a move never overwrites what is still to be read.
        let old_ids = std::mem::take(&mut self.ids);
        for (t, &to) in remap.iter().enumerate() {
            if to != NONE {
                let m = self.meta.get(t);
                let id = old_ids.slice(m.id_at as usize, usize::from(m.id_len));
                let id_at = index(self.ids.push_unsplit(id, 0));
                *self.meta.get_mut(to as usize) = Meta { id_at, ..m };
            }
        }
        drop(old_ids);
        self.meta.truncate(next as usize);
        self.ix.retain(|t| {
            *t = remap[*t as usize];
            *t != NONE
        });
        self.dead += dropped as usize;
        if self.dead > 0 && self.dead * 16 >= self.slot.len() {
            self.squeeze();
        }
        (remap, dropped)
    }

    /// Moves every owned range down over the unowned ones, in the order of
    /// their starts, and gives the memory left at the end back.
    fn squeeze(&mut self) {
        let mut order: Vec<u32> = (0..index(self.meta.len()))
            .filter(|&t| self.meta.get(t as usize).len > 0)
            .collect();
        order.sort_unstable_by_key(|&t| self.meta.get(t as usize).start);
        for t in 0..self.meta.len() {
            if self.meta.get(t).len == 0 {
                self.meta.get_mut(t).start = 0;
            }
        }
        let mut kept = Vec::with_capacity(order.len());
        let mut w = 0usize;
        for t in order {
            let m = self.meta.get_mut(t as usize);
            kept.push((m.start, m.len));
            m.start = index(w);
            w += m.len as usize;
        }
        let ranges = || kept.iter().map(|&(s, n)| s as usize..(s + n) as usize);
        self.slot.keep(ranges());
        self.secs.keep(ranges());
        self.ms.keep(ranges());
        let (ids, meta) = (&self.ids, &self.meta);
        self.ix.shrink_to_fit(|&x| hash(id_of(ids, meta, x)));
        self.dead = 0;
    }

    /// A copy for a snapshot to encode (see [`crate::engine::Frozen`]):
    /// every array is shared rather than copied ([`Chunked::share`]), the
    /// site table (a few hundred names) is copied, and the ID index, which a
    /// snapshot does not hold, is left out: the copy can be encoded, not
    /// searched.
    pub(super) fn frozen(&mut self) -> Tubes {
        Tubes {
            ix: HashTable::new(),
            ids: self.ids.share(),
            meta: self.meta.share(),
            slot: self.slot.share(),
            secs: self.secs.share(),
            ms: self.ms.share(),
            dead: self.dead,
            sites: self.sites.clone(),
            site_ix: self.site_ix.clone(),
        }
    }

    /// The tubes as snapshot bytes, by index, with the site table: whole
    /// arrays, each member range written in tube order.
    pub(super) fn encode(&self, e: &mut super::snapshot::Enc) {
        e.len(self.sites.len());
        for s in &self.sites {
            e.str(s);
        }
        let mut ids = Vec::with_capacity(self.ids.len());
        let id_end: Vec<u32> = (0..index(self.meta.len()))
            .map(|t| {
                ids.extend_from_slice(id_of(&self.ids, &self.meta, t));
                index(ids.len())
            })
            .collect();
        e.bytes(&ids);
        e.u32s(&id_end);
        let col = |f: fn(Meta) -> u32| self.meta.iter().map(f).collect::<Vec<u32>>();
        e.u32s(&col(|m| m.len));
        e.u32s(&col(|m| m.site));
        e.u32s(&col(|m| m.touched));
        let results: Vec<u8> = self
            .meta
            .iter()
            .map(|m| super::snapshot::result_code(m.result))
            .collect();
        e.bytes(&results);
        let owned = self.slot.len() - self.dead;
        let (mut slot, mut secs, mut ms) = (
            Vec::with_capacity(owned),
            Vec::with_capacity(owned),
            Vec::with_capacity(owned),
        );
        for t in 0..index(self.meta.len()) {
            let r = self.range(t);
            self.slot
                .slices(r.clone())
                .for_each(|s| slot.extend_from_slice(s));
            self.secs
                .slices(r.clone())
                .for_each(|s| secs.extend_from_slice(s));
            self.ms.slices(r).for_each(|s| ms.extend_from_slice(s));
        }
        e.u32s(&slot);
        e.u32s(&secs);
        e.u16s(&ms);
    }

    /// The tubes [`Tubes::encode`] wrote, for a register of `slots` people.
    pub(super) fn decode(d: &mut super::snapshot::Dec<'_>, slots: usize) -> Result<Tubes, String> {
        let mut tubes = Tubes::default();
        for i in 0..d.len(8)? {
            let s = d.str()?;
            if tubes.intern_site(s) as usize != i {
                return Err(format!("site {s:?} twice"));
            }
        }
        let ids = d.bytes()?;
        let id_end = d.u32s()?;
        let n = id_end.len();
        let lens = d.u32s()?;
        let sites = d.u32s()?;
        let touched = d.u32s()?;
        let results = d.bytes()?;
        if lens.len() != n || sites.len() != n || touched.len() != n || results.len() != n {
            return Err("tube columns of different lengths".into());
        }
        tubes.slot = d.u32s_chunked()?;
        tubes.secs = d.u32s_chunked()?;
        tubes.ms = d.u16s_chunked()?;
        let members = tubes.slot.len();
        if tubes.secs.len() != members || tubes.ms.len() != members {
            return Err("member columns of different lengths".into());
        }
        if tubes
            .slot
            .slices(0..members)
            .flatten()
            .any(|&s| s as usize >= slots)
            || tubes.ms.slices(0..members).flatten().any(|&m| m >= 1000)
        {
            return Err("a tube member out of range".into());
        }
        tubes.ix.reserve(n, |_| 0);
        let mut start = 0u64;
        let mut prev_end = 0u32;
        for t in 0..n {
            let end = id_end[t];
            if end < prev_end || end as usize > ids.len() {
                return Err(format!("tube {t}'s ID out of range"));
            }
            let id = &ids[prev_end as usize..end as usize];
            prev_end = end;
            let id = std::str::from_utf8(id).map_err(|e| format!("tube {t}: {e}"))?;
            TubeId::validate(id).map_err(|e| format!("tube {id:?}: {e}"))?;
            if sites[t] != NONE && sites[t] as usize >= tubes.sites.len() {
                return Err(format!("tube {id} names site {}", sites[t]));
            }
            tubes.push_tube(
                id.as_bytes(),
                Meta {
                    // An empty tube's range is 0..0 wherever it sits, so no
                    // squeeze (which moves only owned rows) can leave it
                    // past the end of the arrays.
                    start: if lens[t] == 0 {
                        0
                    } else {
                        index(start as usize)
                    },
                    len: lens[t],
                    site: sites[t],
                    touched: touched[t],
                    id_at: 0,
                    result: super::snapshot::result_of(results[t])?,
                    id_len: 0,
                },
            );
            let (tube_ids, meta) = (&tubes.ids, &tubes.meta);
            match tubes.ix.entry(
                hash(id.as_bytes()),
                |&x| id_of(tube_ids, meta, x) == id.as_bytes(),
                |&x| hash(id_of(tube_ids, meta, x)),
            ) {
                hashbrown::hash_table::Entry::Occupied(_) => {
                    return Err(format!("tube {id} twice"));
                }
                hashbrown::hash_table::Entry::Vacant(v) => {
                    v.insert(t as u32);
                }
            }
            start += u64::from(lens[t]);
        }
        if prev_end as usize != ids.len() || start != members as u64 {
            return Err("tube IDs or members left over".into());
        }
        Ok(tubes)
    }

    /// Feeds every tube — ID, members, site, result, last touch — to `h` in
    /// the order of the IDs (for digests: independent of indices and of
    /// where the ranges sit).
    pub fn digest(&self, h: &mut impl Hasher) {
        use std::hash::Hash;
        let mut order: Vec<u32> = (0..index(self.meta.len())).collect();
        order.sort_unstable_by(|&a, &b| self.id(a).cmp(self.id(b)));
        for t in order {
            self.id(t).hash(h);
            let m = self.meta.get(t as usize);
            (m.site, m.touched, m.result, m.len).hash(h);
            for member in self.members(t) {
                member.hash(h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(slot: Slot, collected: u32) -> Member {
        Member {
            slot,
            collected,
            sub_ms: (slot % 1000) as u16,
        }
    }

    fn members(t: &Tubes, id: &str) -> Vec<Member> {
        t.members(t.find(id).expect("held")).collect()
    }

    fn encoded(t: &Tubes) -> Vec<u8> {
        let mut e = crate::engine::snapshot::Enc::default();
        t.encode(&mut e);
        e.buf
    }

    /// The tubes `bytes` encode, for a register of `slots` people.
    fn decoded(bytes: &[u8], slots: usize) -> Result<Tubes, String> {
        Tubes::decode(&mut crate::engine::snapshot::Dec::new(bytes), slots)
    }

    #[test]
    fn interleaved_members_move_their_tube_to_the_end_and_keep_their_order() {
        let mut t = Tubes::default();
        let (a, b) = (t.intern("A-1"), t.intern("B-1"));
        for i in 0..5 {
            t.push(a, m(i, 100 + i));
            t.push(b, m(10 + i, 200 + i));
        }
        assert_eq!(
            members(&t, "A-1"),
            (0..5).map(|i| m(i, 100 + i)).collect::<Vec<_>>()
        );
        assert_eq!(
            members(&t, "B-1"),
            (0..5).map(|i| m(10 + i, 200 + i)).collect::<Vec<_>>()
        );
        assert!(t.has(a, 3) && !t.has(a, 13) && t.has(b, 13));
        assert!(t.dead > 0, "moved ranges leave rows behind");
        assert_eq!(t.intern("A-1"), a);
        assert_eq!(t.find("a-1"), None, "case is kept");
    }

    #[test]
    fn pruning_drops_old_tubes_squeezes_the_rows_and_keeps_the_rest_findable() {
        let mut t = Tubes::default();
        for i in 0..200u32 {
            let id = format!("T{i}");
            let tube = t.intern(&id);
            for k in 0..3 {
                t.push(tube, m(i * 3 + k, 1000 + i));
            }
        }
        // One tube gets a late member (its range moves) and a result.
        let late = t.find("T7").expect("held");
        t.push(late, m(9999, 5000));
        t.set_result(late, TestResult::Positive);
        let (remap, dropped) = t.prune(1100);
        assert_eq!(dropped, 99 * 3, "T0..T99 but T7, which was touched late");
        assert_eq!(remap[7], 0);
        assert_eq!(remap[0], NONE);
        assert_eq!(t.dead, 0, "more than a sixteenth was free: squeezed");
        assert_eq!(t.slot.len(), 101 * 3 + 1);
        assert_eq!(t.find("T0"), None);
        assert_eq!(t.find("T7"), Some(0));
        assert_eq!(t.result(0), Some(TestResult::Positive));
        assert_eq!(members(&t, "T7").last(), Some(&m(9999, 5000)));
        for i in 100..200u32 {
            let id = format!("T{i}");
            let want: Vec<Member> = (0..3).map(|k| m(i * 3 + k, 1000 + i)).collect();
            assert_eq!(members(&t, &id), want, "{id}");
        }
        // A dropped ID comes back as a new, empty tube.
        let again = t.intern("T0");
        assert_eq!(t.members_len(again), 0);
        assert_eq!(again as usize, t.len() - 1);
    }

    #[test]
    fn a_snapshot_of_the_tubes_decodes_to_the_same_tubes() {
        let mut t = Tubes::default();
        let site = t.intern_site("site-1");
        for i in 0..50u32 {
            let tube = t.intern(&format!("X-{i}"));
            t.set_site_once(tube, site);
            t.push(tube, m(i, 10 + i));
        }
        for i in (0..50u32).step_by(3) {
            let tube = t.find(&format!("X-{i}")).expect("held");
            t.push(tube, m(100 + i, 90));
            t.set_result(tube, TestResult::Negative);
        }
        t.intern("results-first");
        let bytes = encoded(&t);
        let back = decoded(&bytes, 200).expect("decodes");
        let digest = |t: &Tubes| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            t.digest(&mut h);
            h.finish()
        };
        assert_eq!(digest(&back), digest(&t));
        assert_eq!(back.dead, 0, "a decoded arena has no gaps");
        assert_eq!(back.find("X-3"), t.find("X-3"));
        // A member slot past the register is refused, not trusted.
        assert!(decoded(&bytes, 100).is_err());
    }

    /// Enough tubes for their IDs and rows to span several chunks: IDs that
    /// would straddle a chunk's end start the next one, and every ID is
    /// found, read back and encoded back to back as before.
    #[test]
    fn ids_across_many_chunks_are_found_and_round_trip() {
        let mut t = Tubes::default();
        let n = 70_000u32;
        for i in 0..n {
            let tube = t.intern(&format!("TUBE-{i}"));
            assert_eq!(tube, i);
            t.push(tube, m(i, 100));
        }
        assert!(t.ids.len() > 1 << 16 && t.meta.len() > 1 << 16);
        for i in (0..n).step_by(997).chain([n - 1]) {
            let id = format!("TUBE-{i}");
            assert_eq!(t.find(&id), Some(i));
            assert_eq!(t.id(i), id);
        }
        let bytes = encoded(&t);
        let back = decoded(&bytes, n as usize).expect("decodes");
        assert_eq!(back.find("TUBE-69999"), Some(n - 1));
        assert_eq!(encoded(&back), bytes);
    }

    /// A snapshot's copy encodes the tubes as they were when it was taken,
    /// whatever is written after: members, results, sites, new tubes, a
    /// prune with its squeeze.
    #[test]
    fn a_frozen_copy_encodes_as_taken_whatever_is_written_after() {
        let mut t = Tubes::default();
        let site = t.intern_site("s");
        for i in 0..40u32 {
            let tube = t.intern(&format!("F-{i}"));
            t.push(tube, m(i, 100 + i));
        }
        let bytes = encoded(&t);
        let frozen = t.frozen();
        assert_eq!(encoded(&frozen), bytes);
        t.push(3, m(77, 500));
        t.set_result(4, TestResult::Positive);
        t.set_site_once(5, site);
        t.touch(6, 600);
        let late = t.intern("LATE");
        t.push(late, m(78, 700));
        let (_, dropped) = t.prune(120);
        assert_eq!(dropped, 18, "F-0..F-19 but F-3 and F-6, touched late");
        assert_eq!(encoded(&frozen), bytes, "the copy is as taken");
        assert_ne!(encoded(&t), bytes);
        assert_eq!(t.find("F-3"), Some(0));
        assert_eq!(t.find("F-6"), Some(1));
        assert_eq!(t.find("F-7"), None);
        assert_eq!(members(&t, "LATE"), vec![m(78, 700)]);
        assert_eq!(members(&t, "F-3").last(), Some(&m(77, 500)));
    }

    /// Found by the property test: an empty tube decoded after others kept
    /// its place in the arrays as its start; once a prune squeezed the
    /// arrays shorter, that start lay past their end and reading the tube
    /// (or encoding the next snapshot) panicked.
    #[test]
    fn an_empty_tube_stays_readable_after_a_decode_and_a_squeeze() {
        let mut t = Tubes::default();
        for i in 0..4u32 {
            let tube = t.intern(&format!("OLD-{i}"));
            for k in 0..3 {
                t.push(tube, m(i * 3 + k, 100));
            }
        }
        let keep = t.intern("KEEP");
        t.push(keep, m(50, 5000));
        // Results first: a tube with no member yet, after all the others.
        let empty = t.intern("RESULT-FIRST");
        t.touch(empty, 5000);
        let mut back = decoded(&encoded(&t), 200).expect("decodes");
        let (remap, dropped) = back.prune(1000);
        assert_eq!(dropped, 12);
        assert_eq!(back.dead, 0, "squeezed");
        let empty = remap[empty as usize];
        assert_eq!(back.members(empty).count(), 0);
        assert!(!back.has(empty, 50));
        encoded(&back);
        back.push(empty, m(60, 5001));
        assert_eq!(back.members(empty).collect::<Vec<_>>(), vec![m(60, 5001)]);
        assert_eq!(members(&back, "KEEP"), vec![m(50, 5000)]);
    }
}
