//! Queries across a campaign rather than one round: the people who miss
//! round after round (`GET /v1/repeat-missing`), and the exemptions in
//! force under an area (`GET /v1/exemptions`).
//!
//! Repeat missers are counted over each closed round's flagged set — the
//! same set a close writes to the status cache and `repeated_misses`
//! counts — so the list and the gate's colours never disagree. No I/O.

use rayon::prelude::*;

use super::bitset::Bitset;
use super::slots::Slots;
use super::{Engine, Exemption, Slot};
use crate::domain::Timestamp;

/// One closed round as the repeat count sees it.
pub struct ClosedRound<'a> {
    pub id: u32,
    /// The round's frozen scope: who it covered.
    pub covered: &'a Slots,
    /// Who the round still flags.
    pub flagged: &'a Bitset,
}

/// The rounds (of `rounds`, in closed order: by deadline, then id) that
/// still flag `slot`, among the last `last` of them that covered it, in
/// that order.
pub fn flagged_in_last(rounds: &[ClosedRound<'_>], slot: Slot, last: usize) -> Vec<u32> {
    let mut out: Vec<u32> = rounds
        .iter()
        .rev()
        .filter(|r| r.covered.get(slot))
        .take(last)
        .filter(|r| r.flagged.get(slot))
        .map(|r| r.id)
        .collect();
    out.reverse();
    out
}

/// A repeat misser: their register row and the rounds that still flag them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepeatMiss {
    pub row: u32,
    /// In closed order; `misses` is its length.
    pub round_ids: Vec<u32>,
}

impl Engine {
    /// Residents (under `area` when given; moved-out ones too, as long as a
    /// round still flags them) still flagged in at least `min` of the last
    /// `last` closed rounds whose scope covered them. Sorted by misses
    /// (most first), then in list order.
    pub fn repeat_missing(&self, area: Option<u32>, last: usize, min: usize) -> Vec<RepeatMiss> {
        let flagged: Vec<(u32, Bitset)> = self
            .closed_order
            .iter()
            .map(|&id| {
                let r = &self.rounds[(id - 1) as usize];
                let (_, f) = r.flag_sets(&self.exempt_bits(r), self.policy.restore_on);
                (id, f)
            })
            .collect();
        let rounds: Vec<ClosedRound<'_>> = flagged
            .iter()
            .filter_map(|(id, f)| {
                let covered = self.rounds[(id - 1) as usize].frozen()?;
                Some(ClosedRound {
                    id: *id,
                    covered,
                    flagged: f,
                })
            })
            .collect();
        let nodes = self.register.nodes();
        let (start, end) = match area {
            Some(n) => (nodes[n as usize].start, nodes[n as usize].end),
            None => (0, self.register.rows().len() as u32),
        };
        let rows = self.register.rows();
        let mut out: Vec<RepeatMiss> = self.pool.install(|| {
            (start..end)
                .into_par_iter()
                .with_min_len(4096)
                .filter_map(|row| {
                    let ids = flagged_in_last(&rounds, rows[row as usize].slot, last);
                    (ids.len() >= min.max(1)).then_some(RepeatMiss {
                        row,
                        round_ids: ids,
                    })
                })
                .collect()
        });
        out.sort_by(|a, b| {
            b.round_ids
                .len()
                .cmp(&a.round_ids.len())
                .then_with(|| self.list_order(a.row, b.row))
        });
        out
    }

    /// Exemptions in force at `now` (not deleted, `until` not past), with
    /// the person's register row: under `area` when given (registered
    /// residents only), else every one (`None` for a person not registered).
    /// In list order of their people, then by id; the unregistered last.
    pub fn exemptions_in_force(
        &self,
        area: Option<u32>,
        now: Timestamp,
    ) -> Vec<(&Exemption, Option<u32>)> {
        let nodes = self.register.nodes();
        let range = area.map(|n| nodes[n as usize].start..nodes[n as usize].end);
        let mut out: Vec<(&Exemption, Option<u32>)> = self
            .exemptions
            .values()
            .filter(|e| e.until >= now)
            .map(|e| (e, self.register.row_of(e.slot)))
            .filter(|(e, row)| match &range {
                Some(r) => {
                    row.is_some_and(|row| r.contains(&row)) && self.register.is_active(e.slot)
                }
                None => true,
            })
            .collect();
        out.sort_by(|(ea, ra), (eb, rb)| match (ra, rb) {
            (Some(a), Some(b)) => self.list_order(*a, *b).then(ea.id.cmp(&eb.id)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => ea.id.cmp(&eb.id),
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_rounds_that_covered_a_person_count() {
        let mut f1 = Bitset::default();
        f1.set(1);
        let mut f2 = Bitset::default();
        f2.set(1);
        f2.set(2);
        let f3 = Bitset::default();
        let mut all = Slots::default();
        let mut not_two = Slots::default();
        for s in 0..4 {
            all.set(s);
            if s != 2 {
                not_two.set(s);
            }
        }
        // The same sets packed, as an archived round holds them.
        let not_two = not_two.packed();
        let rounds = [
            ClosedRound {
                id: 1,
                covered: &all,
                flagged: &f1,
            },
            ClosedRound {
                id: 2,
                covered: &all,
                flagged: &f2,
            },
            ClosedRound {
                id: 3,
                covered: &not_two,
                flagged: &f3,
            },
        ];
        assert_eq!(flagged_in_last(&rounds, 1, 3), [1, 2]);
        assert_eq!(flagged_in_last(&rounds, 1, 2), [2]);
        assert_eq!(flagged_in_last(&rounds, 1, 1), Vec::<u32>::new());
        // Round 3 did not cover slot 2: its last two are rounds 1 and 2.
        assert_eq!(flagged_in_last(&rounds, 2, 2), [2]);
        assert_eq!(flagged_in_last(&rounds, 0, 3), Vec::<u32>::new());
    }
}
