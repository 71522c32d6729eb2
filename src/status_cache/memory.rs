//! The in-process stand-in for Redis (no `--redis`): a sharded map from the
//! keyed digest of an ID to the same value bytes Redis would hold, written
//! with the same newer-version-wins rule. Expiry is checked on read from the
//! value's `valid_until`, as for Redis. No I/O.
//!
//! Memory: about 250 bytes per cached person (digest, value, map slot). The
//! map holds everyone written through or looked up since start-up.

use bytes::Bytes;
use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use super::format::{Digest, decode_value};

/// Shards of the map: enough that gate lookups on every worker thread and
/// the writer's inserts rarely meet on one lock.
const SHARDS: usize = 64;

pub struct MemoryMap {
    /// A read/write lock per shard: gate lookups (reads) outnumber writes by
    /// orders of magnitude, and reads of one shard may run together.
    shards: Box<[RwLock<FxHashMap<Digest, Bytes>>]>,
}

impl MemoryMap {
    pub fn new() -> MemoryMap {
        MemoryMap {
            shards: (0..SHARDS)
                .map(|_| RwLock::new(FxHashMap::default()))
                .collect(),
        }
    }

    fn shard(&self, digest: &Digest) -> &RwLock<FxHashMap<Digest, Bytes>> {
        // The digest is already uniformly random: its first byte picks the shard.
        &self.shards[usize::from(digest[0]) % SHARDS]
    }

    /// The stored value (header and JSON), if any.
    pub fn get(&self, digest: &Digest) -> Option<Bytes> {
        self.shard(digest).read().get(digest).cloned()
    }

    /// Stores `value` unless the stored value has the same or a newer
    /// version: the in-process twin of the Redis write script. Returns
    /// whether it was stored.
    pub fn put_if_newer(&self, digest: Digest, value: Bytes) -> bool {
        let Some(new) = decode_value(&value) else {
            return false;
        };
        let mut shard = self.shard(&digest).write();
        let newer = shard
            .get(&digest)
            .and_then(|old| decode_value(old).map(|d| d.version))
            .is_none_or(|old| old < new.version);
        if newer {
            shard.insert(digest, value);
        }
        newer
    }

    /// Number of entries (tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::status::Status;
    use crate::status_cache::format::Keyer;

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let map = MemoryMap::new();
        let d = [7u8; 16];
        let keyer = Keyer::new(&[1; 32]);
        assert!(map.put_if_newer(d, Bytes::from(keyer.encode_value(&d, 5, &Status::green()))));
        assert!(!map.put_if_newer(d, Bytes::from(keyer.encode_value(&d, 4, &Status::green()))));
        assert!(!map.put_if_newer(d, Bytes::from(keyer.encode_value(&d, 5, &Status::green()))));
        assert!(map.put_if_newer(d, Bytes::from(keyer.encode_value(&d, 6, &Status::green()))));
        let stored = map.get(&d).unwrap();
        assert_eq!(decode_value(&stored).unwrap().version, 6);
        assert_eq!(map.len(), 1);
    }
}
