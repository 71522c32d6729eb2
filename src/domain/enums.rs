//! Closed sets of the contract: colours, reason codes, roles, lab results and
//! exemption reasons.
//!
//! Wire names are written out by hand, once in the serde attribute and once in
//! `as_str`, and a test checks the two agree for every variant: renaming a
//! Rust variant must never rename a released code. No I/O.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A gate colour. `Green < Yellow < Red`, so the colour of a set of reasons is
/// the maximum of theirs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Colour {
    #[serde(rename = "green")]
    Green,
    #[serde(rename = "yellow")]
    Yellow,
    #[serde(rename = "red")]
    Red,
}

impl Colour {
    /// Every colour, in order.
    pub const ALL: [Colour; 3] = [Colour::Green, Colour::Yellow, Colour::Red];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Green => "green",
            Colour::Yellow => "yellow",
            Colour::Red => "red",
        }
    }
}

/// Why a gate does not show green.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ReasonCode {
    /// A single-person tube tested positive (red; cleared only by an admin).
    #[serde(rename = "positive")]
    Positive,
    /// A pooled tube they were in tested positive (yellow).
    #[serde(rename = "pool_positive")]
    PoolPositive,
    /// Flagged as missing in a closed round (yellow).
    #[serde(rename = "missed_round")]
    MissedRound,
    /// Flagged in each of the last N closed rounds (red, by policy).
    #[serde(rename = "repeated_misses")]
    RepeatedMisses,
    /// No sample within the configured age (yellow, by policy).
    #[serde(rename = "no_recent_sample")]
    NoRecentSample,
}

impl ReasonCode {
    /// Every reason code.
    pub const ALL: [ReasonCode; 5] = [
        ReasonCode::Positive,
        ReasonCode::PoolPositive,
        ReasonCode::MissedRound,
        ReasonCode::RepeatedMisses,
        ReasonCode::NoRecentSample,
    ];

    /// The colour this reason alone gives: red for `positive` and
    /// `repeated_misses`, yellow for the rest.
    pub fn colour(self) -> Colour {
        match self {
            ReasonCode::Positive | ReasonCode::RepeatedMisses => Colour::Red,
            ReasonCode::PoolPositive | ReasonCode::MissedRound | ReasonCode::NoRecentSample => {
                Colour::Yellow
            }
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Positive => "positive",
            ReasonCode::PoolPositive => "pool_positive",
            ReasonCode::MissedRound => "missed_round",
            ReasonCode::RepeatedMisses => "repeated_misses",
            ReasonCode::NoRecentSample => "no_recent_sample",
        }
    }
}

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    #[serde(rename = "admin")]
    Admin,
    #[serde(rename = "official")]
    Official,
    #[serde(rename = "scanner")]
    Scanner,
    #[serde(rename = "lab")]
    Lab,
    #[serde(rename = "gate")]
    Gate,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Official,
        Role::Scanner,
        Role::Lab,
        Role::Gate,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Official => "official",
            Role::Scanner => "scanner",
            Role::Lab => "lab",
            Role::Gate => "gate",
        }
    }
}

/// A lab's verdict on a tube.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TestResult {
    #[serde(rename = "negative")]
    Negative,
    #[serde(rename = "positive")]
    Positive,
}

impl TestResult {
    /// Both results.
    pub const ALL: [TestResult; 2] = [TestResult::Negative, TestResult::Positive];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TestResult::Negative => "negative",
            TestResult::Positive => "positive",
        }
    }
}

/// Why a resident is excused from rounds for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ExemptionReason {
    #[serde(rename = "bedridden")]
    Bedridden,
    #[serde(rename = "infant")]
    Infant,
    #[serde(rename = "away")]
    Away,
    #[serde(rename = "hospitalized")]
    Hospitalized,
    #[serde(rename = "other")]
    Other,
}

impl ExemptionReason {
    /// Every exemption reason.
    pub const ALL: [ExemptionReason; 5] = [
        ExemptionReason::Bedridden,
        ExemptionReason::Infant,
        ExemptionReason::Away,
        ExemptionReason::Hospitalized,
        ExemptionReason::Other,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExemptionReason::Bedridden => "bedridden",
            ExemptionReason::Infant => "infant",
            ExemptionReason::Away => "away",
            ExemptionReason::Hospitalized => "hospitalized",
            ExemptionReason::Other => "other",
        }
    }
}

/// A string that names no member of a closed set. It keeps which set
/// (`kind`, e.g. `"role"`) and the rejected text.
///
/// One error type serves the five sets rather than one enum each: every
/// lookup fails in the same single way, and `kind` tells them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}; expected one of {expected}")]
pub struct UnknownVariant {
    /// The set, e.g. `"role"`.
    pub kind: &'static str,
    /// The text that was given.
    pub value: String,
    /// The wire names, comma-separated (built from the set's `ALL`).
    pub expected: String,
}

/// `Display` and `FromStr` through the wire names of `ALL`.
macro_rules! wire_text {
    ($ty:ty, $kind:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownVariant;

            /// Exact wire names only: no trimming, no case folding.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$ty>::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownVariant {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: <$ty>::ALL.map(<$ty>::as_str).join(", "),
                    })
            }
        }
    };
}

