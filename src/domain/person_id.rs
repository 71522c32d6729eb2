//! `PersonId`: an 18-character resident ID number (GB 11643-1999).
//!
//! Six region digits, an eight-digit birth date `YYYYMMDD`, a three-digit
//! sequence and an ISO 7064 MOD 11-2 check character (`X` for 10). The value
//! keeps the 17 leading digits as one `u64`; the check character is derived.
//! `Debug` masks the number, so a stray `{:?}` never puts an ID in a log.
//! No I/O; the only clock read is in `FromStr`, for convenience at the edges.

use std::fmt;
use std::str::FromStr;

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Weights of ISO 7064 MOD 11-2 for the 17 leading digits (2^(17-i) mod 11).
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// Check character for each weighted sum modulo 11.
const CHECK_CHARS: [u8; 11] = *b"10X98765432";
/// 10^17: every 17-digit number is below it.
const LIMIT: u64 = 100_000_000_000_000_000;
/// Birth years before this are rejected as impossible: nobody alive was born
/// earlier, and the floor keeps `0000`–`1799` typos from passing.
const EARLIEST_BIRTH_YEAR: i32 = 1800;

/// A valid resident ID number. Built only by [`PersonId::parse_on`],
/// [`FromStr`] or [`PersonId::from_u64`], so holding one means holding a valid one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PersonId(u64);

/// Why a string is not a valid resident ID. Messages never repeat the ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonIdError {
    /// Not exactly 18 characters.
    #[error("a resident ID has 18 characters, found {found}")]
    Length { found: usize },
    /// A character other than a digit (or a final `X`/`x`); `position` is 1-based.
    #[error("character {position} of the resident ID is not allowed")]
    Character { position: usize },
    /// The eight birth-date digits are not a calendar date (or before 1800).
    #[error("the birth date in the resident ID does not exist")]
    BirthDate,
    /// The birth date lies after today.
    #[error("the birth date in the resident ID is in the future")]
    FutureBirthDate,
    /// The check character does not match the 17 leading digits.
    #[error("the check character of the resident ID does not match")]
    CheckCharacter,
    /// A number handed to [`PersonId::from_u64`] has more than 17 digits.
    #[error("a resident ID number has at most 17 leading digits")]
    OutOfRange,
}

impl PersonId {
    /// Parses an 18-character ID, judging the birth date against `today`.
    ///
    /// Fails on a wrong length, a character that is not a digit (or a final
    /// `X`/`x`), a birth date that does not exist or lies after `today`, or a
    /// wrong check character. A lower-case `x` is accepted and normalised.
    pub fn parse_on(s: &str, today: NaiveDate) -> Result<PersonId, PersonIdError> {
        let bytes = s.as_bytes();
        if bytes.len() != 18 {
            return Err(PersonIdError::Length {
                found: s.chars().count(),
            });
        }
        let mut first17 = [0u8; 17];
        let mut value = 0u64;
        for (i, &b) in bytes[..17].iter().enumerate() {
            if !b.is_ascii_digit() {
                return Err(PersonIdError::Character { position: i + 1 });
            }
            first17[i] = b;
            value = value * 10 + u64::from(b - b'0');
        }
        let last = bytes[17].to_ascii_uppercase();
        if !(last.is_ascii_digit() || last == b'X') {
            return Err(PersonIdError::Character { position: 18 });
        }
        let birth = birth_date_of(value).ok_or(PersonIdError::BirthDate)?;
        if birth > today {
            return Err(PersonIdError::FutureBirthDate);
        }
        if char::from(last) != compute_check_char(&first17) {
            return Err(PersonIdError::CheckCharacter);
        }
        Ok(PersonId(value))
    }

    /// The 17 leading digits as a number (the check character is derived).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Rebuilds an ID from [`PersonId::as_u64`], e.g. when read back from the
    /// store. Checks that the number has at most 17 digits and that its birth
    /// date exists; it does not judge the date against today.
    pub fn from_u64(v: u64) -> Result<PersonId, PersonIdError> {
        if v >= LIMIT {
            return Err(PersonIdError::OutOfRange);
        }
        birth_date_of(v).ok_or(PersonIdError::BirthDate)?;
        Ok(PersonId(v))
    }

