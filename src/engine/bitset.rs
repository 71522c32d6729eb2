//! A growable bitset over person slots: a round's sampled, late, made-up and
//! frozen in-scope sets. Reads past the end are `false`, so sets never need
//! resizing when new people appear.

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    pub fn with_capacity(bits: usize) -> Bitset {
        Bitset {
            words: vec![0; bits.div_ceil(64)],
        }
    }

    #[inline]
    pub fn get(&self, i: u32) -> bool {
        let i = i as usize;
        self.words
            .get(i >> 6)
            .is_some_and(|w| w & (1u64 << (i & 63)) != 0)
    }

    /// Sets bit `i`; returns whether it was already set.
    #[inline]
    pub fn set(&mut self, i: u32) -> bool {
        let i = i as usize;
        let w = i >> 6;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let mask = 1u64 << (i & 63);
        let was = self.words[w] & mask != 0;
        self.words[w] |= mask;
        was
    }

    pub fn clear_all(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
    }

    pub fn count_ones(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }

    pub fn from_words(words: Vec<u64>) -> Bitset {
        Bitset { words }
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
}
