//! A growable bitset over person slots: a round's sampled, late, made-up and
//! frozen in-scope sets. Reads past the end are `false`, so sets never need
//! resizing when new people appear.
//!
//! The words are shared by clones until one of them writes (copy on write):
//! a snapshot's copy of the engine takes every round's sets as handles, and
//! the writer copies a set only when it changes it while the copy is being
//! encoded — a closed round's in-scope set never, its made-up set once. At
//! 10 M residents a set is 1.25 MB and a round has five.

use std::sync::Arc;

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bitset {
    words: Arc<Vec<u64>>,
}

impl Bitset {
    pub fn with_capacity(bits: usize) -> Bitset {
        Bitset::from_words(vec![0; bits.div_ceil(64)])
    }

    #[inline]
    pub fn get(&self, i: u32) -> bool {
        let i = i as usize;
        self.words
            .get(i >> 6)
            .is_some_and(|w| w & (1u64 << (i & 63)) != 0)
    }

    /// Sets bit `i`; returns whether it was already set. A bit already set
    /// writes nothing, so it never copies shared words.
    #[inline]
    pub fn set(&mut self, i: u32) -> bool {
        if self.get(i) {
            return true;
        }
        let i = i as usize;
        let w = i >> 6;
        let words = Arc::make_mut(&mut self.words);
        if w >= words.len() {
            words.resize(w + 1, 0);
        }
        words[w] |= 1u64 << (i & 63);
        false
    }

    pub fn clear_all(&mut self) {
        if self.words.iter().any(|&w| w != 0) {
            Arc::make_mut(&mut self.words).fill(0);
        }
    }

    pub fn count_ones(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }

    pub fn from_words(words: Vec<u64>) -> Bitset {
        Bitset {
            words: Arc::new(words),
        }
    }

    /// Indices of the set bits, ascending.
    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some((wi as u32) * 64 + b)
            })
        })
    }

    /// Word `i`, zero past the end.
    #[inline]
    pub fn word(&self, i: usize) -> u64 {
        self.words.get(i).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_and_iterate_agree() {
        let mut b = Bitset::default();
        assert!(!b.get(1000));
        for i in [0, 63, 64, 1000, 5] {
            assert!(!b.set(i));
        }
        assert!(b.set(5));
        assert!(b.get(1000) && b.get(63) && !b.get(62));
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), vec![0, 5, 63, 64, 1000]);
        assert_eq!(b.count_ones(), 5);
        b.clear_all();
        assert_eq!(b.count_ones(), 0);
    }

    #[test]
    fn a_clone_shares_its_words_until_one_side_writes() {
        let mut a = Bitset::default();
        a.set(70);
        let mut b = a.clone();
        assert_eq!(a.words().as_ptr(), b.words().as_ptr(), "shared");
        // Setting a bit already set writes nothing: still shared.
        assert!(b.set(70));
        assert_eq!(a.words().as_ptr(), b.words().as_ptr());
        // A new bit: the writer gets its own words; the other side is unchanged.
        assert!(!b.set(3));
        assert_ne!(a.words().as_ptr(), b.words().as_ptr());
        assert!(b.get(3) && !a.get(3));
        assert!(a.get(70) && b.get(70));
        let before = a.clone();
        a.clear_all();
        assert_eq!(a.count_ones(), 0);
        assert_eq!(before.iter_ones().collect::<Vec<_>>(), vec![70]);
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), vec![3, 70]);
    }
}