    /// The check character (`0`–`9` or upper-case `X`).
    pub fn check_char(self) -> char {
        compute_check_char(&self.first17())
    }

    /// All 18 characters as ASCII bytes, with an upper-case `X`: what
    /// `Display` writes, without the formatting machinery (the status
    /// cache's key is a MAC of these bytes, on every record and lookup).
    pub fn ascii(self) -> [u8; 18] {
        let digits = self.first17();
        let mut out = [0u8; 18];
        out[..17].copy_from_slice(&digits);
        out[17] = compute_check_char(&digits) as u8;
        out
    }

    /// The ID as the contract shows it to officials: the first 6 and last 4
    /// characters, with 8 `*` between (`610802********001X`).
    pub fn masked(self) -> String {
        let digits = self.first17();
        let mut out = String::with_capacity(18);
        out.extend(digits[..6].iter().map(|&b| char::from(b)));
        out.push_str("********");
        out.extend(digits[14..].iter().map(|&b| char::from(b)));
        out.push(self.check_char());
        out
    }

    /// The birth date encoded in digits 7–14.
    pub fn birth_date(self) -> NaiveDate {
        birth_date_of(self.0).expect("a PersonId always holds a valid birth date")
    }

    /// The 17 leading digits as ASCII.
    fn first17(self) -> [u8; 17] {
        let mut digits = [b'0'; 17];
        let mut v = self.0;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        digits
    }
}

/// The ISO 7064 MOD 11-2 check character of 17 ASCII digits (`b'0'..=b'9'`).
///
/// Panics in debug builds if a byte is not an ASCII digit.
pub fn compute_check_char(first17: &[u8; 17]) -> char {
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(&b, w)| {
            debug_assert!(b.is_ascii_digit(), "compute_check_char takes ASCII digits");
            u32::from(b.wrapping_sub(b'0')) * w
        })
        .sum();
    char::from(CHECK_CHARS[(sum % 11) as usize])
}

/// The birth date held in a 17-digit value, if it is a real date from 1800 on.
fn birth_date_of(v: u64) -> Option<NaiveDate> {
    let yyyymmdd = (v / 1000) % 100_000_000;
    let year = (yyyymmdd / 10_000) as i32;
    let month = ((yyyymmdd / 100) % 100) as u32;
    let day = (yyyymmdd % 100) as u32;
    if year < EARLIEST_BIRTH_YEAR {
        return None;
    }
    NaiveDate::from_ymd_opt(year, month, day)
}

/// Today's date in Asia/Shanghai.
///
/// Every record and every gate lookup parses an ID, so each thread keeps the
/// date with the span of UTC seconds it was seen to hold: from the clock
/// reading that computed it to the next local midnight. A reading inside
/// the span costs one clock read; one outside it (the day has turned, or
/// the clock was set back) computes the date again.
fn today_in_shanghai() -> NaiveDate {
    thread_local! {
        static TODAY: KeptDate = const { std::cell::Cell::new(None) };
    }
    TODAY.with(|kept| date_in_shanghai(kept, Utc::now()))
}

/// A date in Asia/Shanghai with the span of UTC seconds `[from, until)` it
/// is known to hold.
type KeptDate = std::cell::Cell<Option<(i64, i64, NaiveDate)>>;

/// The date in Asia/Shanghai at `now`: `kept`'s if `now` is inside its span,
/// else computed and kept from `now` to the next local midnight.
fn date_in_shanghai(kept: &KeptDate, now: chrono::DateTime<Utc>) -> NaiveDate {
    let secs = now.timestamp();
    if let Some((from, until, date)) = kept.get()
        && (from..until).contains(&secs)
    {
        return date;
    }
    let date = now.with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    kept.set(next_midnight_in_shanghai(date).map(|until| (secs, until, date)));
    date
}

