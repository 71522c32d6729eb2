//! `Timestamp`: an instant as milliseconds since the Unix epoch (UTC), parsed
//! from RFC 3339 with an explicit offset and shown in Asia/Shanghai.
//!
//! The store keeps UTC; responses use Asia/Shanghai (`+08:00` since 1991).
//! A time without an offset is rejected rather than guessed. No clock is read
//! here: "now" comes from the engine's injected clock. No I/O.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use serde::{Deserialize, Serialize};

/// One minute in milliseconds.
pub const MINUTE_MS: i64 = 60_000;
/// One hour in milliseconds.
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// One day (24 hours) in milliseconds.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// An instant, in milliseconds since 1970-01-01T00:00:00Z.
///
/// Always within chrono's representable range (about ±262,000 years), which
/// [`Timestamp::from_millis`] enforces by saturating.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timestamp(i64);

/// Why a string is not an RFC 3339 time with an offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// A well-formed date and time without `Z` or `±hh:mm`.
    #[error("the time has no offset; write it with Z or ±hh:mm, e.g. 2022-04-19T08:15:00+08:00")]
    MissingOffset,
    /// Anything else that is not RFC 3339.
    #[error("the time is not RFC 3339, e.g. 2022-04-19T08:15:00+08:00")]
    Malformed,
}

/// The first instant written with a four-digit year in `+08:00`
/// (0000-01-01T00:00:00+08:00).
const ANSWERABLE_FROM_MS: i64 = -62_167_248_000_000;
/// The last one (9999-12-31T23:59:59.999+08:00).
const ANSWERABLE_UNTIL_MS: i64 = 253_402_271_999_999;

impl Timestamp {
    /// One minute in milliseconds (also [`MINUTE_MS`]).
    pub const MINUTE_MS: i64 = MINUTE_MS;
    /// One hour in milliseconds (also [`HOUR_MS`]).
    pub const HOUR_MS: i64 = HOUR_MS;
    /// One day in milliseconds (also [`DAY_MS`]).
    pub const DAY_MS: i64 = DAY_MS;

    /// Parses RFC 3339 with an explicit offset (`Z` or `±hh:mm`), e.g.
    /// `2022-04-19T08:15:00+08:00` or `2022-04-19T00:15:00.250Z`. Fails with
    /// [`TimeError::MissingOffset`] for a date-time without one and
    /// [`TimeError::Malformed`] for anything else. Digits below the
    /// millisecond are dropped (rounded towards the past).
    ///
    /// A time whose year in `+08:00` has other than four digits (possible
    /// with a far offset at either end of years 0000–9999) is
    /// [`TimeError::Malformed`] too: it could not be answered in RFC 3339.
    pub fn parse(s: &str) -> Result<Timestamp, TimeError> {
        match DateTime::parse_from_rfc3339(s) {
            Ok(t) if (ANSWERABLE_FROM_MS..=ANSWERABLE_UNTIL_MS).contains(&t.timestamp_millis()) => {
                Ok(Timestamp::from_millis(t.timestamp_millis()))
            }
            Err(_) if looks_like_local_time(s) => Err(TimeError::MissingOffset),
            _ => Err(TimeError::Malformed),
        }
    }

    /// The instant `millis` after the epoch, saturated into chrono's range.
    pub fn from_millis(millis: i64) -> Timestamp {
        let min = DateTime::<Utc>::MIN_UTC.timestamp_millis();
        let max = DateTime::<Utc>::MAX_UTC.timestamp_millis();
        Timestamp(millis.clamp(min, max))
    }

    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// The instant of a chrono time (sub-millisecond digits dropped).
    pub fn from_datetime(t: DateTime<Utc>) -> Timestamp {
        Timestamp::from_millis(t.timestamp_millis())
    }

