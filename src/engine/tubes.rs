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
    /// The latest sample or report time the tube has seen (compact seconds):
    /// once older than the acceptance window, nothing can touch it again.
    pub touched: u32,
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
            touched: 0,
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

    /// Drops every tube last touched before `cutoff` (compact seconds); the
    /// site table (a few hundred names) stays. Returns each old index's new one (`NONE`
    /// when dropped), for whoever holds tube indices.
    pub fn prune(&mut self, cutoff: u32) -> Vec<u32> {
        let mut remap = Vec::with_capacity(self.tubes.len());
        let mut next = 0u32;
        for t in &self.tubes {
            if t.touched < cutoff {
                remap.push(NONE);
            } else {
                remap.push(next);
                next += 1;
            }
        }
        if next as usize == self.tubes.len() {
            return remap;
        }
        let mut i = 0;
        self.tubes.retain(|_| {
            i += 1;
            remap[i - 1] != NONE
        });
        self.tubes.shrink_to_fit();
        self.ix.retain(|_, t| {
            *t = remap[*t as usize];
            *t != NONE
        });
        self.ix.shrink_to_fit();
        remap
    }

    /// The tubes as snapshot bytes, by index, with the site table.
    pub(super) fn encode(&self, e: &mut super::snapshot::Enc) {
        e.len(self.sites.len());
        for s in &self.sites {
            e.str(s);
        }
        let mut ids = vec![""; self.tubes.len()];
        for (id, &t) in &self.ix {
            ids[t as usize] = id.as_str();
        }
        e.len(self.tubes.len());
        for (t, id) in self.tubes.iter().zip(ids) {
            e.str(id);
            e.u32(t.site);
            e.u8(super::snapshot::result_code(t.result));
            e.u32(t.touched);
            e.len(t.members.len());
            for m in &t.members {
                e.u32(m.slot);
                e.u32(m.collected);
                e.u16(m.sub_ms);
            }
        }
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
        let n = d.len(25)?;
        tubes.tubes.reserve(n);
        tubes.ix.reserve(n);
        for i in 0..n {
            let id = d.str()?;
            let id = TubeId::parse(id).map_err(|e| format!("tube {id:?}: {e}"))?;
            let site = d.u32()?;
            let result = super::snapshot::result_of(d.u8()?)?;
            let touched = d.u32()?;
            let m = d.len(10)?;
            let mut members = Vec::with_capacity(m);
            for _ in 0..m {
                let member = Member {
                    slot: d.u32()?,
                    collected: d.u32()?,
                    sub_ms: d.u16()?,
                };
                if member.slot as usize >= slots || member.sub_ms >= 1000 {
                    return Err(format!("tube {id} has a member out of range"));
                }
                members.push(member);
            }
            if site != NONE && site as usize >= tubes.sites.len() {
                return Err(format!("tube {id} names site {site}"));
            }
            if tubes.ix.insert(id.clone(), i as u32).is_some() {
                return Err(format!("tube {id} twice"));
            }
            tubes.tubes.push(Tube {
                members,
                site,
                result,
                touched,
            });
        }
        Ok(tubes)
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
