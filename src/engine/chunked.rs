//! An array kept in fixed-size chunks that copies of it share until one of
//! them writes: what lets a snapshot take the tube member arrays — tens of
//! millions of rows, the part of the state that grows with the records —
//! as a list of chunk handles instead of a copy of every row.
//!
//! Between squeezes the member arrays only grow at their end, so while a
//! snapshot's copy is being encoded the writer copies at most the last,
//! partly filled chunk (once), not the arrays. A squeeze rebuilds the arrays
//! into fresh chunks, releasing each old one as soon as it has been read, so
//! it needs a few chunks beside the arrays, not a second copy.

use std::ops::Range;
use std::sync::Arc;

const BITS: u32 = 16;
/// Rows per chunk: 64 Ki (256 KiB of `u32`).
const CHUNK: usize = 1 << BITS;
const MASK: usize = CHUNK - 1;

#[derive(Clone, Debug)]
pub struct Chunked<T> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Copy> Chunked<T> {
    /// The rows `values` yields, in order.
    pub fn collect(values: impl IntoIterator<Item = T>) -> Chunked<T> {
        let mut out = Chunked::default();
        out.extend(values);
        out
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> T {
        assert!(i < self.len, "row {i} of {}", self.len);
        self.chunks[i >> BITS][i & MASK]
    }

    /// Row `i`, or `None` past the end.
    pub fn try_get(&self, i: usize) -> Option<T> {
        (i < self.len).then(|| self.chunks[i >> BITS][i & MASK])
    }

    /// Grows to `n` rows, the new ones `fill` (nothing when it has as many).
    pub fn grow(&mut self, n: usize, fill: T) {
        if n > self.len {
            self.extend(std::iter::repeat_n(fill, n - self.len));
        }
    }

    /// Raises row `i` to `v` if it holds less. The row's chunk is copied
    /// first only when the row changes and a copy of the array shares it:
    /// each chunk at most once per copy, whichever rows are written.
    pub fn raise(&mut self, i: usize, v: T)
    where
        T: Ord,
    {
        assert!(i < self.len, "row {i} of {}", self.len);
        let (c, o) = (i >> BITS, i & MASK);
        if self.chunks[c][o] < v {
            Arc::make_mut(&mut self.chunks[c])[o] = v;
        }
    }

    /// Rows `r`, as the slices of the chunks they lie in.
    pub fn slices(&self, r: Range<usize>) -> impl Iterator<Item = &[T]> + '_ {
        assert!(
            r.start <= r.end && r.end <= self.len,
            "rows {r:?} of {}",
            self.len
        );
        let mut at = r.start;
        std::iter::from_fn(move || {
            if at >= r.end {
                return None;
            }
            let (c, o) = (at >> BITS, at & MASK);
            let n = (CHUNK - o).min(r.end - at);
            at += n;
            Some(&self.chunks[c][o..o + n])
        })
    }

