//! Compact indexes for the register: the ID index, the household and area
//! node lookups, and the household strings.
//!
//! A hash map from a person's ID to their slot holds the key, the value and
//! a control byte per bucket — 13 bytes times 1.6 buckets per person, about
//! 22 bytes a resident at 10 M. The keys are already stored once (the
//! register's ID list, its household text, its nodes' paths), so [`Index`]
//! keeps only the `u32` each entry points at and checks a candidate against
//! the stored key: 4 bytes per bucket. Households were one boxed string each
//! (16 bytes of pointer plus a heap allocation); [`Strings`] keeps them in
//! one text with a `u32` end each.

use std::hash::Hasher;

use rustc_hash::FxHasher;

/// No entry in a bucket.
const EMPTY: u32 = u32::MAX;

/// The 64-bit hash [`Index`] is keyed by, for a string key.
pub fn str_hash(s: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    h.finish()
}

/// An open-addressing (linear probing) table of `u32` values by a 64-bit
/// hash of their key. The caller owns the keys: lookups take a test of
/// "does value `v` have the key I am looking for", growth takes the hash of
/// value `v`'s key. At most three quarters full (about 2.5 buckets probed
/// per lookup); the bits a value does not need (8 of 32 at 10 M people)
/// hold a tag from the key's hash, so the caller's key is read for about
/// one bucket in a lookup, not each. Any number of buckets, not a power of
/// two: a register reserved for `n` people holds `4n/3` buckets (5.3 bytes
/// a person), not up to twice that.
#[derive(Clone, Debug, Default)]
pub struct Index {
    table: Vec<u32>,
    len: usize,
    /// Low bits of an entry that hold its value; the rest are its tag.
    value_bits: u32,
}

/// Bits that hold values up to `v` with the all-ones pattern to spare.
fn bits_for(v: usize) -> u32 {
    let v = u32::try_from(v).unwrap_or(u32::MAX - 1);
    32 - (v + 1).leading_zeros()
}

impl Index {
    /// Bucket of hash `h`: the top 32 bits of a Fibonacci product (the IDs
    /// are sequential in places; the multiplication spreads them), scaled
    /// to the table's length by a multiply and a shift.
    fn bucket(&self, h: u64) -> usize {
        let mixed = h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        ((mixed * self.table.len() as u64) >> 32) as usize
    }

    fn value_mask(&self) -> u32 {
        u32::MAX.checked_shr(32 - self.value_bits).unwrap_or(0)
    }

