//! One test per rule of the contract, named by the rule. Times are Beijing
//! time on a round day: the window is 08:00–20:00 on 19 April 2022.

use super::support::*;
use crate::domain::{Colour, ReasonCode, TestResult, Timestamp};
use crate::engine::{Counts, Policy, Prepared, Reason, RejectCode, RestoreOn, Verdict};

const OPENS: &str = "2022-04-19T08:00:00+08:00";
const DEADLINE: &str = "2022-04-19T20:00:00+08:00";
const SCOPE: &str = "崇文路街道";

fn opens() -> Timestamp {
    t(OPENS)
}

fn deadline() -> Timestamp {
    t(DEADLINE)
}

/// `h` hours after the window opens (fractions allowed through `MIN`).
fn at(ms: i64) -> Timestamp {
    opens().plus_millis(ms)
}

fn before() -> Timestamp {
    opens().plus_millis(-DAY)
}

/// Six residents under 崇文路街道, one elsewhere.
fn city(policy: Policy) -> Fx {
    let mut fx = Fx::new(policy);
    fx.register(
        vec![
            row(1, "崇文路街道/学院社区/第01网格/1号楼", "101", "王芳"),
            row(2, "崇文路街道/学院社区/第01网格/1号楼", "101", "李四"),
            row(3, "崇文路街道/学院社区/第01网格/1号楼", "102", "张三"),
            row(4, "崇文路街道/学院社区/第01网格/2号楼", "201", "赵六"),
            row(5, "崇文路街道/学院社区/第02网格", "5", "钱七"),
            row(6, "崇文路街道/文化社区/第03网格", "6", "孙八"),
            row(7, "东关街道/x", "7", "周九"),
        ],
        before(),
    );
    fx
}

/// The city with the day's round over 崇文路街道 created the day before.
fn city_with_round(policy: Policy) -> (Fx, u32) {
    let mut fx = city(policy);
    let id = fx.round(&[SCOPE], opens(), deadline(), before());
    (fx, id)
}

fn counts(
    in_scope: u64,
    sampled: u64,
    late: u64,
    made_up: u64,
    exempt: u64,
    missing: u64,
) -> Counts {
    Counts {
        in_scope,
        sampled,
        late,
        made_up,
        exempt,
        missing,
    }
}

fn missed(round: u32) -> Reason {
    Reason {
        code: ReasonCode::MissedRound,
        round_id: Some(round.to_string()),
    }
}

fn reason(code: ReasonCode) -> Reason {
    Reason {
        code,
        round_id: None,
    }
}

fn negative_result() -> Policy {
    Policy {
        restore_on: RestoreOn::NegativeResult,
        ..Policy::default()
    }
}

// ------------------------------------------------------------ the window

#[test]
fn a_record_exactly_at_opens_at_counts_as_sampled() {
    let (mut fx, r) = city_with_round(Policy::default());
    fx.records(vec![rec(1, "T1", opens())], at(HOUR));
    assert_eq!(fx.counts(r), counts(6, 1, 0, 0, 0, 5));
    assert!(!fx.missing(r, None).contains(&pid(1)));
}

#[test]
fn a_record_exactly_at_the_deadline_counts_as_sampled() {
    let (mut fx, r) = city_with_round(Policy::default());
    fx.records(vec![rec(1, "T1", deadline())], deadline());
    fx.close(r, deadline());
    assert_eq!(fx.counts(r), counts(6, 1, 0, 0, 0, 5));
    assert_eq!(fx.status(1, deadline()).colour, Colour::Green);
}

#[test]
fn a_record_one_second_after_the_deadline_is_a_make_up_not_a_sample() {
    let (mut fx, r) = city_with_round(Policy::default());
    fx.records(
        vec![rec(1, "T1", deadline().plus_millis(1000))],
        deadline().plus_millis(2000),
    );
    assert_eq!(fx.counts(r), counts(6, 0, 0, 1, 0, 5));
}

#[test]
fn the_window_is_judged_to_the_millisecond() {
    // Engine times are kept to the second; the window's edges must not be.
    let (mut fx, r) = city_with_round(Policy::default());
    fx.records(
        vec![
            rec(1, "T1", deadline().plus_millis(300)),
            rec(2, "T2", opens().plus_millis(-300)),
            rec(3, "T3", deadline().plus_millis(-300)),
        ],
        deadline().plus_millis(400),
    );
    fx.close(r, deadline().plus_millis(500));
    assert_eq!(fx.counts(r), counts(6, 1, 0, 1, 0, 4));
    assert!(!fx.missing(r, None).contains(&pid(1)));
    assert!(fx.missing(r, None).contains(&pid(2)));

    // A round created afterwards re-reads the same samples from the tubes.
    let later = fx.round(&[SCOPE], opens(), deadline(), deadline().plus_millis(600));
    fx.close(later, deadline().plus_millis(700));
    let c = fx.counts(later);
    assert_eq!((c.sampled, c.made_up, c.missing), (1, 1, 4));

    // An early close moves the deadline to the close: a sample 300 ms after
    // it is a make-up.
    let (mut fx, r) = city_with_round(Policy::default());
    let close_at = at(HOUR).plus_millis(500);
    fx.records(vec![rec(1, "T1", close_at.plus_millis(300))], close_at);
    fx.close(r, close_at);
    let c = fx.counts(r);
    assert_eq!((c.sampled, c.made_up), (0, 1));
}

#[test]
fn a_record_before_opens_at_is_neither_sampled_nor_made_up() {
    let (mut fx, r) = city_with_round(Policy::default());
    fx.records(vec![rec(1, "T1", opens().plus_millis(-1000))], at(HOUR));
    assert_eq!(fx.counts(r), counts(6, 0, 0, 0, 0, 6));
    assert!(fx.missing(r, None).contains(&pid(1)));
}

#[test]
fn a_record_outside_the_scope_counts_nowhere() {
    let (mut fx, r) = city_with_round(Policy::default());
    let (v, _) = fx.records(vec![rec(7, "T1", at(HOUR))], at(HOUR));
    assert_eq!(v, vec![ACCEPTED]);
    assert_eq!(fx.counts(r), counts(6, 0, 0, 0, 0, 6));
}

// ------------------------------------------------------------- the close