    /// Appends a row (copying the last chunk first if a copy of the array
    /// still shares it).
    pub fn push(&mut self, v: T) {
        if self.len & MASK == 0 {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        Arc::make_mut(self.chunks.last_mut().expect("a chunk")).push(v);
        self.len += 1;
    }

    /// Appends rows, filling each chunk in one go.
    pub fn extend(&mut self, values: impl IntoIterator<Item = T>) {
        let mut values = values.into_iter().peekable();
        while values.peek().is_some() {
            if self.len & MASK == 0 {
                self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
            }
            let last = Arc::make_mut(self.chunks.last_mut().expect("a chunk"));
            let before = last.len();
            last.extend(values.by_ref().take(CHUNK - before));
            self.len += last.len() - before;
        }
    }

    /// Appends a copy of rows `r` (a tube's range: a few dozen rows).
    pub fn extend_from_within(&mut self, r: Range<usize>) {
        let rows: Vec<T> = self.slices(r).flatten().copied().collect();
        self.extend(rows);
    }

    /// Keeps only `ranges` (in increasing, non-overlapping order), back to
    /// back, in fresh chunks; each old chunk is released once the ranges
    /// have moved past it, so the two never coexist whole.
    pub fn keep(&mut self, ranges: impl IntoIterator<Item = Range<usize>>) {
        let old = std::mem::take(self);
        let mut chunks: Vec<Option<Arc<Vec<T>>>> = old.chunks.into_iter().map(Some).collect();
        let mut released = 0;
        for r in ranges {
            while released < r.start >> BITS {
                chunks[released] = None;
                released += 1;
            }
            let mut at = r.start;
            while at < r.end {
                let (c, o) = (at >> BITS, at & MASK);
                let n = (CHUNK - o).min(r.end - at);
                let chunk = chunks[c].as_ref().expect("ranges in increasing order");
                self.extend(chunk[o..o + n].iter().copied());
                at += n;
            }
        }
    }

    /// Bytes the chunks hold (each is allocated whole).
    pub fn heap_bytes(&self) -> usize {
        self.chunks.len() * CHUNK * std::mem::size_of::<T>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_across_chunks_and_a_copy_is_untouched_by_later_writes() {
        let mut a: Chunked<u32> = Chunked::collect(0..(CHUNK as u32 + 10));
        assert_eq!(a.len(), CHUNK + 10);
        assert_eq!(a.get(CHUNK - 1), CHUNK as u32 - 1);
        assert_eq!(a.get(CHUNK + 3), CHUNK as u32 + 3);
        let across: Vec<u32> = a.slices(CHUNK - 2..CHUNK + 2).flatten().copied().collect();
        assert_eq!(
            across,
            vec![
                CHUNK as u32 - 2,
                CHUNK as u32 - 1,
                CHUNK as u32,
                CHUNK as u32 + 1
            ]
        );
        assert_eq!(a.slices(CHUNK - 2..CHUNK + 2).count(), 2);

        let frozen = a.clone();
        assert!(Arc::ptr_eq(&frozen.chunks[0], &a.chunks[0]));
        a.push(7);
        a.extend_from_within(0..3);
        assert_eq!(frozen.len(), CHUNK + 10);
        assert_eq!(a.len(), CHUNK + 14);
        assert_eq!(a.get(CHUNK + 10), 7);
        assert_eq!(a.get(CHUNK + 13), 2);
        assert!(
            Arc::ptr_eq(&frozen.chunks[0], &a.chunks[0]),
            "the full chunk is still shared"
        );
        assert!(
            !Arc::ptr_eq(&frozen.chunks[1], &a.chunks[1]),
            "the written one was copied"
        );
        assert_eq!(
            frozen
                .slices(0..frozen.len())
                .flatten()
                .copied()
                .collect::<Vec<_>>(),
            (0..(CHUNK as u32 + 10)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn raising_a_row_copies_only_its_chunk_and_only_when_it_changes() {
        let mut a: Chunked<u32> = Chunked::default();
        a.grow(2 * CHUNK + 3, 0);
        assert_eq!(a.len(), 2 * CHUNK + 3);
        a.grow(5, 9);
        assert_eq!(a.len(), 2 * CHUNK + 3, "growing to fewer rows does nothing");
        assert_eq!(a.try_get(2 * CHUNK + 2), Some(0));
        assert_eq!(a.try_get(2 * CHUNK + 3), None);
        a.raise(CHUNK + 1, 40);
        let frozen = a.clone();

        a.raise(CHUNK + 1, 30);
        assert_eq!(a.get(CHUNK + 1), 40, "a lower value leaves the row");
        assert!(
            Arc::ptr_eq(&frozen.chunks[1], &a.chunks[1]),
            "no change, no copy"
        );
        a.raise(CHUNK + 1, 50);
        a.raise(CHUNK + 2, 7);
        assert_eq!((a.get(CHUNK + 1), a.get(CHUNK + 2)), (50, 7));
        assert_eq!((frozen.get(CHUNK + 1), frozen.get(CHUNK + 2)), (40, 0));
        assert!(!Arc::ptr_eq(&frozen.chunks[1], &a.chunks[1]));
        assert!(Arc::ptr_eq(&frozen.chunks[0], &a.chunks[0]));
        assert!(Arc::ptr_eq(&frozen.chunks[2], &a.chunks[2]));

        // Growing past a partly filled last chunk shared with a copy copies
        // that chunk and leaves the copy's rows as they were.
        a.grow(3 * CHUNK, 1);
        assert_eq!(a.get(3 * CHUNK - 1), 1);
        assert_eq!(a.get(2 * CHUNK + 2), 0);
        assert_eq!(frozen.len(), 2 * CHUNK + 3);
    }

    #[test]
    fn keeping_ranges_packs_them_back_to_back_and_leaves_a_copy_whole() {
        let n = 3 * CHUNK + 5;
        let mut a: Chunked<u32> = Chunked::collect(0..n as u32);
        let frozen = a.clone();
        let ranges = [
            3..9,
            CHUNK - 1..CHUNK + 1,
            2 * CHUNK + 7..3 * CHUNK + 2,
            n - 1..n,
        ];
        a.keep(ranges.clone());
        let want: Vec<u32> = ranges
            .iter()
            .flat_map(|r| r.start as u32..r.end as u32)
            .collect();
        assert_eq!(a.len(), want.len());
        assert_eq!(
            a.slices(0..a.len()).flatten().copied().collect::<Vec<_>>(),
            want
        );
        assert_eq!(frozen.get(n - 1), n as u32 - 1);
        assert_eq!(frozen.len(), n);

        a.keep(std::iter::empty());
        assert!(a.is_empty());
        assert_eq!(a.heap_bytes(), 0);
    }
}
