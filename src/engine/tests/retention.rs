//! Retention (docs/api.md, Retention): tubes past the acceptance window leave
//! memory without changing any answer, a tube's result still reaches a
//! member whose record comes later inside the window, and an archived round
//! answers its counts, missing list, coverage and its people's statuses as
//! before (make-ups, exemptions and their deletion included).

use super::support::*;
use crate::domain::{ReasonCode, TestResult, Timestamp};
use crate::engine::{Policy, Reason, RestoreOn, Verdict};

const SCOPE: &str = "甲";

fn day0() -> Timestamp {
    t("2022-04-19T08:00:00+08:00")
}

fn at(ms: i64) -> Timestamp {
    day0().plus_millis(ms)
}

fn city(policy: Policy) -> Fx {
    let mut fx = Fx::new(policy);
    fx.register(
        vec![
            row(1, "甲/a", "1", "王芳"),
            row(2, "甲/a", "1", "李四"),
            row(3, "甲/b", "2", "张三"),
            row(4, "甲/b", "3", "赵六"),
        ],
        at(-DAY),
    );
    fx
}

fn missed(round: u32) -> Reason {
    Reason {
        code: ReasonCode::MissedRound,
        round_id: Some(round.to_string()),
    }
}

#[test]
fn tubes_past_the_window_leave_memory_and_every_answer_stays() {
    let mut fx = city(Policy::default());
    let (v, _) = fx.records(
        vec![
            rec(1, "P1", at(0)),
            rec(2, "P1", at(MIN)),
            rec(3, "S1", at(2 * MIN)),
        ],
        at(3 * MIN),
    );
    assert_eq!(v, vec![ACCEPTED; 3]);
    fx.results(
        vec![
            res("P1", TestResult::Positive, at(HOUR)),
            res("S1", TestResult::Positive, at(HOUR)),
        ],
        at(HOUR),
    );
    let before: Vec<_> = (1..=4).map(|n| fx.status(n, at(31 * DAY))).collect();
    assert_eq!(fx.engine.record_count(), 3);
    // An event 31 days on: retention runs, the three records leave memory.
    fx.records(vec![rec(4, "Q1", at(31 * DAY))], at(31 * DAY));
    assert_eq!(fx.engine.record_count(), 1, "only the new record is held");
    let after: Vec<_> = (1..=4).map(|n| fx.status(n, at(31 * DAY))).collect();
    assert_eq!(
        before[..3],
        after[..3],
        "statuses do not depend on the tubes"
    );
    assert!(
        after[0]
            .reasons
            .iter()
            .any(|r| r.code == ReasonCode::PoolPositive)
    );
    assert!(
        after[2]
            .reasons
            .iter()
            .any(|r| r.code == ReasonCode::Positive)
    );
    // A pooled positive is still lifted by a later negative sample.
    fx.records(vec![rec(1, "N1", at(31 * DAY + MIN))], at(31 * DAY + MIN));
    fx.results(
        vec![res("N1", TestResult::Negative, at(31 * DAY + HOUR))],
        at(31 * DAY + HOUR),
    );
    assert!(
        !fx.status(1, at(31 * DAY + HOUR))
            .reasons
            .iter()
            .any(|r| r.code == ReasonCode::PoolPositive)
    );
    // The old tube's ID is free: a record into it is a new tube, not a duplicate.
    let (v, _) = fx.records(vec![rec(2, "P1", at(31 * DAY))], at(31 * DAY + HOUR));
    assert_eq!(v, vec![ACCEPTED]);
    // A resend of the old record itself is too old to be judged.
    let (v, _) = fx.records(vec![rec(1, "P1", at(0))], at(31 * DAY + HOUR));
    assert_eq!(
        v,
        vec![Verdict::Rejected(crate::engine::RejectCode::InvalidTime)]
    );
    fx.check_snapshots(at(32 * DAY));
}

#[test]
fn a_result_reaches_a_member_whose_record_comes_later_inside_the_window() {
    let mut fx = city(Policy::default());
    fx.records(vec![rec(1, "T1", at(0))], at(MIN));
    fx.results(vec![res("T1", TestResult::Negative, at(HOUR))], at(HOUR));
    // 29 days on (retention has run every hour since), a late record into
    // the same tube: the tube is held, and its result applies at once.
    let late = at(29 * DAY);
    fx.records(vec![rec(3, "T1", at(2 * MIN))], late);
    assert_eq!(
        fx.status(3, late).last_negative_at,
        Some(Timestamp::from_millis(at(2 * MIN).as_millis()))
    );
    // A result reported long after the samples keeps the tube too.
    fx.records(vec![rec(2, "T2", at(20 * DAY))], at(20 * DAY));
    fx.results(
        vec![res("T2", TestResult::Negative, at(49 * DAY))],
        at(49 * DAY),
    );
    fx.records(vec![rec(4, "T2", at(20 * DAY + MIN))], at(49 * DAY + MIN));
    assert!(fx.status(4, at(49 * DAY + MIN)).last_negative_at.is_some());
    fx.check_snapshots(at(50 * DAY));
}

