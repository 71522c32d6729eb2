//! Changes not yet written: the queue the writer drains, and the set of
//! people a reader must answer from the engine because the cache may still
//! hold their old status. No I/O.

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::domain::PersonId;

/// Number of shards of the pending set: a power of two, enough that the
/// store's writer inserting a million flips and the gate handlers looking
/// people up rarely meet on one lock.
const SHARDS: usize = 64;

/// People whose latest change is not yet known to be in the cache, each with
/// the ticket of that change.
pub struct Pending {
    /// Sharded so readers on many threads and the writer do not serialise on
    /// one lock; each shard is a plain mutex because every critical section
    /// is one hash-map operation (no reader/writer split is worth its cost).
    shards: Box<[Mutex<FxHashMap<u64, u64>>]>,
}

impl Pending {
    pub fn new() -> Pending {
        Pending {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(FxHashMap::default()))
                .collect(),
        }
    }

    fn index(person: u64) -> usize {
        // Fibonacci hashing: the top bits of the product spread the IDs'
        // clustered numbers evenly over the shards.
        (person.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARDS.trailing_zeros())) as usize
    }

    fn shard(&self, person: u64) -> &Mutex<FxHashMap<u64, u64>> {
        &self.shards[Pending::index(person)]
    }

    /// Runs `f` on every person with their shard locked, taking each lock
    /// once per call for large lists (a round close's million) rather than
    /// once per person.
    fn by_shard(&self, people: &[PersonId], mut f: impl FnMut(&mut FxHashMap<u64, u64>, u64)) {
        if people.len() < 4 * SHARDS {
            for p in people {
                f(&mut self.shard(p.as_u64()).lock(), p.as_u64());
            }
            return;
        }
        let mut buckets: Vec<Vec<u64>> = vec![Vec::new(); SHARDS];
        for p in people {
            buckets[Pending::index(p.as_u64())].push(p.as_u64());
        }
        for (shard, bucket) in self.shards.iter().zip(&buckets) {
            let mut map = shard.lock();
            for &p in bucket {
                f(&mut map, p);
            }
            // A close of millions leaves the maps mostly empty; give the
            // memory back rather than keep it for the next close.
            if map.capacity() > 4_096 && map.len() < map.capacity() / 8 {
                let keep = map.len() * 2;
                map.shrink_to(keep);
            }
        }
    }

    /// Marks `people` as changed by the change with `ticket`.
    pub fn insert_all(&self, people: &[PersonId], ticket: u64) {
        self.by_shard(people, |map, p| {
            map.insert(p, ticket);
        });
    }

    /// Whether the cache may hold an old status of `person`.
    pub fn contains(&self, person: PersonId) -> bool {
        self.shard(person.as_u64())
            .lock()
            .contains_key(&person.as_u64())
    }

    /// Forgets `people` whose latest change has a ticket at most `upto`:
    /// their status was computed after that change and is now written. A
    /// later change keeps its person pending until its own write.
    pub fn remove_upto(&self, people: &[PersonId], upto: u64) {
        self.by_shard(people, |map, p| {
            if map.get(&p).is_some_and(|&t| t <= upto) {
                map.remove(&p);
            }
        });
    }

    /// How many people are pending (for tests and logs; takes every lock).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

/// Changes reported by the store, in ticket order, waiting for the writer.
#[derive(Default)]
pub struct Queue {
    /// Each `changed` call's list, moved in without copying.
    pub batches: Vec<Vec<PersonId>>,
    /// The ticket of the latest change queued.
    pub last_ticket: u64,
}

impl Queue {
    /// Takes everything queued, and the ticket up to which it reaches.
    pub fn drain(&mut self) -> (Vec<PersonId>, u64) {
        let batches = std::mem::take(&mut self.batches);
        let people = if batches.len() == 1 {
            batches.into_iter().next().unwrap_or_default()
        } else {
            batches.concat()
        };
        (people, self.last_ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u64) -> PersonId {
        PersonId::from_u64(61_080_219_850_312_000 + n).unwrap()
    }

    #[test]
    fn a_later_change_keeps_its_person_pending() {
        let pending = Pending::new();
        pending.insert_all(&[p(1), p(2)], 5);
        pending.insert_all(&[p(2)], 7);
        pending.remove_upto(&[p(1), p(2)], 6);
        assert!(!pending.contains(p(1)));
        assert!(
            pending.contains(p(2)),
            "changed again after the write's snapshot"
        );
        pending.remove_upto(&[p(2)], 7);
        assert!(!pending.contains(p(2)));
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn large_lists_are_marked_and_unmarked_shard_by_shard() {
        let pending = Pending::new();
        let many: Vec<PersonId> = (0..1_000).map(p).collect();
        pending.insert_all(&many, 3);
        assert_eq!(pending.len(), 1_000);
        pending.insert_all(&many[..10], 4);
        pending.remove_upto(&many, 3);
        assert_eq!(pending.len(), 10);
        assert!(many[..10].iter().all(|&q| pending.contains(q)));
    }

    #[test]
    fn draining_takes_every_batch_in_order() {
        let mut q = Queue::default();
        q.batches.push(vec![p(1), p(2)]);
        q.batches.push(vec![p(3)]);
        q.last_ticket = 9;
        let (people, upto) = q.drain();
        assert_eq!(people, vec![p(1), p(2), p(3)]);
        assert_eq!(upto, 9);
        let (people, upto) = q.drain();
        assert!(people.is_empty());
        assert_eq!(upto, 9);
    }
}
