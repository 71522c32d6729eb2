//! A person's status as a venue gate sees it: colour, reasons and the times a
//! venue applies its own recency rule to. Computed by the engine, cached by
//! `status_cache`, serialised exactly as `GET /v1/status/{person_id}` answers.

use serde::{Deserialize, Serialize};

use crate::domain::{Colour, ReasonCode, Timestamp};

/// Why a status is not green. `round_id` names the round for `missed_round`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Reason {
    pub code: ReasonCode,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub round_id: Option<String>,
}

/// The gate's answer. Holds no name, address or phone by construction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    #[serde(rename = "color")]
    pub colour: Colour,
    pub reasons: Vec<Reason>,
    pub valid_until: Option<Timestamp>,
    pub last_sample_at: Option<Timestamp>,
    pub last_negative_at: Option<Timestamp>,
}

impl Status {
    /// Builds a status from its reasons: red if any red reason, else yellow if
    /// any reason, else green. Reasons are sorted so equal states compare equal.
    pub fn from_reasons(
        mut reasons: Vec<Reason>,
        valid_until: Option<Timestamp>,
        last_sample_at: Option<Timestamp>,
        last_negative_at: Option<Timestamp>,
    ) -> Status {
        reasons.sort();
        reasons.dedup();
        let colour = reasons
            .iter()
            .map(|r| r.code.colour())
            .max()
            .unwrap_or(Colour::Green);
        Status {
            colour,
            reasons,
            valid_until,
            last_sample_at,
            last_negative_at,
        }
    }

    /// The status of a valid ID the engine knows nothing about.
    pub fn green() -> Status {
        Status::from_reasons(Vec::new(), None, None, None)
    }
}