    /// The instant as a chrono UTC time.
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).expect("a Timestamp stays within chrono's range")
    }

    /// RFC 3339 in Asia/Shanghai: `2022-04-19T08:15:00+08:00`, or with
    /// milliseconds when there are any: `2022-04-19T08:15:00.250+08:00`.
    pub fn to_rfc3339(self) -> String {
        let local = self.to_datetime().with_timezone(&shanghai_fixed(self));
        if self.0.rem_euclid(1000) == 0 {
            local.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
        } else {
            local.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
        }
    }

    /// The start of the hour containing `self`, on Asia/Shanghai's clock.
    #[must_use]
    pub fn hour_floor_shanghai(self) -> Timestamp {
        let offset_ms = i64::from(shanghai_fixed(self).local_minus_utc()) * 1000;
        let local = self.0.saturating_add(offset_ms);
        Timestamp::from_millis(local - local.rem_euclid(HOUR_MS) - offset_ms)
    }

    /// The calendar date of `self` in Asia/Shanghai.
    pub fn shanghai_date(self) -> NaiveDate {
        self.to_datetime()
            .with_timezone(&shanghai_fixed(self))
            .date_naive()
    }

    /// `self` moved by `millis` (negative moves back), saturating.
    #[must_use]
    pub fn plus_millis(self, millis: i64) -> Timestamp {
        Timestamp::from_millis(self.0.saturating_add(millis))
    }
}

/// Asia/Shanghai's offset at `t`. Before 1901 the zone's local mean time
/// (+08:05:43) cannot be written as `±hh:mm`, so such instants are shown in
/// `+08:00`; keeping the output parseable matters more than 1900's sundials.
fn shanghai_fixed(t: Timestamp) -> FixedOffset {
    let offset = Shanghai
        .offset_from_utc_datetime(&t.to_datetime().naive_utc())
        .fix();
    if offset.local_minus_utc() % 60 == 0 {
        offset
    } else {
        FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
    }
}

/// Whether `s` is a date and time that would be valid RFC 3339 with an offset.
fn looks_like_local_time(s: &str) -> bool {
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dt%H:%M:%S%.f",
    ]
    .iter()
    .any(|format| NaiveDateTime::parse_from_str(s, format).is_ok())
}

impl fmt::Display for Timestamp {
    /// Same as [`Timestamp::to_rfc3339`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl TryFrom<String> for Timestamp {
    type Error = TimeError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Timestamp::parse(&s)
    }
}