#[test]
fn an_archived_round_answers_as_before_and_its_flags_still_move() {
    for retention_days in [0, 30] {
        let mut fx = city(Policy {
            retention_days,
            ..Policy::default()
        });
        let r = fx.round(&[SCOPE], at(0), at(12 * HOUR), at(-HOUR));
        fx.records(vec![rec(1, "A1", at(HOUR))], at(HOUR));
        fx.close_at_deadline(r, at(12 * HOUR + MIN));
        let archived = |fx: &Fx, now| fx.engine.is_archived(fx.engine.round(r).unwrap(), now);
        assert_eq!(archived(&fx, at(13 * HOUR)), retention_days == 0);
        let root = fx.engine.register().node(&area(SCOPE)).unwrap();
        let answers = |fx: &Fx| {
            let e = &fx.engine;
            let round = e.round(r).unwrap();
            // Person 1's own record below moves their last sample; the
            // flagged people's statuses must not move.
            let statuses: Vec<_> = (2..=4).map(|n| fx.status(n, at(40 * DAY))).collect();
            (
                e.counts(round, None),
                fx.missing(r, None),
                e.coverage(round, root, 3),
                statuses,
            )
        };
        let before = answers(&fx);
        assert_eq!(before.1, [2, 3, 4].map(pid).to_vec());
        // Forty days on (an event of person 1, sampled already): archived
        // under either setting, its tubes gone, every answer as before.
        fx.records(vec![rec(1, "Z9", at(40 * DAY))], at(40 * DAY));
        assert!(archived(&fx, at(40 * DAY)));
        assert!(fx.engine.round(r).unwrap().archived);
        assert_eq!(fx.engine.record_count(), 1);
        assert_eq!(
            fx.engine
                .round_state(fx.engine.round(r).unwrap(), at(40 * DAY)),
            "archived"
        );
        assert_eq!(answers(&fx), before);
        assert!(fx.status(4, at(40 * DAY)).reasons.contains(&missed(r)));
        // A make-up still lifts a flag.
        fx.records(vec![rec(4, "Z8", at(40 * DAY))], at(40 * DAY));
        assert!(!fx.status(4, at(40 * DAY)).reasons.contains(&missed(r)));
        assert_eq!(fx.missing(r, None), [2, 3].map(pid).to_vec());
        // An exemption covering the deadline lifts one; deleting it restores it.
        let x = fx.exempt(2, at(0), at(DAY), at(40 * DAY));
        assert!(!fx.status(2, at(40 * DAY)).reasons.contains(&missed(r)));
        assert_eq!(fx.missing(r, None), [3].map(pid).to_vec());
        fx.unexempt(x, at(40 * DAY));
        assert!(fx.status(2, at(40 * DAY)).reasons.contains(&missed(r)));
        fx.check_snapshots(at(41 * DAY));
    }
}

#[test]
fn progress_counts_first_samples_by_hour_over_windows_longer_than_a_byte() {
    let mut fx = city(Policy::default());
    // 300 hours: the hours no longer fit in a byte.
    let r = fx.round(&[SCOPE], at(0), at(300 * HOUR), at(-HOUR));
    fx.records(
        vec![
            rec(1, "W1", at(290 * HOUR + MIN)),
            rec(2, "W2", at(3 * HOUR)),
        ],
        at(295 * HOUR),
    );
    fx.records(vec![rec(1, "W3", at(10 * HOUR))], at(296 * HOUR));
    let e = &fx.engine;
    let p = e.progress(e.round(r).unwrap(), None, at(400 * HOUR));
    assert_eq!(p.len(), 301);
    assert_eq!(p[3].1, 1);
    assert_eq!(p[10].1, 1, "the earlier sample of person 1 counts");
    assert_eq!(p[290].1, 0);
    fx.check_snapshots(at(400 * HOUR));
}