/// The UTC second at which the day after `date` begins in Asia/Shanghai
/// (None if that midnight does not exist locally, which no rule since 1991
/// gives; the date is then not kept).
fn next_midnight_in_shanghai(date: NaiveDate) -> Option<i64> {
    use chrono::TimeZone;
    let midnight = date.succ_opt()?.and_hms_opt(0, 0, 0)?;
    chrono_tz::Asia::Shanghai
        .from_local_datetime(&midnight)
        .earliest()
        .map(|t| t.timestamp())
}

impl FromStr for PersonId {
    type Err = PersonIdError;

    /// Parses against today's date in Asia/Shanghai. This is the one clock
    /// read in the domain, a convenience for the edges (JSON bodies, paths);
    /// code that must be reproducible calls [`PersonId::parse_on`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PersonId::parse_on(s, today_in_shanghai())
    }
}

impl TryFrom<String> for PersonId {
    type Error = PersonIdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PersonId> for String {
    fn from(id: PersonId) -> String {
        id.to_string()
    }
}

impl fmt::Display for PersonId {
    /// All 18 characters, with an upper-case `X`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ascii = self.ascii();
        f.write_str(std::str::from_utf8(&ascii).expect("ASCII digits"))
    }
}

impl fmt::Debug for PersonId {
    /// Masked, so that logs never hold a whole ID: `PersonId(610802********001X)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonId({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;
    use proptest::prelude::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    /// Builds a valid ID string from its 17 leading digits.
    fn with_check(first17: &str) -> String {
        let bytes: [u8; 17] = first17.as_bytes().try_into().unwrap();
        format!("{first17}{}", compute_check_char(&bytes))
    }

    const TODAY: (i32, u32, u32) = (2022, 4, 19);

    fn today() -> NaiveDate {
        date(TODAY.0, TODAY.1, TODAY.2)
    }

    #[test]
    fn a_known_published_example_has_check_character_x() {
        // The worked example of GB 11643-1999: 11010519491231002X.
        let id = PersonId::parse_on("11010519491231002X", today()).unwrap();
        assert_eq!(id.check_char(), 'X');
        assert_eq!(id.to_string(), "11010519491231002X");
        assert_eq!(id.birth_date(), date(1949, 12, 31));
    }

