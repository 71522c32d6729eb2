//! An array kept in fixed-size chunks that a frozen copy (what a snapshot
//! encodes) shares until one of them writes: what lets a snapshot take the
//! tube storage and the per-person arrays — tens of millions of rows — as a
//! list of chunk handles instead of a copy of every row.
//!
//! A chunk is owned outright until [`Chunked::share`] hands a copy out, and
//! written in place, with no reference count to check on the way (the
//! writes of every record go through here). Sharing turns each chunk into a
//! reference-counted one; the first write to a shared chunk afterwards takes
//! it back (without a copy if the snapshot is done with it, else copying
//! that one chunk) and owns it again. So while a snapshot is being encoded
//! the writer copies only the chunks it writes to: the last, partly filled
//! one of an array that grows at its end, and those holding rows it changes.
//!
//! A squeeze ([`Chunked::keep`]) rebuilds an array into fresh chunks,
//! releasing each old one as soon as it has been read, so it needs a few
//! chunks beside the array, not a second copy.

use std::ops::Range;
use std::sync::Arc;

const BITS: u32 = 16;
/// Rows per chunk: 64 Ki (256 KiB of `u32`).
const CHUNK: usize = 1 << BITS;
const MASK: usize = CHUNK - 1;

#[derive(Clone, Debug)]
enum Chunk<T> {
    /// Only this array holds it: written in place.
    Own(Vec<T>),
    /// A copy handed out by [`Chunked::share`] may hold it too.
    Shared(Arc<Vec<T>>),
}

impl<T: Clone> Chunk<T> {
    fn rows(&self) -> &[T] {
        match self {
            Chunk::Own(v) => v,
            Chunk::Shared(a) => a,
        }
    }

    /// The rows to write to: a shared chunk is taken back first, copied
    /// only if a copy still holds it.
    fn own(&mut self) -> &mut Vec<T> {
        if let Chunk::Shared(a) = self {
            let rows = match Arc::try_unwrap(std::mem::take(a)) {
                Ok(rows) => rows,
                Err(a) => {
                    let mut rows = Vec::with_capacity(CHUNK);
                    rows.extend_from_slice(&a);
                    rows
                }
            };
            *self = Chunk::Own(rows);
        }
        match self {
            Chunk::Own(v) => v,
            Chunk::Shared(_) => unreachable!("the chunk was just taken back"),
        }
    }
}