#[test]
fn a_closed_rounds_kept_counts_follow_make_ups_late_samples_exemptions_and_clears() {
    let mut fx = city(Policy::default());
    let mut rounds = Vec::new();
    for d in 0..3 {
        let opens = at(d * DAY);
        let r = fx.round(&[SCOPE], opens, opens.plus_millis(12 * HOUR), opens);
        // Person 1 comes every day, person 2 only on day 0.
        let tube = format!("D{d}-1");
        fx.records(
            vec![rec(1, &tube, opens.plus_millis(HOUR))],
            opens.plus_millis(HOUR),
        );
        if d == 0 {
            fx.records(
                vec![rec(2, "D0-2", opens.plus_millis(HOUR))],
                opens.plus_millis(HOUR),
            );
        }
        fx.close_at_deadline(r, opens.plus_millis(13 * HOUR));
        rounds.push(r);
        fx.check_final_counts();
    }
    let missing = |fx: &Fx, r: u32| fx.counts(r).missing;
    assert_eq!(missing(&fx, rounds[1]), 3);
    // A make-up for rounds 1 and 2 (collected after both deadlines).
    let now = at(2 * DAY + 14 * HOUR);
    fx.records(vec![rec(3, "MU-3", now)], now);
    assert_eq!(fx.counts(rounds[1]).made_up, 1);
    assert_eq!(missing(&fx, rounds[1]), 2);
    fx.check_final_counts();
    // A late in-window sample uploaded after the close: sampled and late.
    fx.records(vec![rec(4, "LATE-4", at(DAY + 2 * HOUR))], now);
    assert_eq!(fx.counts(rounds[1]).late, 1);
    fx.check_final_counts();
    // An exemption over day 1's deadline, then one overlapping it, then the
    // deletion of the first: person 2 stays exempt until both are gone.
    let e1 = fx.exempt(2, at(DAY), at(DAY + 20 * HOUR), now);
    assert_eq!(fx.counts(rounds[1]).exempt, 1);
    let e2 = fx.exempt(2, at(DAY + 6 * HOUR), at(3 * DAY), now);
    fx.check_final_counts();
    fx.unexempt(e1, now);
    assert_eq!(fx.counts(rounds[1]).exempt, 1, "the second still covers it");
    fx.check_final_counts();
    fx.unexempt(e2, now);
    assert_eq!(fx.counts(rounds[1]).exempt, 0);
    // Exempting someone already sampled changes no count.
    fx.exempt(1, at(0), at(3 * DAY), now);
    fx.check_final_counts();
    // A positive, its clear, and the rounds archived: the counts stay.
    fx.results(vec![res("MU-3", TestResult::Positive, now)], now);
    fx.clear(3, now);
    fx.check_final_counts();
    let before: Vec<_> = rounds.iter().map(|&r| fx.counts(r)).collect();
    let later = at(40 * DAY);
    fx.records(vec![rec(1, "LATER-1", later)], later);
    assert!(
        rounds
            .iter()
            .all(|&r| fx.engine.round(r).expect("round").archived)
    );
    let after: Vec<_> = rounds.iter().map(|&r| fx.counts(r)).collect();
    assert_eq!(after, before);
    fx.check_final_counts();
    fx.check_snapshots(later);
}

/// Every answer an archived round gives, for `rounds` of `e` at `now`:
/// counts, missing lists and coverage per round, the statuses of people
/// `1..=n`, and the repeat missers of the last two rounds.
type Answers = (
    Vec<(crate::engine::Counts, Vec<u32>, crate::engine::CoverageNode)>,
    Vec<crate::engine::Status>,
    Vec<crate::engine::campaign::RepeatMiss>,
);

fn answers(e: &crate::engine::Engine, rounds: &[u32], n: u32, now: Timestamp) -> Answers {
    let root = e.register().node(&area(SCOPE)).expect("the scope's node");
    let per_round = rounds
        .iter()
        .map(|&r| {
            let round = e.round(r).expect("round");
            (
                e.counts(round, None),
                e.missing(round, None),
                e.coverage(round, root, 3),
            )
        })
        .collect();
    let statuses = (1..=n).map(|p| e.status(pid(p), now)).collect();
    (per_round, statuses, e.repeat_missing(None, 2, 2))
}