#[test]
fn the_close_flags_exactly_the_missing_with_missed_round() {
    let (mut fx, r) = city_with_round(Policy::default());
    fx.records(
        vec![
            rec(1, "T1", at(HOUR)),
            rec(2, "T1", at(HOUR)),
            rec(3, "T2", at(2 * HOUR)),
        ],
        at(2 * HOUR),
    );
    let applied = fx.close(r, deadline());
    assert_eq!(applied.flipped, 3);
    assert_eq!(fx.flipped(r), 3);
    let mut changed = applied.changed.clone();
    changed.sort_unstable();
    let mut flagged = vec![pid(4), pid(5), pid(6)];
    flagged.sort_unstable();
    assert_eq!(changed, flagged);
    let s = fx.status(4, deadline());
    assert_eq!(s.colour, Colour::Yellow);
    assert_eq!(s.reasons, vec![missed(r)]);
    assert_eq!(fx.status(1, deadline()).colour, Colour::Green);
    assert_eq!(
        fx.status(7, deadline()).colour,
        Colour::Green,
        "out of scope"
    );
    assert_eq!(fx.counts(r), counts(6, 3, 0, 0, 0, 3));
    assert_eq!(fx.missing(r, None), vec![pid(4), pid(5), pid(6)]);
}

#[test]
fn closing_twice_flips_nobody_the_second_time() {
    let (mut fx, r) = city_with_round(Policy::default());
    assert_eq!(fx.close(r, deadline()).flipped, 6);
    let again = fx.close(r, deadline().plus_millis(HOUR));
    assert_eq!(again.flipped, 0);
    assert!(again.changed.is_empty());
    assert_eq!(fx.flipped(r), 6, "the round keeps what its close flipped");
    assert_eq!(fx.engine.round(r).unwrap().closed_at, Some(deadline()));
}

#[test]
fn a_late_record_inside_the_window_clears_the_flag_and_counts_late() {
    let (mut fx, r) = city_with_round(Policy::default());
    fx.close(r, deadline());
    let later = deadline().plus_millis(3 * HOUR);
    let (v, applied) = fx.records(vec![rec(1, "T1", at(HOUR))], later);
    assert_eq!(v, vec![ACCEPTED]);
    assert_eq!(applied.changed, vec![pid(1)]);
    assert_eq!(fx.status(1, later).colour, Colour::Green);
    assert_eq!(fx.counts(r), counts(6, 1, 1, 0, 0, 5));
    assert!(!fx.missing(r, None).contains(&pid(1)));
}

#[test]
fn a_late_record_under_negative_result_clears_the_flag_without_a_result() {
    let (mut fx, r) = city_with_round(negative_result());
    fx.close(r, deadline());
    let later = deadline().plus_millis(3 * HOUR);
    fx.records(vec![rec(1, "T1", at(HOUR))], later);
    assert_eq!(fx.status(1, later).colour, Colour::Green);
}

#[test]
fn a_make_up_after_the_deadline_clears_the_flag_and_counts_made_up() {
    let (mut fx, r) = city_with_round(Policy::default());
    fx.close(r, deadline());
    let later = deadline().plus_millis(12 * HOUR);
    fx.records(vec![rec(1, "T1", later)], later);
    assert_eq!(fx.status(1, later).reasons, vec![]);
    assert_eq!(fx.counts(r), counts(6, 0, 0, 1, 0, 5));
    assert!(!fx.missing(r, None).contains(&pid(1)));
}

#[test]
fn under_negative_result_a_make_up_leaves_the_list_but_stays_flagged_until_a_negative_result() {
    let (mut fx, r) = city_with_round(negative_result());
    fx.close(r, deadline());
    let later = deadline().plus_millis(12 * HOUR);
    fx.records(vec![rec(1, "T1", later)], later);
    assert_eq!(fx.counts(r), counts(6, 0, 0, 1, 0, 5));
    assert!(
        !fx.missing(r, None).contains(&pid(1)),
        "nobody left to chase"
    );
    assert_eq!(fx.status(1, later).reasons, vec![missed(r)]);
    assert_eq!(
        fx.engine.resident_view(pid(1)).unwrap().flagged_rounds,
        vec![r.to_string()]
    );
    let (_, applied) = fx.results(
        vec![res("T1", TestResult::Negative, later)],
        later.plus_millis(HOUR),
    );
    assert_eq!(applied.changed, vec![pid(1)]);
    assert_eq!(fx.status(1, later).colour, Colour::Green);
    assert!(
        fx.engine
            .resident_view(pid(1))
            .unwrap()
            .flagged_rounds
            .is_empty()
    );
}

#[test]
fn under_negative_result_a_positive_make_up_keeps_the_flag() {
    let (mut fx, r) = city_with_round(negative_result());
    fx.close(r, deadline());
    let later = deadline().plus_millis(12 * HOUR);
    fx.records(vec![rec(1, "T1", later), rec(2, "T1", later)], later);
    fx.results(
        vec![res("T1", TestResult::Positive, later)],
        later.plus_millis(HOUR),
    );
    let s = fx.status(1, later);
    assert_eq!(s.reasons, vec![reason(ReasonCode::PoolPositive), missed(r)]);
}

#[test]
fn under_negative_result_a_make_up_made_before_the_close_is_flagged_by_the_close() {
    // The deadline passed, the make-up arrived, then the round closed.
    let (mut fx, r) = city_with_round(negative_result());
    let after = deadline().plus_millis(MIN);
    fx.records(vec![rec(1, "T1", after)], after);
    let applied = fx.close(r, after);
    assert_eq!(applied.flipped, 5, "the made-up person is not missing");
    assert!(
        applied.changed.contains(&pid(1)),
        "but the close flags them"
    );
    assert_eq!(fx.status(1, after).reasons, vec![missed(r)]);
}

#[test]
fn an_exemption_granted_after_the_close_clears_the_flag_and_deleting_it_flags_again() {
    let (mut fx, r) = city_with_round(Policy::default());
    fx.close(r, deadline());
    let later = deadline().plus_millis(HOUR);
    let e = fx.exempt(1, opens(), deadline(), later);
    assert_eq!(fx.status(1, later).colour, Colour::Green);
    assert_eq!(fx.counts(r), counts(6, 0, 0, 0, 1, 5));
    assert!(!fx.missing(r, None).contains(&pid(1)));
    let applied = fx.unexempt(e, later);
    assert_eq!(applied.changed, vec![pid(1)]);
    assert_eq!(fx.status(1, later).reasons, vec![missed(r)]);
    assert_eq!(fx.counts(r), counts(6, 0, 0, 0, 0, 6));
}

#[test]
fn an_exemption_covers_a_round_when_from_and_until_hold_the_deadline() {
    let (mut fx, r) = city_with_round(Policy::default());
    fx.exempt(1, deadline(), deadline(), before()); // from = until = deadline: covers
    fx.exempt(2, before(), deadline().plus_millis(-1), before()); // ends just before
    fx.exempt(
        3,
        deadline().plus_millis(1),
        deadline().plus_millis(DAY),
        before(),
    ); // starts after
    fx.close(r, deadline());
    assert_eq!(fx.counts(r), counts(6, 0, 0, 0, 1, 5));
    assert!(!fx.missing(r, None).contains(&pid(1)));
    assert!(fx.missing(r, None).contains(&pid(2)));
    assert!(fx.missing(r, None).contains(&pid(3)));
}