/// `Clone` copies the owned chunks and shares the shared ones; a snapshot's
/// copy comes from [`Chunked::share`], which shares them all.
#[derive(Clone, Debug)]
pub struct Chunked<T> {
    chunks: Vec<Chunk<T>>,
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
        self.chunks[i >> BITS].rows()[i & MASK]
    }

    /// Row `i`, or `None` past the end.
    pub fn try_get(&self, i: usize) -> Option<T> {
        (i < self.len).then(|| self.chunks[i >> BITS].rows()[i & MASK])
    }

    /// Row `i`, to write (its chunk taken back first if shared).
    pub fn get_mut(&mut self, i: usize) -> &mut T {
        assert!(i < self.len, "row {i} of {}", self.len);
        &mut self.chunks[i >> BITS].own()[i & MASK]
    }

    /// A copy to hand to another thread: every chunk is marked shared and
    /// the copy holds the same chunks (no row is copied). The next write to
    /// each chunk, here, takes it back.
    pub fn share(&mut self) -> Chunked<T> {
        for c in &mut self.chunks {
            if let Chunk::Own(v) = c {
                *c = Chunk::Shared(Arc::new(std::mem::take(v)));
            }
        }
        self.clone()
    }

    /// Grows to `n` rows, the new ones `fill` (nothing when it has as many).
    pub fn grow(&mut self, n: usize, fill: T) {
        if n > self.len {
            self.extend(std::iter::repeat_n(fill, n - self.len));
        }
    }

    /// Raises row `i` to `v` if it holds less. The row's chunk is taken back
    /// only when the row changes: each chunk at most once per copy,
    /// whichever rows are written.
    pub fn raise(&mut self, i: usize, v: T)
    where
        T: Ord,
    {
        assert!(i < self.len, "row {i} of {}", self.len);
        let (c, o) = (i >> BITS, i & MASK);
        if self.chunks[c].rows()[o] < v {
            self.chunks[c].own()[o] = v;
        }
    }

    /// Keeps the first `n` rows (nothing when it has no more).
    pub fn truncate(&mut self, n: usize) {
        if n < self.len {
            self.chunks.truncate(n.div_ceil(CHUNK));
            let rows = n - (n.saturating_sub(1) & !MASK);
            if let Some(last) = self.chunks.last_mut()
                && last.rows().len() > rows
            {
                last.own().truncate(rows);
            }
            self.len = n;
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
            Some(&self.chunks[c].rows()[o..o + n])
        })
    }

    /// Every row, in order.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.slices(0..self.len).flatten().copied()
    }

    /// Rows `start..start + n`, which [`Chunked::push_unsplit`] put in one
    /// chunk.
    pub fn slice(&self, start: usize, n: usize) -> &[T] {
        let o = start & MASK;
        assert!(
            o + n <= CHUNK && start + n <= self.len,
            "rows {start}+{n} of {}",
            self.len
        );
        &self.chunks[start >> BITS].rows()[o..o + n]
    }

    /// Appends `rows` within one chunk, so [`Chunked::slice`] reads them
    /// back as one slice: when they do not fit in the last chunk, its rest
    /// is filled with `pad` first. Returns where they start.
    pub fn push_unsplit(&mut self, rows: &[T], pad: T) -> usize {
        assert!(rows.len() <= CHUNK, "{} rows in one chunk", rows.len());
        let room = (CHUNK - (self.len & MASK)) & MASK;
        if rows.len() > room && room > 0 {
            self.extend(std::iter::repeat_n(pad, room));
        }
        let start = self.len;
        self.extend(rows.iter().copied());
        start
    }

    /// Appends a row.
    pub fn push(&mut self, v: T) {
        if self.len & MASK == 0 {
            self.chunks.push(Chunk::Own(Vec::with_capacity(CHUNK)));
        }
        self.chunks.last_mut().expect("a chunk").own().push(v);
        self.len += 1;
    }

    /// Appends rows, filling each chunk in one go.
    pub fn extend(&mut self, values: impl IntoIterator<Item = T>) {
        let mut values = values.into_iter().peekable();
        while values.peek().is_some() {
            if self.len & MASK == 0 {
                self.chunks.push(Chunk::Own(Vec::with_capacity(CHUNK)));
            }
            let last = self.chunks.last_mut().expect("a chunk").own();
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
        let mut chunks: Vec<Option<Chunk<T>>> = old.chunks.into_iter().map(Some).collect();
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
                self.extend(chunk.rows()[o..o + n].iter().copied());
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

    /// Whether two arrays' chunks are one and the same, shared.
    fn same<T>(a: &Chunk<T>, b: &Chunk<T>) -> bool {
        matches!((a, b), (Chunk::Shared(a), Chunk::Shared(b)) if Arc::ptr_eq(a, b))
    }

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

        let frozen = a.share();
        assert!(same(&frozen.chunks[0], &a.chunks[0]));
        a.push(7);
        a.extend_from_within(0..3);
        assert_eq!(frozen.len(), CHUNK + 10);
        assert_eq!(a.len(), CHUNK + 14);
        assert_eq!(a.get(CHUNK + 10), 7);
        assert_eq!(a.get(CHUNK + 13), 2);
        assert!(
            same(&frozen.chunks[0], &a.chunks[0]),
            "the full chunk is still shared"
        );
        assert!(
            !same(&frozen.chunks[1], &a.chunks[1]),
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
        let frozen = a.share();

        a.raise(CHUNK + 1, 30);
        assert_eq!(a.get(CHUNK + 1), 40, "a lower value leaves the row");
        assert!(same(&frozen.chunks[1], &a.chunks[1]), "no change, no copy");
        a.raise(CHUNK + 1, 50);
        a.raise(CHUNK + 2, 7);
        assert_eq!((a.get(CHUNK + 1), a.get(CHUNK + 2)), (50, 7));
        assert_eq!((frozen.get(CHUNK + 1), frozen.get(CHUNK + 2)), (40, 0));
        assert!(!same(&frozen.chunks[1], &a.chunks[1]));
        assert!(same(&frozen.chunks[0], &a.chunks[0]));
        assert!(same(&frozen.chunks[2], &a.chunks[2]));

        // Growing past a partly filled last chunk shared with a copy copies
        // that chunk and leaves the copy's rows as they were.
        a.grow(3 * CHUNK, 1);
        assert_eq!(a.get(3 * CHUNK - 1), 1);
        assert_eq!(a.get(2 * CHUNK + 2), 0);
        assert_eq!(frozen.len(), 2 * CHUNK + 3);
    }

    #[test]
    fn a_shared_chunk_is_taken_back_without_a_copy_once_the_copy_is_gone() {
        let mut a: Chunked<u32> = Chunked::collect(0..10);
        let rows = a.chunks[0].rows().as_ptr();
        let frozen = a.share();
        *a.get_mut(3) = 99;
        assert_ne!(
            a.chunks[0].rows().as_ptr(),
            rows,
            "copied: the copy holds it"
        );
        assert_eq!((a.get(3), frozen.get(3)), (99, 3));

        let rows = a.chunks[0].rows().as_ptr();
        drop(a.share());
        *a.get_mut(4) = 98;
        assert!(matches!(a.chunks[0], Chunk::Own(_)));
        assert_eq!(a.chunks[0].rows().as_ptr(), rows, "taken back: no copy");
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            [0, 1, 2, 99, 98, 5, 6, 7, 8, 9]
        );
        a.push(10);
        assert_eq!(
            a.heap_bytes(),
            CHUNK * 4,
            "a copied chunk is allocated whole"
        );
    }

    #[test]
    fn rows_pushed_unsplit_stay_in_one_chunk_and_truncating_keeps_the_first() {
        let mut a: Chunked<u8> = Chunked::default();
        a.extend(std::iter::repeat_n(1, CHUNK - 3));
        assert_eq!(a.push_unsplit(b"abcde", 0), CHUNK, "5 rows in 3: padded");
        assert_eq!(a.get(CHUNK - 1), 0);
        assert_eq!(a.slice(CHUNK, 5), b"abcde");
        assert_eq!(a.push_unsplit(b"xy", 0), CHUNK + 5, "room: right after");

        let mut b: Chunked<u8> = Chunked::default();
        b.extend(std::iter::repeat_n(1, CHUNK - 2));
        assert_eq!(b.push_unsplit(b"ab", 0), CHUNK - 2, "an exact fit");
        assert_eq!(b.push_unsplit(b"c", 0), CHUNK);
        assert_eq!(b.slice(CHUNK - 2, 2), b"ab");

        let frozen = a.share();
        a.truncate(CHUNK + 2);
        assert_eq!(a.len(), CHUNK + 2);
        a.push(b'!');
        assert_eq!(a.slice(CHUNK, 3), b"ab!");
        assert_eq!(frozen.slice(CHUNK, 5), b"abcde", "the copy keeps its rows");
        a.truncate(CHUNK + 10);
        assert_eq!(a.len(), CHUNK + 3, "truncating to more rows does nothing");
        a.truncate(CHUNK);
        assert_eq!((a.len(), a.heap_bytes()), (CHUNK, CHUNK));
        assert_eq!(a.get(CHUNK - 1), 0);
        a.truncate(0);
        assert!(a.is_empty());
        assert_eq!(a.heap_bytes(), 0);
    }

    #[test]
    fn keeping_ranges_packs_them_back_to_back_and_leaves_a_copy_whole() {
        let n = 3 * CHUNK + 5;
        let mut a: Chunked<u32> = Chunked::collect(0..n as u32);
        let frozen = a.share();
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