impl From<Timestamp> for String {
    fn from(t: Timestamp) -> String {
        t.to_rfc3339()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    /// Found by the `time` fuzz target: an offset can carry a time written
    /// with a four-digit year out of them in `+08:00`, where it would be
    /// answered as `+10000-…` or `-0001-…`, which is not RFC 3339.
    #[test]
    fn every_accepted_time_is_answered_as_rfc3339_that_parses_back() {
        for s in [
            "9999-12-31T23:59:59-12:00",
            "9999-12-31T16:00:00Z",
            "0000-01-01T00:00:00+23:59",
            "0000-01-01T00:00:00+08:01",
        ] {
            assert_eq!(Timestamp::parse(s), Err(TimeError::Malformed), "{s}");
        }
        for s in [
            "9999-12-31T15:59:59.999Z",
            "9999-12-31T23:59:59+08:00",
            "0000-01-01T00:00:00+08:00",
            "0000-01-01T07:59:59+08:00",
            "0000-01-01T00:00:00+00:00",
        ] {
            let t = t(s);
            assert_eq!(Timestamp::parse(&t.to_rfc3339()), Ok(t), "{s}");
        }
    }

    #[test]
    fn rejected_inputs_give_the_matching_error() {
        let cases = [
            ("2022-04-19T08:15:00", TimeError::MissingOffset),
            ("2022-04-19T08:15:00.250", TimeError::MissingOffset),
            ("2022-04-19 08:15:00", TimeError::MissingOffset),
            ("", TimeError::Malformed),
            ("2022-04-19", TimeError::Malformed),
            ("08:15:00+08:00", TimeError::Malformed),
            ("2022-04-19T08:15+08:00", TimeError::Malformed),
            ("2022-04-19T08:15:00+0800", TimeError::Malformed),
            ("2022-04-19T08:15:00+08", TimeError::Malformed),
            ("2022-02-30T08:15:00+08:00", TimeError::Malformed),
            ("2022-04-19T24:15:00+08:00", TimeError::Malformed),
            (" 2022-04-19T08:15:00+08:00", TimeError::Malformed),
            ("2022-04-19T08:15:00+08:00 ", TimeError::Malformed),
            ("1650327300000", TimeError::Malformed),
            ("yesterday", TimeError::Malformed),
        ];
        for (input, expected) in cases {
            assert_eq!(Timestamp::parse(input), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn offsets_are_applied_and_the_same_instant_compares_equal() {
        let a = t("2022-04-19T08:15:00+08:00");
        assert_eq!(a, t("2022-04-19T00:15:00Z"));
        assert_eq!(a, t("2022-04-19T00:15:00z"));
        assert_eq!(a, t("2022-04-18T19:15:00-05:00"));
        assert_eq!(a.as_millis(), 1_650_327_300_000);
        assert_eq!(a.to_datetime().timestamp(), 1_650_327_300);
        assert_eq!(Timestamp::from_datetime(a.to_datetime()), a);
    }

    #[test]
    fn output_is_shanghai_time_with_milliseconds_only_when_present() {
        assert_eq!(
            t("2022-04-19T00:15:00Z").to_rfc3339(),
            "2022-04-19T08:15:00+08:00"
        );
        assert_eq!(
            t("2022-04-19T00:15:00.25Z").to_rfc3339(),
            "2022-04-19T08:15:00.250+08:00"
        );
        assert_eq!(
            t("2022-04-19T00:15:00.0009Z").to_rfc3339(),
            "2022-04-19T08:15:00+08:00"
        );
        assert_eq!(
            t("2022-04-19T00:15:00.250Z").to_string(),
            "2022-04-19T08:15:00.250+08:00"
        );
        assert_eq!(
            Timestamp::from_millis(-1).to_rfc3339(),
            "1970-01-01T07:59:59.999+08:00"
        );
    }

    #[test]
    fn hour_floor_and_date_follow_the_shanghai_clock() {
        let a = t("2022-04-19T08:59:59.999+08:00");
        assert_eq!(a.hour_floor_shanghai(), t("2022-04-19T08:00:00+08:00"));
        let b = t("2022-04-18T23:30:00Z");
        assert_eq!(b.hour_floor_shanghai(), t("2022-04-19T07:00:00+08:00"));
        assert_eq!(
            b.shanghai_date(),
            NaiveDate::from_ymd_opt(2022, 4, 19).unwrap()
        );
        assert_eq!(
            t("2022-04-18T15:59:59Z").shanghai_date(),
            NaiveDate::from_ymd_opt(2022, 4, 18).unwrap()
        );
        let exact = t("2022-04-19T08:00:00+08:00");
        assert_eq!(exact.hour_floor_shanghai(), exact);
    }

    #[test]
    fn arithmetic_saturates_instead_of_overflowing() {
        let a = t("2022-04-19T08:15:00+08:00");
        assert_eq!(a.plus_millis(HOUR_MS), t("2022-04-19T09:15:00+08:00"));
        assert_eq!(a.plus_millis(-DAY_MS), t("2022-04-18T08:15:00+08:00"));
        assert_eq!(Timestamp::HOUR_MS, 3_600_000);
        let far = Timestamp::from_millis(i64::MAX);
        assert_eq!(far.plus_millis(i64::MAX), far);
        assert_eq!(
            Timestamp::from_millis(i64::MIN).plus_millis(-1),
            Timestamp::from_millis(i64::MIN)
        );
        let _ = far.to_rfc3339();
    }

    #[test]
    fn serde_writes_shanghai_time_and_reads_through_the_parser() {
        let a = t("2022-04-19T00:15:00Z");
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            "\"2022-04-19T08:15:00+08:00\""
        );
        assert_eq!(
            serde_json::from_str::<Timestamp>("\"2022-04-19T00:15:00Z\"").unwrap(),
            a
        );
        assert!(serde_json::from_str::<Timestamp>("\"2022-04-19T00:15:00\"").is_err());
        assert!(serde_json::from_str::<Timestamp>("1650327300000").is_err());
    }

    proptest! {
        #[test]
        fn every_instant_round_trips_through_its_text(
            // Years 0001 to 9999 on the Shanghai clock: the range RFC 3339 can write.
            millis in -62_135_596_800_000i64..253_402_271_999_999,
        ) {
            let a = Timestamp::from_millis(millis);
            prop_assert_eq!(Timestamp::parse(&a.to_rfc3339()), Ok(a));
        }

        #[test]
        fn hour_floor_is_an_hour_start_at_or_before(millis in 0i64..4_102_444_800_000) {
            let a = Timestamp::from_millis(millis);
            let floor = a.hour_floor_shanghai();
            prop_assert!(floor <= a);
            prop_assert!(a.as_millis() - floor.as_millis() < HOUR_MS);
            prop_assert!(floor.to_rfc3339().contains(":00:00"));
        }
    }
}