#[test]
fn an_exemption_for_the_original_deadline_does_not_cover_an_early_closed_round() {
    let (mut fx, r) = city_with_round(Policy::default());
    fx.exempt(1, deadline().plus_millis(-MIN), deadline(), before());
    fx.close(r, at(4 * HOUR));
    assert!(
        fx.missing(r, None).contains(&pid(1)),
        "the moved deadline is outside the exemption"
    );
}

#[test]
fn the_counts_follow_precedence_sampled_made_up_exempt_missing() {
    let (mut fx, r) = city_with_round(Policy::default());
    fx.exempt(1, before(), deadline().plus_millis(DAY), before());
    fx.exempt(2, before(), deadline().plus_millis(DAY), before());
    fx.exempt(3, before(), deadline().plus_millis(DAY), before());
    // 1: sampled and made up and exempt → sampled. 2: made up and exempt → made up.
    fx.records(vec![rec(1, "T1", at(HOUR))], at(HOUR));
    fx.close(r, deadline());
    let later = deadline().plus_millis(HOUR);
    fx.records(vec![rec(1, "T2", later), rec(2, "T2", later)], later);
    let c = fx.counts(r);
    assert_eq!(c, counts(6, 1, 0, 1, 1, 3));
    assert_eq!(c.in_scope, c.sampled + c.made_up + c.exempt + c.missing);
}

#[test]
fn an_early_close_moves_the_deadline_and_later_samples_are_make_ups() {
    let (mut fx, r) = city_with_round(Policy::default());
    let close_at = at(4 * HOUR);
    fx.records(
        vec![rec(1, "T1", at(HOUR)), rec(2, "T2", close_at)],
        close_at,
    );
    let applied = fx.close(r, close_at);
    assert_eq!(applied.flipped, 4);
    let round = fx.engine.round(r).unwrap();
    assert_eq!(round.deadline, close_at);
    assert_eq!(round.closed_at, Some(close_at));
    let later = at(5 * HOUR);
    // Inside the original window but after the moved deadline.
    fx.records(vec![rec(3, "T3", at(4 * HOUR + MIN))], later);
    assert_eq!(fx.counts(r), counts(6, 2, 0, 1, 0, 3));
    assert_eq!(fx.status(3, later).colour, Colour::Green);
    assert_eq!(fx.status(4, later).reasons, vec![missed(r)]);
}

#[test]
fn an_early_close_turns_samples_already_held_after_it_into_make_ups() {
    // A scanner's clock ran ahead: collected after the close moment, arrived before it.
    let (mut fx, r) = city_with_round(Policy::default());
    let close_at = at(4 * HOUR);
    fx.records(vec![rec(1, "T1", close_at.plus_millis(2 * MIN))], close_at);
    let applied = fx.close(r, close_at);
    assert_eq!(applied.flipped, 5);
    assert_eq!(fx.counts(r), counts(6, 0, 0, 1, 0, 5));
}

#[test]
fn the_in_scope_set_is_frozen_at_the_close() {
    let (mut fx, r) = city_with_round(Policy::default());
    fx.move_out(6, at(HOUR)); // moved out while open: not in scope
    assert_eq!(fx.counts(r).in_scope, 5);
    fx.close(r, deadline());
    let later = deadline().plus_millis(HOUR);
    fx.move_out(5, later); // moved out after the close: stays
    fx.register(
        vec![row(8, "崇文路街道/学院社区/第02网格", "8", "吴十")],
        later,
    ); // moved in: not in
    assert_eq!(fx.counts(r), counts(5, 0, 0, 0, 0, 5));
    let missing = fx.missing(r, None);
    assert!(missing.contains(&pid(5)));
    assert!(!missing.contains(&pid(6)) && !missing.contains(&pid(8)));
    assert_eq!(fx.status(5, later).reasons, vec![missed(r)]);
    assert_eq!(fx.status(8, later).colour, Colour::Green);
    assert_eq!(fx.status(6, later).colour, Colour::Green);
    // An open round sees the register as it is now.
    let r2 = fx.round(&[SCOPE], later, later.plus_millis(HOUR), later);
    assert_eq!(fx.counts(r2).in_scope, 5); // 1–4 and 8
}

#[test]
fn a_resident_moving_between_areas_of_an_open_round_is_counted_where_they_live_now() {
    let (mut fx, r) = city_with_round(Policy::default());
    fx.register(
        vec![row(7, "崇文路街道/文化社区/第03网格", "7", "周九")],
        at(HOUR),
    );
    assert_eq!(fx.counts(r).in_scope, 7);
    assert_eq!(fx.counts_in(r, "崇文路街道/文化社区").in_scope, 2);
    fx.register(vec![row(7, "东关街道/x", "7", "周九")], at(2 * HOUR));
    assert_eq!(fx.counts(r).in_scope, 6);
}

#[test]
fn the_schedulers_close_dated_at_the_deadline_counts_only_what_had_arrived_by_then() {
    let (mut fx, r) = city_with_round(Policy::default());
    fx.records(vec![rec(1, "T1", at(HOUR))], at(HOUR));
    // Arrived after the deadline, before the scheduler's close was applied.
    let after = deadline().plus_millis(1000);
    fx.records(vec![rec(2, "T2", at(2 * HOUR)), rec(3, "T3", after)], after);
    let applied = fx.close_at_deadline(r, deadline().plus_millis(1500));
    assert_eq!(
        applied.flipped, 5,
        "2 and 3 were missing as of the deadline"
    );
    let round = fx.engine.round(r).unwrap();
    assert_eq!(
        (round.deadline, round.closed_at),
        (deadline(), Some(deadline()))
    );
    assert_eq!(
        fx.counts(r),
        counts(6, 2, 1, 1, 0, 3),
        "2 is late, 3 made up"
    );
    assert_eq!(fx.status(2, after).colour, Colour::Green);
}

#[test]
fn a_round_created_after_its_deadline_counts_records_that_arrived_before_it() {
    // A round entered after the fact: its window lies in the past, and the
    // scheduler closes it at once, dated at its deadline.
    let mut fx = city(Policy::default());
    fx.records(vec![rec(1, "T1", at(HOUR))], at(HOUR));
    let now = deadline().plus_millis(2 * HOUR);
    let r = fx.round(&[SCOPE], opens(), deadline(), now);
    assert_eq!(fx.engine.due_rounds(now), vec![r]);
    let applied = fx.close_at_deadline(r, now);
    assert_eq!(
        applied.flipped, 5,
        "person 1's record had arrived by the deadline"
    );
    assert_eq!(fx.counts(r), counts(6, 1, 0, 0, 0, 5), "and it is not late");
}

