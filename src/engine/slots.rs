//! A set of person slots held in whichever of three forms is smallest: a
//! round's sampled, late, made-up and in-scope sets. An open round keeps
//! plain bitsets (one bit a resident, fast to set); retention archives a
//! closed round by packing each set, so a long campaign's archived rounds
//! hold only the few people each set is about: the sparse sets (late, made
//! up, with a negative make-up) as the slots in them, the near-full ones
//! (in scope) as the slots missing from them. The reads are those of
//! [`Bitset`], so every query answers alike whatever the form.

use std::borrow::Cow;

use super::bitset::Bitset;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slots {
    /// One bit a slot.
    Dense(Bitset),
    /// The slots in the set, ascending.
    Ones(Vec<u32>),
    /// Every slot below `len` except `zeros` (ascending); none from `len` on.
    Zeros { len: u32, zeros: Vec<u32> },
}

/// The most a list form holds before it turns into the bitset, whatever
/// the bitset's size: an insert moves up to this many bytes, so filling a
/// list costs at most (this ÷ 4)² ÷ 2 slot moves — bounded at 10 M
/// residents too, where the bitset (1.25 MB) would let a list reach 312 500
/// slots and its filling take ~5·10¹⁰ moves.
pub const MAX_LIST_BYTES: usize = 256 * 1024;

impl Default for Slots {
    fn default() -> Slots {
        Slots::Dense(Bitset::default())
    }
}

impl Slots {
    #[inline]
    pub fn get(&self, i: u32) -> bool {
        match self {
            Slots::Dense(b) => b.get(i),
            Slots::Ones(v) => v.binary_search(&i).is_ok(),
            Slots::Zeros { len, zeros } => i < *len && zeros.binary_search(&i).is_err(),
        }
    }

    /// Adds slot `i`; returns whether it was already in. A list that grows
    /// past the bytes of the bitset, or past [`MAX_LIST_BYTES`], becomes the
    /// bitset (an archived round's made-up set fills as later rounds sample
    /// people; archived at its close, with `retention_days = 0`, it fills
    /// from empty, and every insert into a list moves what follows it).
    pub fn set(&mut self, i: u32) -> bool {
        let was = self.insert(i);
        if !was && self.list_outgrown() {
            *self = Slots::Dense(self.dense().into_owned());
        }
        was
    }

    /// Whether a list form has grown past the bytes of the bitset, or past
    /// [`MAX_LIST_BYTES`]. Never true of the bitset itself: at 10 M the
    /// bitset's 1.25 MB is past the cap, and converting it would copy it
    /// whole on every new slot.
    fn list_outgrown(&self) -> bool {
        !matches!(self, Slots::Dense(_))
            && self.heap_bytes() > (self.words_len() * 8).min(MAX_LIST_BYTES) + 64
    }

    fn insert(&mut self, i: u32) -> bool {
        match self {
            Slots::Dense(b) => b.set(i),
            Slots::Ones(v) => match v.binary_search(&i) {
                Ok(_) => true,
                Err(at) => {
                    v.insert(at, i);
                    false
                }
            },
            Slots::Zeros { len, zeros } => {
                if i < *len {
                    match zeros.binary_search(&i) {
                        Ok(at) => {
                            zeros.remove(at);
                            false
                        }
                        Err(_) => true,
                    }
                } else {
                    zeros.extend(*len..i);
                    *len = i + 1;
                    false
                }
            }
        }
    }

    /// Empties the set (back to a plain bitset).
    pub fn clear_all(&mut self) {
        match self {
            Slots::Dense(b) => b.clear_all(),
            other => *other = Slots::default(),
        }
    }

    /// How many 64-slot words the set spans (reads past them are zero).
    pub fn words_len(&self) -> usize {
        match self {
            Slots::Dense(b) => b.words().len(),
            Slots::Ones(v) => v.last().map_or(0, |&s| s as usize / 64 + 1),
            Slots::Zeros { len, .. } => (*len as usize).div_ceil(64),
        }
    }

    /// Word `w` (slots `64 w ..64 w + 63`), zero past the end.
    pub fn word(&self, w: usize) -> u64 {
        /// The bits of `sorted` that fall in word `w`.
        fn bits_in(sorted: &[u32], w: usize) -> u64 {
            let lo = (w as u64 * 64).min(u64::from(u32::MAX)) as u32;
            let from = sorted.partition_point(|&s| s < lo);
            sorted[from..]
                .iter()
                .take_while(|&&s| s as usize / 64 == w)
                .fold(0, |acc, &s| acc | 1u64 << (s & 63))
        }
        match self {
            Slots::Dense(b) => b.word(w),
            Slots::Ones(v) => bits_in(v, w),
            Slots::Zeros { len, zeros } => {
                let len = *len as usize;
                let below = if (w + 1) * 64 <= len {
                    u64::MAX
                } else if w * 64 >= len {
                    0
                } else {
                    (1u64 << (len - w * 64)) - 1
                };
                below & !bits_in(zeros, w)
            }
        }
    }

    pub fn count_ones(&self) -> u64 {
        match self {
            Slots::Dense(b) => b.count_ones(),
            Slots::Ones(v) => v.len() as u64,
            Slots::Zeros { len, zeros } => u64::from(*len) - zeros.len() as u64,
        }
    }