    #[test]
    fn rejected_inputs_give_the_matching_error() {
        let good = with_check("61080219850312001");
        let wrong_check = {
            let c = good.chars().last().unwrap();
            let other = if c == '0' { '1' } else { '0' };
            format!("{}{other}", &good[..17])
        };
        let cases: Vec<(String, PersonIdError)> = vec![
            (String::new(), PersonIdError::Length { found: 0 }),
            (good[..17].to_string(), PersonIdError::Length { found: 17 }),
            (format!("{good}0"), PersonIdError::Length { found: 19 }),
            (
                format!(" {}", &good[1..]),
                PersonIdError::Character { position: 1 },
            ),
            (
                format!("{}a{}", &good[..5], &good[6..]),
                PersonIdError::Character { position: 6 },
            ),
            (
                format!("{}X{}", &good[..16], &good[17..]),
                PersonIdError::Character { position: 17 },
            ),
            (
                format!("{}Y", &good[..17]),
                PersonIdError::Character { position: 18 },
            ),
            (
                format!("{}-", &good[..17]),
                PersonIdError::Character { position: 18 },
            ),
            (
                "６１０８０２１９８５０３１２００１X".to_string(),
                PersonIdError::Length { found: 18 },
            ),
            (with_check("61080219851312001"), PersonIdError::BirthDate),
            (with_check("61080219850230001"), PersonIdError::BirthDate),
            (with_check("61080219850300001"), PersonIdError::BirthDate),
            (with_check("61080219000229001"), PersonIdError::BirthDate),
            (with_check("61080200000101001"), PersonIdError::BirthDate),
            (with_check("61080217991231001"), PersonIdError::BirthDate),
            (
                with_check("61080220220420001"),
                PersonIdError::FutureBirthDate,
            ),
            (
                with_check("61080230000101001"),
                PersonIdError::FutureBirthDate,
            ),
            (wrong_check, PersonIdError::CheckCharacter),
        ];
        for (input, expected) in cases {
            assert_eq!(
                PersonId::parse_on(&input, today()),
                Err(expected),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn a_full_width_string_of_eighteen_characters_is_rejected() {
        // 18 characters but 54 bytes: never a panic on slicing.
        let s = "一二三四五六七八九十一二三四五六七八";
        assert!(matches!(
            PersonId::parse_on(s, today()),
            Err(PersonIdError::Length { .. })
        ));
    }

    #[test]
    fn lower_case_x_is_accepted_and_normalised() {
        let id = PersonId::parse_on("11010519491231002x", today()).unwrap();
        assert_eq!(id.to_string(), "11010519491231002X");
        assert_eq!(
            id,
            PersonId::parse_on("11010519491231002X", today()).unwrap()
        );
    }

    #[test]
    fn leap_day_2000_is_a_birth_date_and_1900_is_not() {
        assert!(PersonId::parse_on(&with_check("61080220000229001"), today()).is_ok());
        assert_eq!(
            PersonId::parse_on(&with_check("61080219000229001"), today()),
            Err(PersonIdError::BirthDate)
        );
    }

    #[test]
    fn born_today_is_accepted_and_born_tomorrow_is_not() {
        assert!(PersonId::parse_on(&with_check("61080220220419001"), today()).is_ok());
        assert_eq!(
            PersonId::parse_on(&with_check("61080220220420001"), today()),
            Err(PersonIdError::FutureBirthDate)
        );
    }

    #[test]
    fn debug_masks_the_number_and_masked_keeps_six_and_four() {
        let id = PersonId::parse_on(&with_check("61080219850312001"), today()).unwrap();
        let shown = id.to_string();
        assert_eq!(id.masked(), format!("610802********{}", &shown[14..]));
        assert_eq!(format!("{id:?}"), format!("PersonId({})", id.masked()));
        assert!(!format!("{id:?}").contains("19850312"));
    }

    #[test]
    fn from_u64_round_trips_and_rejects_bad_numbers() {
        let id = PersonId::parse_on("11010519491231002X", today()).unwrap();
        assert_eq!(id.as_u64(), 11_010_519_491_231_002);
        assert_eq!(PersonId::from_u64(id.as_u64()), Ok(id));
        assert_eq!(PersonId::from_u64(LIMIT), Err(PersonIdError::OutOfRange));
        assert_eq!(
            PersonId::from_u64(61_080_219_851_312_001),
            Err(PersonIdError::BirthDate)
        );
        // No future check: a stored ID stays readable whatever the clock says.
        assert!(PersonId::from_u64(61_080_230_000_101_001).is_ok());
    }

    #[test]
    fn serde_writes_the_string_and_reads_through_the_parser() {
        let id = PersonId::parse_on("11010519491231002x", today()).unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"11010519491231002X\"");
        let back: PersonId = serde_json::from_str("\"11010519491231002x\"").unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<PersonId>("\"110105194912310021\"").is_err());
        assert!(serde_json::from_str::<PersonId>("110105194912310020").is_err());
    }

    #[test]
    fn from_str_judges_against_the_real_clock() {
        assert!("11010519491231002X".parse::<PersonId>().is_ok());
        assert_eq!(
            with_check("61080299991231001").parse::<PersonId>(),
            Err(PersonIdError::FutureBirthDate)
        );
    }

    /// 17 leading digits of a valid ID: any region, a birth date between
    /// 1800-01-01 and `today`, any sequence.
    fn valid_first17() -> impl Strategy<Value = String> {
        let first = date(1800, 1, 1).num_days_from_ce();
        let last = today().num_days_from_ce();
        (0u32..1_000_000, first..=last, 0u32..1000).prop_map(|(region, days, seq)| {
            let d = NaiveDate::from_num_days_from_ce_opt(days).unwrap();
            format!("{region:06}{}{seq:03}", d.format("%Y%m%d"))
        })
    }

    #[test]
    fn the_kept_date_is_the_date_in_shanghai_and_lasts_until_its_midnight() {
        // Twice on one thread: computed, then kept; both the zone's date.
        for _ in 0..2 {
            let before = Utc::now()
                .with_timezone(&chrono_tz::Asia::Shanghai)
                .date_naive();
            let kept = today_in_shanghai();
            let after = Utc::now()
                .with_timezone(&chrono_tz::Asia::Shanghai)
                .date_naive();
            assert!(
                kept == before || kept == after,
                "{kept} is neither {before} nor {after}"
            );
        }
        // UTC+8, no daylight saving: a day ends at 16:00 UTC of its date,
        // a year's last day included.
        for (d, ends) in [
            (date(2026, 12, 5), "2026-12-05T16:00:00+00:00"),
            (date(2026, 12, 31), "2026-12-31T16:00:00+00:00"),
        ] {
            let until = next_midnight_in_shanghai(d).unwrap();
            let until = chrono::DateTime::from_timestamp(until, 0).unwrap();
            assert_eq!(until.to_rfc3339(), ends);
        }
    }

    #[test]
    fn the_kept_date_turns_at_midnight_in_shanghai_and_follows_a_clock_set_back() {
        let at = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap()
                .with_timezone(&Utc)
        };
        let kept = KeptDate::new(None);
        for (now, want) in [
            ("2026-12-05T10:00:00Z", date(2026, 12, 5)),
            ("2026-12-05T15:59:59Z", date(2026, 12, 5)),
            // 16:00 UTC is midnight in Shanghai.
            ("2026-12-05T16:00:00Z", date(2026, 12, 6)),
            ("2026-12-06T03:00:00Z", date(2026, 12, 6)),
            // The clock set back before the kept span: computed again.
            ("2026-12-05T15:00:00Z", date(2026, 12, 5)),
            ("2026-12-05T16:00:01Z", date(2026, 12, 6)),
        ] {
            assert_eq!(date_in_shanghai(&kept, at(now)), want, "at {now}");
        }
    }