#[test]
fn a_round_created_after_its_records_counts_them() {
    let mut fx = city(Policy::default());
    let now = deadline().plus_millis(HOUR);
    let (v, _) = fx.records(vec![rec(1, "T1", at(HOUR)), rec(2, "T2", now)], now);
    assert_eq!(v, vec![ACCEPTED, ACCEPTED]);
    fx.results(vec![res("T2", TestResult::Negative, now)], now);
    let r = fx.round(&[SCOPE], opens(), deadline(), now);
    assert_eq!(fx.counts(r), counts(6, 1, 0, 1, 0, 4));
}

#[test]
fn round_create_refuses_an_empty_window_and_an_unknown_area() {
    use crate::engine::CommandError;
    let mut fx = city(Policy::default());
    assert_eq!(
        fx.try_round(&[SCOPE], opens(), opens(), before()),
        Err(CommandError::InvalidWindow)
    );
    assert!(matches!(
        fx.try_round(&["崇文路街道/无此社区"], opens(), deadline(), before()),
        Err(CommandError::UnknownArea(_))
    ));
    assert!(
        matches!(
            fx.try_round(&["崇文路"], opens(), deadline(), before()),
            Err(CommandError::UnknownArea(_))
        ),
        "a scope is a prefix of whole segments"
    );
    assert_eq!(
        fx.try_round(&[], opens(), deadline(), before()),
        Err(CommandError::EmptyScope)
    );
    assert_eq!(fx.try_round(&[SCOPE], opens(), deadline(), before()), Ok(1));
}

#[test]
fn nested_and_repeated_scope_paths_count_each_resident_once() {
    let mut fx = city(Policy::default());
    let r = fx.round(
        &[
            "崇文路街道/学院社区",
            "崇文路街道/学院社区/第01网格",
            "崇文路街道/学院社区",
            "东关街道",
        ],
        opens(),
        deadline(),
        before(),
    );
    assert_eq!(fx.counts(r).in_scope, 6);
    fx.close(r, deadline());
    assert_eq!(fx.counts(r).in_scope, 6);
}

#[test]
fn due_rounds_are_the_open_ones_past_their_deadline() {
    let (mut fx, r) = city_with_round(Policy::default());
    let r2 = fx.round(&[SCOPE], opens(), deadline().plus_millis(HOUR), before());
    assert_eq!(fx.engine.next_deadline(), Some(deadline()));
    assert!(fx.engine.due_rounds(deadline().plus_millis(-1)).is_empty());
    assert_eq!(fx.engine.due_rounds(deadline()), vec![r]);
    fx.close(r, deadline());
    assert_eq!(
        fx.engine.due_rounds(deadline().plus_millis(2 * HOUR)),
        vec![r2]
    );
    assert_eq!(
        fx.engine.next_deadline(),
        Some(deadline().plus_millis(HOUR))
    );
}

// ------------------------------------------------------------- records

#[test]
fn a_resend_in_the_same_batch_or_a_later_one_is_a_duplicate() {
    let (mut fx, _) = city_with_round(Policy::default());
    let (v, _) = fx.records(
        vec![rec(1, "T1", at(HOUR)), rec(1, "T1", at(HOUR))],
        at(HOUR),
    );
    assert_eq!(v, vec![ACCEPTED, Verdict::Duplicate]);
    // Another time for the same key is still the same key.
    let (v, applied) = fx.records(vec![rec(1, "T1", at(2 * HOUR))], at(2 * HOUR));
    assert_eq!(v, vec![Verdict::Duplicate]);
    assert!(applied.changed.is_empty());
    assert_eq!(fx.engine.record_count(), 1);
    assert_eq!(fx.status(1, at(2 * HOUR)).last_sample_at, Some(at(HOUR)));
}

#[test]
fn a_resend_into_a_full_tube_is_a_duplicate_not_tube_full() {
    let mut fx = city(Policy {
        pool_max: 2,
        ..Policy::default()
    });
    let batch = vec![
        rec(1, "T1", at(HOUR)),
        rec(2, "T1", at(HOUR)),
        rec(2, "T1", at(HOUR)),
    ];
    let (v, _) = fx.records(batch, at(HOUR));
    assert_eq!(v, vec![ACCEPTED, ACCEPTED, Verdict::Duplicate]);
    let (v, _) = fx.records(
        vec![rec(1, "T1", at(HOUR)), rec(3, "T1", at(HOUR))],
        at(HOUR),
    );
    assert_eq!(
        v,
        vec![Verdict::Duplicate, Verdict::Rejected(RejectCode::TubeFull)]
    );
}

#[test]
fn tube_full_counts_earlier_records_of_the_same_batch() {
    let mut fx = city(Policy {
        pool_max: 3,
        ..Policy::default()
    });
    fx.records(vec![rec(1, "T1", at(HOUR))], at(HOUR));
    let batch = vec![
        rec(2, "T1", at(HOUR)),
        rec(3, "T1", at(HOUR)),
        rec(4, "T1", at(HOUR)),
        rec(4, "T2", at(HOUR)),
    ];
    let (v, _) = fx.records(batch, at(HOUR));
    assert_eq!(
        v,
        vec![
            ACCEPTED,
            ACCEPTED,
            Verdict::Rejected(RejectCode::TubeFull),
            ACCEPTED
        ]
    );
}

#[test]
fn the_default_pool_holds_twenty() {
    let mut fx = city(Policy::default());
    let batch: Vec<_> = (100..121).map(|n| rec(n, "T1", at(HOUR))).collect();
    let (v, _) = fx.records(batch, at(HOUR));
    assert!(v[..20].iter().all(|v| *v == FLAGGED));
    assert_eq!(v[20], Verdict::Rejected(RejectCode::TubeFull));
}

#[test]
fn a_tube_belongs_to_the_site_that_first_used_it() {
    let mut fx = city(Policy::default());
    let (v, _) = fx.records(
        vec![
            rec_at(1, "T1", at(HOUR), "S01"),
            rec_at(2, "T1", at(HOUR), "S02"),
        ],
        at(HOUR),
    );
    assert_eq!(
        v,
        vec![ACCEPTED, Verdict::Rejected(RejectCode::TubeSiteConflict)]
    );
    let (v, _) = fx.records(
        vec![
            rec_at(3, "T1", at(HOUR), "S02"),
            rec_at(3, "T1", at(HOUR), "S01"),
        ],
        at(HOUR),
    );
    assert_eq!(
        v,
        vec![Verdict::Rejected(RejectCode::TubeSiteConflict), ACCEPTED]
    );
    // A duplicate is judged before the site: a resend from elsewhere is still a duplicate.
    let (v, _) = fx.records(vec![rec_at(1, "T1", at(HOUR), "S02")], at(HOUR));
    assert_eq!(v, vec![Verdict::Duplicate]);
}