    /// The set as a plain bitset: borrowed when it is one.
    pub fn dense(&self) -> Cow<'_, Bitset> {
        match self {
            Slots::Dense(b) => Cow::Borrowed(b),
            _ => Cow::Owned(Bitset::from_words(
                (0..self.words_len()).map(|w| self.word(w)).collect(),
            )),
        }
    }

    /// The same set in its smallest form.
    pub fn packed(&self) -> Slots {
        let dense = self.dense();
        let words = dense.words();
        // Trailing zero words hold nothing.
        let used = words.iter().rposition(|&w| w != 0).map_or(0, |i| i + 1);
        let ones = dense.count_ones() as usize;
        let len = dense.iter_ones().last().map_or(0, |s| s + 1);
        let zeros = len as usize - ones;
        let dense_bytes = used * 8;
        if ones * 4 <= dense_bytes && ones <= zeros {
            let mut v = Vec::with_capacity(ones);
            v.extend(dense.iter_ones());
            Slots::Ones(v)
        } else if zeros * 4 < dense_bytes {
            let mut z = Vec::with_capacity(zeros);
            let mut next = 0u32;
            for s in dense.iter_ones() {
                z.extend(next..s);
                next = s + 1;
            }
            Slots::Zeros { len, zeros: z }
        } else {
            Slots::Dense(Bitset::from_words(words[..used].to_vec()))
        }
    }

    /// The set as a snapshot holds it: packed afresh when `packed`, so the
    /// same set gives the same bytes however it was reached.
    pub fn canonical(&self, packed: bool) -> Cow<'_, Slots> {
        if packed {
            Cow::Owned(self.packed())
        } else {
            Cow::Borrowed(self)
        }
    }

    /// Bytes the set holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Slots::Dense(b) => b.words().len() * 8,
            Slots::Ones(v) => v.capacity() * 4,
            Slots::Zeros { zeros, .. } => zeros.capacity() * 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A set of `n` slots holding those for which `keep` is true.
    fn dense(n: u32, keep: impl Fn(u32) -> bool) -> Slots {
        let mut b = Bitset::default();
        for s in (0..n).filter(|&s| keep(s)) {
            b.set(s);
        }
        Slots::Dense(b)
    }

    /// Every read of `a` and `b` agrees, for slots up to `n` and past it.
    fn same(a: &Slots, b: &Slots, n: u32) {
        for s in 0..n + 130 {
            assert_eq!(a.get(s), b.get(s), "slot {s}");
        }
        for w in 0..(n as usize / 64 + 3) {
            assert_eq!(a.word(w), b.word(w), "word {w}");
        }
        assert_eq!(a.count_ones(), b.count_ones());
        assert_eq!(a.dense().words(), b.dense().words());
    }

    #[test]
    fn each_form_reads_and_grows_like_the_bitset() {
        let n = 10_000;
        let cases = [
            (dense(n, |s| s % 97 == 3), "ones"),
            (dense(n, |s| s % 89 != 5), "zeros"),
            (dense(n, |s| s % 3 == 0), "dense"),
            (dense(0, |_| true), "ones"),
        ];
        for (plain, form) in cases {
            let mut packed = plain.packed();
            let got = match &packed {
                Slots::Dense(_) => "dense",
                Slots::Ones(_) => "ones",
                Slots::Zeros { .. } => "zeros",
            };
            assert_eq!(got, form);
            same(&plain, &packed, n);
            let mut plain = plain;
            for s in [5, 6, 3, 9_999, 10_000, 10_200, 64, 0] {
                assert_eq!(plain.set(s), packed.set(s), "set {s} in {form}");
            }
            same(&plain, &packed, 10_300);
        }
    }

    #[test]
    fn a_packed_set_of_a_million_with_five_percent_in_or_out_is_small() {
        let n = 1_000_000;
        let few = dense(n, |s| s % 20 == 7).packed();
        let most = dense(n, |s| s % 20 != 7).packed();
        // 50 000 slots of four bytes against 125 000 bytes of bits.
        assert!(few.heap_bytes() <= 200_000 && matches!(few, Slots::Dense(_)));
        let sparse = dense(n, |s| s % 100 == 7).packed();
        assert!(matches!(sparse, Slots::Ones(_)) && sparse.heap_bytes() == 40_000);
        let near_full = dense(n, |s| s % 1000 != 7).packed();
        assert!(matches!(near_full, Slots::Zeros { .. }));
        assert_eq!(near_full.heap_bytes(), 4_000);
        assert_eq!(most.count_ones(), 950_000);
    }

    #[test]
    fn a_list_filling_from_empty_in_a_big_city_turns_into_the_bitset_early() {
        let n = 10_000_000u32;
        let mut set = Slots::Ones(Vec::new());
        let mut plain = Slots::default();
        let cap = (MAX_LIST_BYTES / 4) as u32;
        for k in 0..=cap {
            let s = n / 2 + 100 * k;
            assert!(!set.set(s));
            plain.set(s);
        }
        assert!(
            matches!(set, Slots::Dense(_)),
            "past {cap} slots: the bitset"
        );
        assert_eq!(set.count_ones(), u64::from(cap) + 1);
        assert_eq!(set.dense().words(), plain.dense().words());
    }

    #[test]
    fn setting_a_slot_in_a_big_citys_bitset_sets_it_in_place() {
        // 10 M slots: the bitset (1.25 MB) is past `MAX_LIST_BYTES`, and must
        // still take a slot in place rather than be copied whole.
        let n = 10_000_000u32;
        let words = |set: &Slots| match set {
            Slots::Dense(b) => b.words().as_ptr(),
            _ => panic!("a plain set stays the bitset"),
        };
        let mut set = Slots::default();
        set.set(n - 1);
        for s in (0..n).step_by(9_973) {
            let at = words(&set);
            assert!(!set.set(s));
            // Copying the words (as `set` once did whenever the bitset was
            // past the cap) would move them to another address.
            assert_eq!(words(&set), at, "slot {s}: the same words, not a copy");
        }
        assert_eq!(set.count_ones(), u64::from(n.div_ceil(9_973)) + 1);
    }
}
