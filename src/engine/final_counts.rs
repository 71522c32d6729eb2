//! A closed round's whole-round counts, kept instead of recounted: a long
//! campaign has sixty closed rounds or more, and `GET /v1/rounds` (and the
//! dashboard) would otherwise pass over every round's bitsets, and gather
//! every exemption, on each call. The counts are taken at the close and
//! moved one person at a time when that person's state in the round
//! changes: a make-up or a late sample arriving, an exemption granted or
//! deleted. (A clear touches only positives; a move-out leaves the frozen
//! in-scope set alone.)

use super::register::Slot;
use super::rounds::{Counts, RoundState};
use super::{Engine, Exemption};
use crate::domain::Timestamp;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// A person's state from their bits in a round (sampled, late, made up) and
/// whether an exemption covers the round: the precedence of
/// `Round::state_of`.
fn state((sampled, late, made_up): (bool, bool, bool), exempt: bool) -> RoundState {
    if sampled {
        RoundState::Sampled { late }
    } else if made_up {
        RoundState::MadeUp
    } else if exempt {
        RoundState::Exempt
    } else {
        RoundState::Missing
    }
}

/// Moves one person in `c` from state `from` to state `to`.
fn shift(c: &mut Counts, from: RoundState, to: RoundState) {
    if from == to {
        return;
    }
    let mut apply = |s: RoundState, up: bool| {
        let step = |x: &mut u64| {
            if up {
                *x += 1;
            } else {
                *x -= 1;
            }
        };
        match s {
            RoundState::Sampled { late } => {
                step(&mut c.sampled);
                if late {
                    step(&mut c.late);
                }
            }
            RoundState::MadeUp => step(&mut c.made_up),
            RoundState::Exempt => step(&mut c.exempt),
            RoundState::Missing => step(&mut c.missing),
        }
    };
    apply(from, false);
    apply(to, true);
}

/// Whether an exemption of `slot` covers a round with this deadline.
fn exempt_in(
    exemptions: &BTreeMap<u32, Exemption>,
    exemptions_of: &FxHashMap<Slot, Vec<u32>>,
    deadline: Timestamp,
    slot: Slot,
) -> bool {
    exemptions_of.get(&slot).is_some_and(|ids| {
        ids.iter().any(|id| {
            let e = &exemptions[id];
            e.from <= deadline && deadline <= e.until
        })
    })
}

impl Engine {
    /// One sample of `slot` (collected at `ms`, arrived at `arrived`) marked
    /// in every round, moving the person in a closed round's counts when
    /// their bits there changed.
    pub(super) fn mark_sample_everywhere(&mut self, slot: Slot, ms: i64, arrived: Timestamp) {
        let Engine {
            rounds,
            exemptions,
            exemptions_of,
            ..
        } = self;
        for r in rounds.iter_mut() {
            let before = r.bits_of(slot);
            r.mark_sample(slot, ms, arrived);
            if r.final_counts.is_none() || !r.frozen_has(slot) {
                continue;
            }
            let after = r.bits_of(slot);
            if before != after {
                let ex = exempt_in(exemptions, exemptions_of, r.deadline, slot);
                let c = r.final_counts.as_mut().expect("checked above");
                shift(c, state(before, ex), state(after, ex));
            }
        }
    }

    /// Runs `change` (an exemption of `slot` granted or deleted) and moves
    /// the person in the counts of every closed round whose state for them
    /// it changed.
    pub(super) fn exemption_change(&mut self, slot: Slot, change: impl FnOnce(&mut Engine)) {
        let before: Vec<(usize, RoundState)> = self
            .rounds
            .iter()
            .enumerate()
            .filter(|(_, r)| r.final_counts.is_some() && r.frozen_has(slot))
            .map(|(i, r)| (i, state(r.bits_of(slot), self.is_exempt(r, slot))))
            .collect();
        change(self);
        for (i, was) in before {
            let now = state(
                self.rounds[i].bits_of(slot),
                self.is_exempt(&self.rounds[i], slot),
            );
            let c = self.rounds[i]
                .final_counts
                .as_mut()
                .expect("a closed round");
            shift(c, was, now);
        }
    }

    /// Counts round `ix` (closed) over its bitsets and keeps the result.
    pub(super) fn take_final_counts(&mut self, ix: usize) {
        let r = &self.rounds[ix];
        let counts = r.frozen().map(|f| self.closed_counts(r, f));
        self.rounds[ix].final_counts = counts;
    }
}

#[cfg(test)]
impl Engine {
    /// Every closed round's kept counts against a recount over its bitsets,
    /// as (round id, kept, recounted).
    pub(crate) fn final_counts_against_recount(&self) -> Vec<(u32, Counts, Counts)> {
        self.rounds
            .iter()
            .filter_map(|r| {
                let frozen = r.frozen()?;
                let kept = r.final_counts.expect("a closed round keeps its counts");
                Some((r.id, kept, self.closed_counts(r, frozen)))
            })
            .collect()
    }
}