#[test]
fn a_result_before_any_record_does_not_give_the_tube_a_site() {
    let mut fx = city(Policy::default());
    fx.results(vec![res("T1", TestResult::Negative, at(HOUR))], at(HOUR));
    let (v, _) = fx.records(vec![rec_at(1, "T1", at(HOUR), "S09")], at(HOUR));
    assert_eq!(v, vec![ACCEPTED]);
}

#[test]
fn collected_at_more_than_five_minutes_ahead_or_over_thirty_days_old_is_invalid_time() {
    let mut fx = city(Policy::default());
    let now = at(HOUR);
    let batch = vec![
        rec(1, "T1", now.plus_millis(5 * MIN)),
        rec(2, "T2", now.plus_millis(5 * MIN + 1)),
        rec(3, "T3", now.plus_millis(-30 * DAY)),
        rec(4, "T4", now.plus_millis(-30 * DAY - 1)),
    ];
    let (v, _) = fx.records(batch, now);
    let bad = Verdict::Rejected(RejectCode::InvalidTime);
    assert_eq!(v, vec![ACCEPTED, bad, ACCEPTED, bad]);
    // A resend of a record accepted long ago is invalid_time, not a duplicate.
    let (v, _) = fx.records(
        vec![rec(3, "T3", now.plus_millis(-30 * DAY))],
        now.plus_millis(1),
    );
    assert_eq!(v, vec![bad]);
}

#[test]
fn invalid_time_is_judged_before_duplicate_and_site_and_pool() {
    let mut fx = city(Policy {
        pool_max: 1,
        ..Policy::default()
    });
    fx.records(vec![rec(1, "T1", at(HOUR))], at(HOUR));
    let future = at(2 * HOUR);
    let bad = Verdict::Rejected(RejectCode::InvalidTime);
    let (v, _) = fx.records(
        vec![rec(1, "T1", future), rec_at(2, "T1", future, "S02")],
        at(HOUR),
    );
    assert_eq!(v, vec![bad, bad]);
    let (v, _) = fx.records(vec![rec_at(2, "T1", at(HOUR), "S02")], at(HOUR));
    assert_eq!(
        v,
        vec![Verdict::Rejected(RejectCode::TubeSiteConflict)],
        "site before pool size"
    );
}

#[test]
fn unregistered_people_are_accepted_and_flagged() {
    let mut fx = city(Policy::default());
    fx.move_out(2, at(0));
    let (v, _) = fx.records(
        vec![
            rec(1, "T1", at(HOUR)),
            rec(2, "T1", at(HOUR)),
            rec(99, "T1", at(HOUR)),
        ],
        at(HOUR),
    );
    assert_eq!(v, vec![ACCEPTED, FLAGGED, FLAGGED]);
    assert_eq!(fx.status(99, at(HOUR)).last_sample_at, Some(at(HOUR)));
}

// ------------------------------------------------------------- results

#[test]
fn a_result_before_its_records_is_unmatched_and_applied_when_they_arrive() {
    let mut fx = city(Policy::default());
    let (v, applied) = fx.results(vec![res("T1", TestResult::Positive, at(HOUR))], at(HOUR));
    assert_eq!(v, vec![FLAGGED], "unmatched");
    assert!(applied.changed.is_empty());
    let (_, applied) = fx.records(vec![rec(1, "T1", at(0))], at(2 * HOUR));
    assert_eq!(applied.changed, vec![pid(1)]);
    let s = fx.status(1, at(2 * HOUR));
    assert_eq!(
        (s.colour, s.reasons),
        (Colour::Red, vec![reason(ReasonCode::Positive)])
    );
    // The same result again is a duplicate; a different one conflicts.
    let (v, _) = fx.results(
        vec![
            res("T1", TestResult::Positive, at(2 * HOUR)),
            res("T1", TestResult::Negative, at(2 * HOUR)),
        ],
        at(2 * HOUR),
    );
    assert_eq!(
        v,
        vec![
            Verdict::Duplicate,
            Verdict::Rejected(RejectCode::ConflictingResult)
        ]
    );
}

#[test]
fn a_second_different_result_in_the_same_batch_conflicts() {
    let mut fx = city(Policy::default());
    fx.records(vec![rec(1, "T1", at(0))], at(0));
    let (v, _) = fx.results(
        vec![
            res("T1", TestResult::Negative, at(HOUR)),
            res("T1", TestResult::Positive, at(HOUR)),
            res("T1", TestResult::Negative, at(HOUR)),
        ],
        at(HOUR),
    );
    assert_eq!(
        v,
        vec![
            ACCEPTED,
            Verdict::Rejected(RejectCode::ConflictingResult),
            Verdict::Duplicate
        ]
    );
    assert_eq!(fx.status(1, at(HOUR)).colour, Colour::Green);
}

#[test]
fn reported_at_follows_the_time_rules_of_collected_at() {
    let mut fx = city(Policy::default());
    let now = at(HOUR);
    let bad = Verdict::Rejected(RejectCode::InvalidTime);
    let (v, _) = fx.results(
        vec![
            res("T1", TestResult::Negative, now.plus_millis(5 * MIN + 1)),
            res("T2", TestResult::Negative, now.plus_millis(-30 * DAY - 1)),
            res("T3", TestResult::Negative, now.plus_millis(5 * MIN)),
        ],
        now,
    );
    assert_eq!(v, vec![bad, bad, FLAGGED]);
}

#[test]
fn a_positive_single_tube_is_red_until_cleared() {
    let mut fx = city(Policy::default());
    fx.records(vec![rec(1, "T1", at(0))], at(0));
    let (v, applied) = fx.results(vec![res("T1", TestResult::Positive, at(HOUR))], at(HOUR));
    assert_eq!(v, vec![ACCEPTED]);
    assert_eq!(applied.changed, vec![pid(1)]);
    let s = fx.status(1, at(HOUR));
    assert_eq!(
        (s.colour, s.reasons.clone()),
        (Colour::Red, vec![reason(ReasonCode::Positive)])
    );
    assert_eq!(s.last_negative_at, None);
    // A later negative does not clear a single positive: only an admin's clear does.
    fx.records(vec![rec(1, "T2", at(2 * HOUR))], at(2 * HOUR));
    fx.results(
        vec![res("T2", TestResult::Negative, at(3 * HOUR))],
        at(3 * HOUR),
    );
    assert_eq!(fx.status(1, at(3 * HOUR)).colour, Colour::Red);
    let applied = fx.clear(1, at(4 * HOUR));
    assert_eq!(applied.changed, vec![pid(1)]);
    assert_eq!(fx.status(1, at(4 * HOUR)).colour, Colour::Green);
}

#[test]
fn a_clear_before_a_positive_does_not_clear_it() {
    let mut fx = city(Policy::default());
    fx.clear(1, at(0));
    fx.clear(9, at(0)); // anyone with a valid ID, known or not
    fx.records(vec![rec(1, "T1", at(0))], at(0));
    fx.results(vec![res("T1", TestResult::Positive, at(HOUR))], at(HOUR));
    assert_eq!(fx.status(1, at(HOUR)).colour, Colour::Red);
}

