//! `TubeId`: the barcode on a sample tube, 1–32 characters of `[A-Za-z0-9-]`,
//! unique city-wide. Case is kept as scanned (`t1` and `T1` are two tubes).
//! No I/O.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Most characters a tube ID may have.
pub const MAX_LEN: usize = 32;

/// A valid tube ID. Built only through [`FromStr`] / [`TubeId::parse`] / serde.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TubeId(Box<str>);

/// Why a string is not a valid tube ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TubeIdError {
    /// The empty string.
    #[error("a tube ID must not be empty")]
    Empty,
    /// More than [`MAX_LEN`] characters.
    #[error("a tube ID has at most {MAX_LEN} characters, found {found}")]
    TooLong { found: usize },
    /// A character outside `[A-Za-z0-9-]`; `position` is 1-based.
    #[error("character {position} of the tube ID is not a letter, digit or '-'")]
    Character { position: usize },
}

impl TubeId {
    /// Parses a tube ID. Fails when it is empty, longer than [`MAX_LEN`]
    /// characters, or holds a character outside `[A-Za-z0-9-]`.
    pub fn parse(s: &str) -> Result<TubeId, TubeIdError> {
        check(s)?;
        Ok(TubeId(s.into()))
    }

    /// Whether `s` is a valid tube ID, without keeping it (the errors of
    /// [`TubeId::parse`]).
    pub fn validate(s: &str) -> Result<(), TubeIdError> {
        check(s)
    }

    /// The ID as scanned.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check(s: &str) -> Result<(), TubeIdError> {
    if s.is_empty() {
        return Err(TubeIdError::Empty);
    }
    if let Some((i, _)) = s
        .chars()
        .enumerate()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(TubeIdError::Character { position: i + 1 });
    }
    // Only ASCII is left, so bytes are characters.
    if s.len() > MAX_LEN {
        return Err(TubeIdError::TooLong { found: s.len() });
    }
    Ok(())
}

impl FromStr for TubeId {
    type Err = TubeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TubeId::parse(s)
    }
}

impl TryFrom<String> for TubeId {
    type Error = TubeIdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        check(&s)?;
        Ok(TubeId(s.into_boxed_str()))
    }
}

impl From<TubeId> for String {
    fn from(id: TubeId) -> String {
        id.0.into_string()
    }
}

// Hash and Eq of a `TubeId` are those of its string, so a map keyed by
// tube IDs can be searched with a `&str`.
impl std::borrow::Borrow<str> for TubeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TubeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TubeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TubeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TubeId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejected_inputs_give_the_matching_error() {
        let long = "T".repeat(MAX_LEN + 1);
        let cases: Vec<(&str, TubeIdError)> = vec![
            ("", TubeIdError::Empty),
            (&long, TubeIdError::TooLong { found: MAX_LEN + 1 }),
            (" T1", TubeIdError::Character { position: 1 }),
            ("T1 ", TubeIdError::Character { position: 3 }),
            ("T_1", TubeIdError::Character { position: 2 }),
            ("T/1", TubeIdError::Character { position: 2 }),
            ("管1", TubeIdError::Character { position: 1 }),
            ("T１", TubeIdError::Character { position: 2 }),
        ];
        for (input, expected) in cases {
            assert_eq!(TubeId::parse(input), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn accepted_edge_cases_keep_their_text() {
        for s in ["T", "-", "0", "T2204190001", "a-B-9", &"Z".repeat(MAX_LEN)] {
            assert_eq!(TubeId::parse(s).unwrap().as_str(), s);
        }
        assert_ne!(TubeId::parse("t1").unwrap(), TubeId::parse("T1").unwrap());
    }

    #[test]
    fn serde_writes_the_string_and_reads_through_the_parser() {
        let id = TubeId::parse("T2204190001").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"T2204190001\"");
        assert_eq!(
            serde_json::from_str::<TubeId>("\"T2204190001\"").unwrap(),
            id
        );
        assert!(serde_json::from_str::<TubeId>("\"T 1\"").is_err());
    }

    proptest! {
        #[test]
        fn every_valid_tube_id_round_trips(s in "[A-Za-z0-9-]{1,32}") {
            let id: TubeId = s.parse().unwrap();
            prop_assert_eq!(id.to_string(), s);
        }

        #[test]
        fn a_string_with_a_foreign_character_is_rejected(
            prefix in "[A-Za-z0-9-]{0,10}",
            bad in "[^A-Za-z0-9-]",
        ) {
            let s = format!("{prefix}{bad}");
            prop_assert!(TubeId::parse(&s).is_err());
        }
    }
}