wire_text!(Colour, "colour");
wire_text!(ReasonCode, "reason code");
wire_text!(Role, "role");
wire_text!(TestResult, "result");
wire_text!(ExemptionReason, "exemption reason");
wire_text!(AuditAction, "audit action");

/// What an audit entry records (`GET /v1/audit`'s `action`). The wire names
/// are written once, here; serde, the store and the OpenAPI document all go
/// through `as_str`.
macro_rules! audit_actions {
    ($($variant:ident => $wire:literal,)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum AuditAction { $($variant,)* }

        impl AuditAction {
            /// Every action, in the contract's order.
            pub const ALL: [AuditAction; [$($wire,)*].len()] = [$(AuditAction::$variant,)*];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $(AuditAction::$variant => $wire,)* }
            }
        }
    };
}

audit_actions! {
    MissingList => "missing_list",
    Unmask => "unmask",
    Clear => "clear",
    ExemptionCreate => "exemption_create",
    ExemptionDelete => "exemption_delete",
    TokenCreate => "token_create",
    TokenRevoke => "token_revoke",
    RegisterImport => "register_import",
    HeadsImport => "heads_import",
    ResidentDelete => "resident_delete",
    ResidentView => "resident_view",
    RoundCreate => "round_create",
    RoundClose => "round_close",
    RetentionPurge => "retention_purge",
    Denied => "denied",
}

impl Serialize for AuditAction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serde's name, `as_str`, `Display` and `FromStr` agree for every variant.
    fn assert_wire_names<T>(all: &[T], expected: &[&str])
    where
        T: Copy
            + fmt::Debug
            + PartialEq
            + Serialize
            + for<'de> Deserialize<'de>
            + fmt::Display
            + FromStr,
    {
        let names: Vec<String> = all
            .iter()
            .map(|v| {
                serde_json::to_value(v)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(names, expected);
        for (v, name) in all.iter().zip(expected) {
            assert_eq!(&v.to_string(), name);
            assert_eq!(name.parse::<T>().ok(), Some(*v));
            assert_eq!(
                serde_json::from_str::<T>(&format!("\"{name}\"")).unwrap(),
                *v
            );
        }
    }

    #[test]
    fn wire_names_are_the_released_ones() {
        assert_wire_names(&Colour::ALL, &["green", "yellow", "red"]);
        assert_wire_names(
            &ReasonCode::ALL,
            &[
                "positive",
                "pool_positive",
                "missed_round",
                "repeated_misses",
                "no_recent_sample",
            ],
        );
        assert_wire_names(&Role::ALL, &["admin", "official", "scanner", "lab", "gate"]);
        assert_wire_names(&TestResult::ALL, &["negative", "positive"]);
        assert_wire_names(
            &ExemptionReason::ALL,
            &["bedridden", "infant", "away", "hospitalized", "other"],
        );
    }

    #[test]
    fn audit_actions_are_the_contracts_and_parse_back() {
        let wire: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            wire,
            [
                "missing_list",
                "unmask",
                "clear",
                "exemption_create",
                "exemption_delete",
                "token_create",
                "token_revoke",
                "register_import",
                "heads_import",
                "resident_delete",
                "resident_view",
                "round_create",
                "round_close",
                "retention_purge",
                "denied",
            ]
        );
        for a in AuditAction::ALL {
            assert_eq!(a.as_str().parse::<AuditAction>(), Ok(a));
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
        }
        let err = "look".parse::<AuditAction>().unwrap_err();
        assert!(err.expected.starts_with("missing_list, unmask, "), "{err}");
    }

    #[test]
    fn colours_order_green_before_yellow_before_red() {
        assert!(Colour::Green < Colour::Yellow && Colour::Yellow < Colour::Red);
        let worst = [ReasonCode::MissedRound, ReasonCode::Positive]
            .into_iter()
            .map(ReasonCode::colour)
            .max();
        assert_eq!(worst, Some(Colour::Red));
    }

    #[test]
    fn positive_and_repeated_misses_are_red_and_the_rest_yellow() {
        let red: Vec<ReasonCode> = ReasonCode::ALL
            .into_iter()
            .filter(|r| r.colour() == Colour::Red)
            .collect();
        assert_eq!(red, [ReasonCode::Positive, ReasonCode::RepeatedMisses]);
        assert!(ReasonCode::ALL.iter().all(|r| r.colour() != Colour::Green));
    }

    #[test]
    fn unknown_or_differently_cased_names_are_rejected() {
        for s in ["", "Admin", "ADMIN", " admin", "admin ", "root"] {
            assert!(s.parse::<Role>().is_err(), "{s:?}");
        }
        let err = "maybe".parse::<TestResult>().unwrap_err();
        assert_eq!(err.kind, "result");
        assert_eq!(err.value, "maybe");
        assert!(serde_json::from_str::<Colour>("\"Green\"").is_err());
        assert!(serde_json::from_str::<ExemptionReason>("\"hospitalised\"").is_err());
    }
}