#[test]
fn a_clear_does_not_clear_a_positive_applied_after_it() {
    // Cleared once, then a new positive single tube.
    let mut fx = city(Policy::default());
    fx.records(vec![rec(1, "T1", at(0))], at(0));
    fx.results(vec![res("T1", TestResult::Positive, at(HOUR))], at(HOUR));
    fx.clear(1, at(2 * HOUR));
    fx.records(vec![rec(1, "T2", at(3 * HOUR))], at(3 * HOUR));
    fx.results(
        vec![res("T2", TestResult::Positive, at(4 * HOUR))],
        at(4 * HOUR),
    );
    assert_eq!(
        fx.status(1, at(4 * HOUR)).reasons,
        vec![reason(ReasonCode::Positive)]
    );
}

#[test]
fn a_positive_pool_is_yellow_for_every_member_until_a_later_collected_negative() {
    let mut fx = city(Policy::default());
    fx.records(
        vec![
            rec(1, "T1", at(0)),
            rec(2, "T1", at(0)),
            rec(3, "T1", at(0)),
        ],
        at(0),
    );
    let (_, applied) = fx.results(vec![res("T1", TestResult::Positive, at(HOUR))], at(HOUR));
    assert_eq!(applied.changed.len(), 3);
    for n in 1..=3 {
        let s = fx.status(n, at(HOUR));
        assert_eq!(
            (s.colour, s.reasons),
            (Colour::Yellow, vec![reason(ReasonCode::PoolPositive)])
        );
    }
    // Person 1 is retested alone: negative. Person 2's retest is still pending.
    fx.records(
        vec![rec(1, "R1", at(2 * HOUR)), rec(2, "R2", at(2 * HOUR))],
        at(2 * HOUR),
    );
    assert_eq!(
        fx.status(1, at(2 * HOUR)).colour,
        Colour::Yellow,
        "no result yet"
    );
    fx.results(
        vec![res("R1", TestResult::Negative, at(3 * HOUR))],
        at(3 * HOUR),
    );
    let s = fx.status(1, at(3 * HOUR));
    assert_eq!(s.colour, Colour::Green);
    assert_eq!(s.last_negative_at, Some(at(2 * HOUR)));
    assert_eq!(fx.status(2, at(3 * HOUR)).colour, Colour::Yellow);
}

#[test]
fn a_negative_collected_before_or_with_the_pool_does_not_clear_pool_positive() {
    let mut fx = city(Policy::default());
    fx.records(vec![rec(1, "N0", at(0))], at(0));
    fx.results(vec![res("N0", TestResult::Negative, at(0))], at(0));
    fx.records(
        vec![
            rec(1, "T1", at(HOUR)),
            rec(2, "T1", at(HOUR)),
            rec(1, "N1", at(HOUR)),
        ],
        at(HOUR),
    );
    fx.results(
        vec![
            res("T1", TestResult::Positive, at(2 * HOUR)),
            res("N1", TestResult::Negative, at(2 * HOUR)),
        ],
        at(2 * HOUR),
    );
    // N1 was collected at the same moment as the pool: not later.
    assert_eq!(
        fx.status(1, at(2 * HOUR)).reasons,
        vec![reason(ReasonCode::PoolPositive)]
    );
}

#[test]
fn a_single_positive_turns_pooled_when_a_second_member_arrives() {
    let mut fx = city(Policy::default());
    fx.records(vec![rec(1, "T1", at(0))], at(0));
    fx.results(vec![res("T1", TestResult::Positive, at(HOUR))], at(HOUR));
    assert_eq!(fx.status(1, at(HOUR)).colour, Colour::Red);
    let (_, applied) = fx.records(vec![rec(2, "T1", at(0))], at(2 * HOUR));
    let mut both = vec![pid(1), pid(2)];
    both.sort_unstable();
    assert_eq!(
        applied.changed, both,
        "the first member's status changed too"
    );
    for n in [1, 2] {
        assert_eq!(
            fx.status(n, at(2 * HOUR)).reasons,
            vec![reason(ReasonCode::PoolPositive)]
        );
    }
}

#[test]
fn a_cleared_single_positive_that_turns_pooled_is_pool_positive() {
    let mut fx = city(Policy::default());
    fx.records(vec![rec(1, "T1", at(0))], at(0));
    fx.results(vec![res("T1", TestResult::Positive, at(HOUR))], at(HOUR));
    fx.clear(1, at(2 * HOUR));
    fx.records(vec![rec(2, "T1", at(0))], at(3 * HOUR));
    assert_eq!(
        fx.status(1, at(3 * HOUR)).reasons,
        vec![reason(ReasonCode::PoolPositive)]
    );
}

#[test]
fn a_member_arriving_after_a_negative_result_gets_it() {
    let mut fx = city(Policy::default());
    fx.records(vec![rec(1, "T1", at(0))], at(0));
    fx.results(vec![res("T1", TestResult::Negative, at(HOUR))], at(HOUR));
    fx.records(vec![rec(2, "T1", at(0))], at(2 * HOUR));
    assert_eq!(fx.status(2, at(2 * HOUR)).last_negative_at, Some(at(0)));
}

#[test]
fn last_sample_and_last_negative_are_the_latest_collected_times() {
    let mut fx = city(Policy::default());
    fx.records(
        vec![rec(1, "T2", at(2 * HOUR)), rec(1, "T1", at(HOUR))],
        at(2 * HOUR),
    );
    fx.results(
        vec![
            res("T1", TestResult::Negative, at(3 * HOUR)),
            res("T2", TestResult::Positive, at(3 * HOUR)),
        ],
        at(3 * HOUR),
    );
    let s = fx.status(1, at(3 * HOUR));
    assert_eq!(s.last_sample_at, Some(at(2 * HOUR)));
    assert_eq!(s.last_negative_at, Some(at(HOUR)));
    assert_eq!(
        s.valid_until, None,
        "no sample-age rule, nothing changes by itself"
    );
}

// ------------------------------------------------------------- policies

fn misses(n: u32) -> Policy {
    Policy {
        red_after_consecutive_misses: Some(n),
        ..Policy::default()
    }
}

/// Three rounds over the same scope on consecutive days, none sampled.
fn three_days(fx: &mut Fx) -> Vec<u32> {
    (0..3)
        .map(|d| {
            let o = opens().plus_millis(d * DAY);
            let id = fx.round(&[SCOPE], o, o.plus_millis(12 * HOUR), before());
            fx.close(id, o.plus_millis(12 * HOUR));
            id
        })
        .collect()
}