    #[test]
    fn an_id_born_today_in_shanghai_parses_and_one_born_tomorrow_does_not() {
        let today = today_in_shanghai();
        let born = |d: NaiveDate| with_check(&format!("110105{}002", d.format("%Y%m%d")));
        assert!(born(today).parse::<PersonId>().is_ok());
        let tomorrow = today.succ_opt().unwrap();
        // Unless the day turned between the two reads.
        if today_in_shanghai() == today {
            assert_eq!(
                born(tomorrow).parse::<PersonId>(),
                Err(PersonIdError::FutureBirthDate)
            );
        }
    }

    proptest! {
        #[test]
        fn every_generated_valid_id_parses_and_round_trips(first17 in valid_first17()) {
            let s = with_check(&first17);
            let id = PersonId::parse_on(&s, today()).unwrap();
            prop_assert_eq!(id.to_string(), s.clone());
            prop_assert_eq!(PersonId::parse_on(&id.to_string(), today()), Ok(id));
            prop_assert_eq!(PersonId::from_u64(id.as_u64()), Ok(id));
            prop_assert_eq!(id.masked().len(), 18);
            prop_assert_eq!(&id.ascii()[..], s.as_bytes());
        }

        #[test]
        fn every_single_character_corruption_is_rejected(
            first17 in valid_first17(),
            position in 0usize..18,
            replacement in prop::sample::select(b"0123456789X".to_vec()),
        ) {
            let s = with_check(&first17);
            let mut bytes = s.clone().into_bytes();
            prop_assume!(bytes[position] != replacement);
            bytes[position] = replacement;
            let corrupted = String::from_utf8(bytes).unwrap();
            prop_assert!(PersonId::parse_on(&corrupted, today()).is_err(), "{} accepted", corrupted);
        }
    }
}