    /// The tag of hash `h`, in the bits above the value (from another
    /// product than the bucket's, so that neighbours' tags differ).
    fn tag(&self, h: u64) -> u32 {
        let t = ((h ^ (h >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 32) as u32;
        t & !self.value_mask()
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.table.len() { 0 } else { i + 1 }
    }

    /// The value whose key hashes to `h` and passes `is`.
    #[inline]
    pub fn get(&self, h: u64, is: impl Fn(u32) -> bool) -> Option<u32> {
        if self.table.is_empty() {
            return None;
        }
        let (tag, mask) = (self.tag(h), self.value_mask());
        let mut i = self.bucket(h);
        loop {
            let e = self.table[i];
            if e == EMPTY {
                return None;
            }
            if e & !mask == tag && is(e & mask) {
                return Some(e & mask);
            }
            i = self.next(i);
        }
    }

    /// Adds `v` (whose key `get` does not find) under hash `h`; `hash_of`
    /// gives the hash of any value already in, for when the table grows
    /// (to twice its values, so that growing one at a time stays linear).
    pub fn insert(&mut self, h: u64, v: u32, hash_of: impl Fn(u32) -> u64) {
        assert!(v < u32::MAX, "u32::MAX marks an empty bucket");
        if (self.len + 1) * 4 > self.table.len() * 3 {
            self.reserve(self.len.max(8), &hash_of);
        }
        if v >= self.value_mask() {
            self.rebuild(self.table.len(), bits_for(v as usize), &hash_of);
        }
        self.place(h, v);
        self.len += 1;
    }

    /// Room for `more` values without growing (values taken to be below
    /// the count, as the register numbers its people, households, nodes).
    pub fn reserve(&mut self, more: usize, hash_of: impl Fn(u32) -> u64) {
        let want = self.len + more;
        if want * 4 <= self.table.len() * 3 {
            return;
        }
        let cap = (want * 4).div_ceil(3).max(8);
        self.rebuild(cap, bits_for(want).max(self.value_bits), hash_of);
    }

    fn rebuild(&mut self, cap: usize, value_bits: u32, hash_of: impl Fn(u32) -> u64) {
        let old_mask = self.value_mask();
        let old = std::mem::replace(&mut self.table, vec![EMPTY; cap]);
        self.value_bits = value_bits;
        for e in old.into_iter().filter(|&e| e != EMPTY) {
            let v = e & old_mask;
            self.place(hash_of(v), v);
        }
    }

    fn place(&mut self, h: u64, v: u32) {
        let mut i = self.bucket(h);
        while self.table[i] != EMPTY {
            i = self.next(i);
        }
        self.table[i] = self.tag(h) | v;
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes of the table.
    pub fn bytes(&self) -> usize {
        self.table.capacity() * 4
    }
}

/// Strings by index in one text: string `i` ends at `ends[i]` and starts
/// where string `i - 1` ends.
#[derive(Clone, Debug, Default)]
pub struct Strings {
    text: String,
    ends: Vec<u32>,
}

impl Strings {
    pub fn get(&self, i: u32) -> &str {
        let i = i as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    /// Appends `s`; its index.
    pub fn push(&mut self, s: &str) -> u32 {
        self.text.push_str(s);
        self.ends
            .push(u32::try_from(self.text.len()).expect("household text fits in 4 GiB"));
        self.ends.len() as u32 - 1
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.ends.len() as u32).map(|i| self.get(i))
    }

    /// Bytes of the text and the ends.
    pub fn bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_whose_hashes_collide_are_told_apart_by_their_keys() {
        let keys = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        let mut ix = Index::default();
        // Every key hashes alike: each lookup walks the run and checks keys.
        for v in 0..keys.len() as u32 {
            assert_eq!(ix.get(7, |w| keys[w as usize] == keys[v as usize]), None);
            ix.insert(7, v, |_| 7);
        }
        assert_eq!(ix.len(), keys.len());
        for (v, k) in keys.iter().enumerate() {
            assert_eq!(ix.get(7, |w| keys[w as usize] == *k), Some(v as u32));
        }
        assert_eq!(ix.get(7, |w| keys[w as usize] == "z"), None);
    }

    #[test]
    fn an_index_finds_every_value_after_growing() {
        let ids: Vec<u64> = (0..100_000u64)
            .map(|i| 10_000_000_000_000_000 + i * 7)
            .collect();
        let mut ix = Index::default();
        for (v, &id) in ids.iter().enumerate() {
            ix.insert(id, v as u32, |w| ids[w as usize]);
        }
        assert!(ix.len() * 4 <= ix.bytes() / 4 * 3);
        for (v, &id) in ids.iter().enumerate() {
            assert_eq!(ix.get(id, |w| ids[w as usize] == id), Some(v as u32));
        }
        assert_eq!(ix.get(3, |w| ids[w as usize] == 3), None);
    }

    #[test]
    fn a_value_past_the_reserved_bits_widens_them_and_keeps_the_others() {
        let keys: Vec<u64> = (0..20u64).map(|k| k * 1_000_003).collect();
        let value = |k: usize| if k == 19 { 1 << 30 } else { k as u32 };
        let key_of = |v: u32| keys[if v == 1 << 30 { 19 } else { v as usize }];
        let mut ix = Index::default();
        ix.reserve(4, key_of);
        for (k, &key) in keys.iter().enumerate() {
            ix.insert(key, value(k), key_of);
        }
        for (k, &key) in keys.iter().enumerate() {
            assert_eq!(ix.get(key, |v| key_of(v) == key), Some(value(k)));
        }
    }

    #[test]
    fn strings_come_back_by_index_empty_ones_included() {
        let mut s = Strings::default();
        let all = ["兰居01-101", "", "枣林02-301", "x"];
        for (i, h) in all.iter().enumerate() {
            assert_eq!(s.push(h), i as u32);
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), all);
        assert_eq!(s.get(1), "");
        assert_eq!(s.len(), 4);
    }
}