#[test]
fn red_after_consecutive_misses_turns_red_after_the_last_n_closed_rounds_covering_the_person() {
    let mut fx = city(misses(2));
    let o = opens();
    let r1 = fx.round(&[SCOPE], o, o.plus_millis(12 * HOUR), before());
    fx.close(r1, o.plus_millis(12 * HOUR));
    assert_eq!(
        fx.status(1, o.plus_millis(13 * HOUR)).colour,
        Colour::Yellow,
        "one miss"
    );
    // A round elsewhere does not break the streak: it never covered person 1.
    let elsewhere = fx.round(&["东关街道"], o, o.plus_millis(13 * HOUR), before());
    fx.close(elsewhere, o.plus_millis(13 * HOUR));
    let o2 = o.plus_millis(DAY);
    let r2 = fx.round(&[SCOPE], o2, o2.plus_millis(12 * HOUR), before());
    let applied = fx.close(r2, o2.plus_millis(12 * HOUR));
    assert!(applied.changed.contains(&pid(1)));
    let s = fx.status(1, o2.plus_millis(13 * HOUR));
    assert_eq!(s.colour, Colour::Red);
    assert_eq!(
        s.reasons,
        vec![missed(r1), missed(r2), reason(ReasonCode::RepeatedMisses)]
    );
    assert_eq!(
        fx.status(7, o2.plus_millis(13 * HOUR)).reasons,
        vec![missed(elsewhere)]
    );
}

#[test]
fn repeated_misses_ends_when_the_person_is_no_longer_flagged_in_one_of_the_last_n() {
    let mut fx = city(misses(2));
    let ids = three_days(&mut fx);
    let later = opens().plus_millis(3 * DAY);
    assert_eq!(fx.status(1, later).colour, Colour::Red);
    // A late record inside the middle round's window clears its flag (and
    // makes up the first round): no longer two in a row.
    fx.records(vec![rec(1, "T1", opens().plus_millis(DAY + HOUR))], later);
    let s = fx.status(1, later);
    assert_eq!(s.colour, Colour::Yellow);
    assert_eq!(s.reasons, vec![missed(ids[2])]);
    // Under the exemption of the middle round instead, the first stays flagged.
    let e = fx.exempt(
        2,
        opens().plus_millis(DAY + 12 * HOUR),
        opens().plus_millis(DAY + 12 * HOUR),
        later,
    );
    assert_eq!(
        fx.status(2, later).reasons,
        vec![missed(ids[0]), missed(ids[2])]
    );
    fx.unexempt(e, later);
    assert_eq!(fx.status(2, later).colour, Colour::Red);
}

#[test]
fn a_close_that_ends_a_streak_reports_the_person_as_changed() {
    // Red after two misses; the third round the person was sampled in ends it.
    let mut fx = city(misses(2));
    let o = opens();
    for d in 0..2 {
        let od = o.plus_millis(d * DAY);
        let id = fx.round(&[SCOPE], od, od.plus_millis(12 * HOUR), before());
        fx.close(id, od.plus_millis(12 * HOUR));
    }
    let o3 = o.plus_millis(2 * DAY);
    let r3 = fx.round(&[SCOPE], o3, o3.plus_millis(12 * HOUR), before());
    // Any sample would make up the first two rounds; an exemption does not.
    let now = o3.plus_millis(12 * HOUR);
    fx.exempt(1, now, now, o3);
    assert_eq!(fx.status(1, now).colour, Colour::Red);
    let applied = fx.close(r3, now);
    assert_eq!(
        fx.status(1, now).colour,
        Colour::Yellow,
        "the last two are not both missed"
    );
    assert!(
        applied.changed.contains(&pid(1)),
        "the cache must be told: person 1 went from red to yellow at this close"
    );
}

#[test]
fn consecutive_rounds_are_ordered_by_deadline_not_by_close() {
    let mut fx = city(misses(2));
    let o = opens();
    // Round A has the latest deadline but closes first; round B is sampled.
    let a = fx.round(&[SCOPE], o, o.plus_millis(3 * DAY), before());
    let b = fx.round(&[SCOPE], o, o.plus_millis(DAY), before());
    let c = fx.round(&[SCOPE], o, o.plus_millis(2 * DAY), before());
    fx.records(vec![rec(1, "T1", o.plus_millis(HOUR))], o.plus_millis(HOUR));
    fx.close(a, o.plus_millis(3 * DAY)); // closes early relative to nothing: on time
    fx.close(c, o.plus_millis(3 * DAY)); // late close: deadline stays 2 days
    fx.close(b, o.plus_millis(3 * DAY));
    let now = o.plus_millis(3 * DAY);
    // Person 1 sampled in all three (one record at o+1h is inside every window).
    assert_eq!(fx.status(1, now).colour, Colour::Green);
    // Person 2: missed all three → red. By deadline: b, c, a.
    assert_eq!(fx.status(2, now).colour, Colour::Red);
    // A make-up for round b only (after b's deadline, before c's) clears b, c and a?
    // No: collected after b's deadline makes up b; it lies inside c's and a's windows.
    fx.records(vec![rec(2, "T2", o.plus_millis(DAY + HOUR))], now);
    assert_eq!(fx.status(2, now).colour, Colour::Green);
    // Person 3: exempted for c only (deadline 2 days): b missed, c exempt, a missed.
    let e = fx.exempt(3, o.plus_millis(2 * DAY), o.plus_millis(2 * DAY), now);
    let s = fx.status(3, now);
    assert_eq!(
        s.reasons,
        vec![missed(a), missed(b)],
        "not consecutive by deadline"
    );
    fx.unexempt(e, now);
    assert_eq!(fx.status(3, now).colour, Colour::Red);
}

#[test]
fn under_negative_result_a_made_up_round_still_counts_towards_repeated_misses() {
    let mut fx = city(Policy {
        restore_on: RestoreOn::NegativeResult,
        red_after_consecutive_misses: Some(2),
        ..Policy::default()
    });
    three_days(&mut fx);
    let later = opens().plus_millis(3 * DAY);
    fx.records(vec![rec(1, "T1", later)], later);
    let s = fx.status(1, later);
    assert_eq!(s.colour, Colour::Red, "made up, but no negative result yet");
    fx.results(vec![res("T1", TestResult::Negative, later)], later);
    assert_eq!(fx.status(1, later).colour, Colour::Green);
}

fn sample_age(hours: u32) -> Policy {
    Policy {
        max_sample_age_hours: Some(hours),
        ..Policy::default()
    }
}

