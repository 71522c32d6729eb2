//! Tubes: who was sampled into which tube, at which site, and the tube's lab
//! result (kept even when it arrives before any record).

use rustc_hash::FxHashMap;

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

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tube {
    pub members: Vec<Member>,
    /// Index into the site table; `NONE` until a record arrives.
    pub site: u32,
    pub result: Option<TestResult>,
}

impl Tube {
    pub fn has(&self, slot: Slot) -> bool {
        self.members.iter().any(|m| m.slot == slot)
    }
}

#[derive(Debug, Default)]
pub struct Tubes {
    ix: FxHashMap<TubeId, u32>,
    pub tubes: Vec<Tube>,
    sites: Vec<Box<str>>,
    site_ix: FxHashMap<Box<str>, u32>,
}

impl Tubes {
    pub fn get(&self, id: &TubeId) -> Option<(u32, &Tube)> {
        self.ix.get(id).map(|&t| (t, &self.tubes[t as usize]))
    }

    /// The index of tube `id` (a valid tube ID), creating it if new.
    pub fn intern(&mut self, id: &str) -> u32 {
        if let Some(&t) = self.ix.get(id) {
            return t;
        }
        let id = TubeId::parse(id).expect("the engine is given valid tube IDs");
        let t = self.tubes.len() as u32;
        self.tubes.push(Tube {
            members: Vec::new(),
            site: NONE,
            result: None,
        });
        self.ix.insert(id, t);
        t
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
        self.tubes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tubes.is_empty()
    }

    /// Tube ids with their tubes, sorted by id (for digests).
    pub fn sorted(&self) -> Vec<(&TubeId, &Tube)> {
        let mut v: Vec<_> = self
            .ix
            .iter()
            .map(|(id, &t)| (id, &self.tubes[t as usize]))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}