#[test]
fn archived_rounds_hold_their_flagged_people_sparsely_and_answer_as_unarchived_ones() {
    const N: u32 = 640;
    for (retention_days, restore_on) in [(0, RestoreOn::Sample), (30, RestoreOn::NegativeResult)] {
        let policy = Policy {
            retention_days,
            restore_on,
            red_after_consecutive_misses: Some(2),
            ..Policy::default()
        };
        // The same log, replayed where retention never archives a round.
        let unarchived = |fx: &Fx| {
            let mut e = crate::engine::Engine::new(
                Policy {
                    retention_days: 100_000,
                    ..policy
                },
                pool(),
            );
            fx.log.iter().for_each(|ev| {
                e.apply(ev);
            });
            e
        };
        let mut fx = Fx::new(policy);
        let areas = ["甲/a", "甲/b", "甲/c", "甲/d"];
        fx.register(
            (1..=N)
                .map(|n| row(n, areas[(n % 4) as usize], &(n / 8).to_string(), "王芳"))
                .collect(),
            at(-DAY),
        );
        // Two daily rounds; 5% miss both, another 5% only the second, and
        // the first round's make-ups come a day late.
        let mut rounds = Vec::new();
        for d in 0..2 {
            let opens = at(d * DAY);
            let r = fx.round(&[SCOPE], opens, opens.plus_millis(12 * HOUR), opens);
            let came = (1..=N).filter(|n| n % 20 != 7 && (d == 0 || n % 20 != 11));
            let recs = came.map(|n| rec(n, &format!("D{d}-{n}"), opens.plus_millis(HOUR)));
            fx.records(recs.collect(), opens.plus_millis(HOUR));
            fx.close_at_deadline(r, opens.plus_millis(13 * HOUR));
            rounds.push(r);
        }
        let now = at(40 * DAY);
        // (Archived at the close already when retention_days is 0.)
        let bytes_open: Vec<usize> = rounds
            .iter()
            .map(|&r| fx.engine.round(r).expect("round").heap_bytes())
            .collect();
        let before = answers(&fx.engine, &rounds, N, now);
        assert_eq!(before.0[1].1.len(), 64, "10% missing the second round");
        assert_eq!(before.2.len(), 32, "5% missed both");
        // Forty days on: archived, every answer as before.
        fx.records(vec![rec(1, "LATER-1", now)], now);
        for (i, &r) in rounds.iter().enumerate() {
            let round = fx.engine.round(r).expect("round");
            assert!(round.archived);
            // Structural: the sampled set's bits and a few bytes per person
            // outside it, not five bits a resident and the first hours.
            let packed = round.heap_bytes();
            assert!(
                packed <= N as usize / 8 + 4 * 64 + 64
                    && (retention_days == 0 || packed * 3 < bytes_open[i]),
                "round {r}: {packed} bytes archived, {} open",
                bytes_open[i]
            );
        }
        let same = |fx: &Fx| {
            assert_eq!(
                answers(&fx.engine, &rounds, N, now),
                answers(&unarchived(fx), &rounds, N, now)
            );
        };
        let mut after = answers(&fx.engine, &rounds, N, now);
        after.1[0] = before.1[0].clone(); // person 1's own last sample moved
        assert_eq!(after, before);
        same(&fx);
        assert!(fx.status(7, now).reasons.contains(&missed(rounds[0])));
        // A make-up (with its negative result) lifts both flags of person 7.
        fx.records(vec![rec(7, "MU-7", now)], now);
        fx.results(vec![res("MU-7", TestResult::Negative, now)], now);
        assert!(!fx.status(7, now).reasons.contains(&missed(rounds[0])));
        same(&fx);
        // An exemption over the second deadline lifts person 11's flag;
        // deleting it restores the flag.
        let x = fx.exempt(11, at(DAY), at(2 * DAY), now);
        assert!(!fx.status(11, now).reasons.contains(&missed(rounds[1])));
        same(&fx);
        fx.unexempt(x, now);
        assert!(fx.status(11, now).reasons.contains(&missed(rounds[1])));
        same(&fx);
        // A positive make-up of person 27, then its clear.
        fx.records(vec![rec(27, "MU-27", now)], now);
        fx.results(vec![res("MU-27", TestResult::Positive, now)], now);
        same(&fx);
        fx.clear(27, now);
        same(&fx);
        fx.check_snapshots(at(41 * DAY));
    }
}

/// A snapshot encodes a frozen copy while the writer goes on: the register
/// is shared until something changes it (an import, a record of an unknown
/// ID), and then only the engine that changed is given its own; the copy
/// keeps answering as it was frozen.
#[test]
fn a_frozen_copy_shares_the_register_until_it_changes_and_stays_as_frozen() {
    use std::sync::Arc;
    let mut fx = city(Policy::default());
    fx.records(vec![rec(1, "P1", at(0))], at(MIN));
    let frozen = fx.engine.frozen();
    let bytes = frozen.encode_snapshot();
    assert!(Arc::ptr_eq(&frozen.0.register, &fx.engine.register));

    // Records of known people leave the register shared.
    fx.records(vec![rec(2, "P2", at(2 * MIN))], at(3 * MIN));
    assert!(Arc::ptr_eq(&frozen.0.register, &fx.engine.register));

    // An unknown ID gets a slot: the engine copies the register first.
    fx.records(vec![rec(9, "P3", at(4 * MIN))], at(5 * MIN));
    assert!(!Arc::ptr_eq(&frozen.0.register, &fx.engine.register));
    assert_eq!(frozen.0.register.slots(), 4);
    assert_eq!(fx.engine.register.slots(), 5);

    // An import changes only the engine's own copy.
    fx.register(vec![row(5, "甲/b", "3", "钱七")], at(6 * MIN));
    assert_eq!(frozen.0.register.active_count(), 4);
    assert_eq!(fx.engine.register.active_count(), 5);
    assert_eq!(frozen.encode_snapshot(), bytes, "the copy is as frozen");
    fx.check_snapshots(at(DAY));
}