#[test]
fn no_recent_sample_after_max_sample_age_hours_with_valid_until() {
    let mut fx = city(sample_age(72));
    let s = fx.status(1, at(0));
    assert_eq!(
        s.reasons,
        vec![reason(ReasonCode::NoRecentSample)],
        "never sampled"
    );
    assert_eq!(s.valid_until, None, "nothing will change by itself");
    fx.records(vec![rec(1, "T1", at(0))], at(HOUR));
    let s = fx.status(1, at(HOUR));
    assert_eq!(s.colour, Colour::Green);
    assert_eq!(s.valid_until, Some(at(72 * HOUR)));
    // Exactly 72 hours old is still recent; a millisecond more is not.
    assert_eq!(fx.status(1, at(72 * HOUR)).colour, Colour::Green);
    let s = fx.status(1, at(72 * HOUR + 1));
    assert_eq!((s.colour, s.valid_until), (Colour::Yellow, None));
}

#[test]
fn an_exemption_in_force_suppresses_no_recent_sample() {
    let mut fx = city(sample_age(72));
    let (from, until) = (at(10 * HOUR), at(20 * HOUR));
    fx.exempt(1, from, until, at(0));
    let s = fx.status(1, at(0));
    assert_eq!((s.colour, s.valid_until), (Colour::Yellow, Some(from)));
    let s = fx.status(1, from);
    assert_eq!((s.colour, s.valid_until), (Colour::Green, Some(until)));
    let s = fx.status(1, until.plus_millis(-1));
    assert_eq!((s.colour, s.valid_until), (Colour::Green, Some(until)));
    // At its last instant the answer still changes a millisecond later.
    let s = fx.status(1, until);
    assert_eq!(
        (s.colour, s.valid_until),
        (Colour::Green, Some(until)),
        "until is inclusive"
    );
    let s = fx.status(1, until.plus_millis(1));
    assert_eq!((s.colour, s.valid_until), (Colour::Yellow, None));
}

#[test]
fn valid_until_skips_an_exemption_edge_that_changes_nothing() {
    let mut fx = city(sample_age(72));
    fx.records(vec![rec(1, "T1", at(0))], at(0));
    // The exemption starts and ends while the sample is recent.
    fx.exempt(1, at(HOUR), at(2 * HOUR), at(0));
    assert_eq!(fx.status(1, at(0)).valid_until, Some(at(72 * HOUR)));
    // One that outlasts the sample's age moves the change to its end.
    fx.exempt(1, at(70 * HOUR), at(100 * HOUR), at(0));
    assert_eq!(fx.status(1, at(0)).valid_until, Some(at(100 * HOUR)));
}

#[test]
fn an_unknown_id_is_green_or_yellow_under_the_sample_age_rule() {
    let fx = city(Policy::default());
    assert_eq!(fx.status(999, at(0)), crate::engine::Status::green());
    let fx = city(sample_age(72));
    let s = fx.status(999, at(0));
    assert_eq!(
        (s.colour, s.reasons, s.valid_until),
        (
            Colour::Yellow,
            vec![reason(ReasonCode::NoRecentSample)],
            None
        )
    );
}

#[test]
fn reds_outrank_yellows() {
    let mut fx = city(sample_age(1));
    fx.records(vec![rec(1, "T1", at(0))], at(0));
    fx.results(vec![res("T1", TestResult::Positive, at(HOUR))], at(HOUR));
    let s = fx.status(1, at(5 * HOUR));
    assert_eq!(s.colour, Colour::Red);
    assert_eq!(
        s.reasons,
        vec![
            reason(ReasonCode::Positive),
            reason(ReasonCode::NoRecentSample)
        ]
    );
}

// ------------------------------------------------------- officials' views

#[test]
fn the_resident_view_lists_flagged_rounds_and_refuses_moved_out_people() {
    let (mut fx, r) = city_with_round(Policy::default());
    fx.records(vec![rec(2, "T1", at(HOUR))], at(HOUR));
    fx.close(r, deadline());
    let v = fx.engine.resident_view(pid(1)).expect("registered");
    assert_eq!(v.flagged_rounds, vec![r.to_string()]);
    assert_eq!((v.name.as_str(), v.household.as_str()), ("王芳", "101"));
    assert_eq!(v.area, "崇文路街道/学院社区/第01网格/1号楼");
    assert_eq!(v.last_sample_at, None);
    let v = fx.engine.resident_view(pid(2)).expect("registered");
    assert!(v.flagged_rounds.is_empty());
    assert_eq!(v.last_sample_at, Some(at(HOUR)));
    fx.move_out(1, deadline());
    assert!(fx.engine.resident_view(pid(1)).is_none());
    assert!(fx.engine.resident_view(pid(99)).is_none());
}

#[test]
fn register_imports_report_inserted_updated_unchanged() {
    let mut fx = city(Policy::default());
    let p = fx.register(
        vec![
            row(1, "崇文路街道/学院社区/第01网格/1号楼", "101", "王芳"),
            row(2, "崇文路街道/学院社区/第01网格/1号楼", "101", "李四四"),
            row(50, "崇文路街道/学院社区/第01网格/1号楼", "101", "新人"),
        ],
        at(0),
    );
    assert_eq!(
        p,
        Prepared::Import {
            total: 8,
            inserted: 1,
            updated: 1,
            unchanged: 1
        }
    );
    fx.move_out(50, at(0));
    assert_eq!(fx.engine.resident_count(), 7);
}

/// Batches judged into one group commit see each other through the overlay
/// before any of them is applied: a record again is a duplicate, a tube
/// fills across batches, its first site holds, and a result finds the
/// tube's records; split anywhere, the verdicts are those of one batch.
#[test]
fn batches_of_one_group_are_judged_as_one_batch() {
    let policy = Policy {
        pool_max: 3,
        ..Policy::default()
    };
    let fx = city(policy);
    let now = at(HOUR);
    let items = [
        rec(1, "G1", now),
        rec(2, "G1", now),
        rec(1, "G1", now),
        rec_at(3, "G1", now, "S02"),
        rec(3, "G1", now),
        rec(4, "G1", now),
        rec(5, "G2", now),
    ];
    let want = vec![
        ACCEPTED,
        ACCEPTED,
        Verdict::Duplicate,
        Verdict::Rejected(RejectCode::TubeSiteConflict),
        ACCEPTED,
        Verdict::Rejected(RejectCode::TubeFull),
        ACCEPTED,
    ];
    for cut in 0..=items.len() {
        let mut overlay = crate::engine::Overlay::default();
        let mut got = fx.engine.judge_records(&items[..cut], now, &mut overlay);
        got.extend(fx.engine.judge_records(&items[cut..], now, &mut overlay));
        assert_eq!(got, want, "split at {cut}");
        let results = fx.engine.judge_results(
            &[
                res("G1", TestResult::Negative, now),
                res("G9", TestResult::Negative, now),
                res("G1", TestResult::Positive, now),
            ],
            now,
            &mut overlay,
        );
        assert_eq!(
            results,
            [
                ACCEPTED,
                FLAGGED,
                Verdict::Rejected(RejectCode::ConflictingResult)
            ]
        );
    }
}
