//! What `POST /v1/records` and `POST /v1/results` share: the batch body's
//! rules (an object holding exactly the array, 1 to [`MAX_BATCH`] items),
//! the field check of one item, the split of a batch into the items that
//! parse and those refused, and the tally of the engine's verdicts into the
//! answer's counts.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::engine::{RejectCode, Verdict};
use crate::http::error::{ApiError, Code, ItemCode};
use crate::http::openapi::build::{
    JSON_BODY_ERRORS, WRITE_ERRORS, count, enum_of, item_code_meaning, object, string,
};
use serde_json::json;

/// The most items one batch may hold.
pub const MAX_BATCH: usize = 10_000;

/// One refused item of a batch.
#[derive(Serialize, Debug)]
pub struct Rejected {
    pub index: usize,
    pub code: ItemCode,
    pub message: String,
}

impl Rejected {
    pub fn new(index: usize, code: ItemCode, message: impl Into<String>) -> Rejected {
        Rejected {
            index,
            code,
            message: message.into(),
        }
    }
}

/// The items of a batch body `{"<key>": [...]}`, under the contract's rules.
pub fn batch_items(v: Value, key: &str) -> Result<Vec<Value>, ApiError> {
    let Value::Object(mut map) = v else {
        return Err(ApiError::new(
            Code::InvalidField,
            format!("the body must be an object holding `{key}`"),
        ));
    };
    if let Some(k) = map.keys().find(|k| k.as_str() != key) {
        return Err(ApiError::new(
            Code::UnknownField,
            format!("unknown field `{k}`"),
        ));
    }
    let Some(Value::Array(items)) = map.remove(key) else {
        return Err(ApiError::new(
            Code::InvalidField,
            format!("`{key}` must be an array"),
        ));
    };
    if items.is_empty() {
        return Err(ApiError::new(Code::EmptyBatch, format!("`{key}` is empty")));
    }
    if items.len() > MAX_BATCH {
        return Err(ApiError::new(
            Code::BatchTooLarge,
            format!("at most {MAX_BATCH} items per batch, got {}", items.len()),
        ));
    }
    Ok(items)
}

/// The field check of one item: an object whose keys are all known and
/// whose required fields are strings. Unknown keys are reported first.
pub fn item_fields<'a>(
    item: &'a Value,
    required: &[&str],
    optional: &[&str],
) -> Result<&'a Map<String, Value>, (ItemCode, String)> {
    let Value::Object(m) = item else {
        return Err((ItemCode::InvalidField, "the item must be an object".into()));
    };
    if let Some(k) = m
        .keys()
        .find(|k| !required.contains(&k.as_str()) && !optional.contains(&k.as_str()))
    {
        return Err((ItemCode::UnknownField, format!("unknown field `{k}`")));
    }
    for k in required.iter().chain(optional) {
        let present = m.get(*k);
        let must = required.contains(k);
        match present {
            Some(Value::String(_)) => {}
            None if !must => {}
            _ => return Err((ItemCode::InvalidField, format!("`{k}` must be a string"))),
        }
    }
    Ok(m)
}

/// A batch's items split by their own parse: the items that parsed, each
/// one's index in the batch, and those refused.
pub struct Split<T> {
    pub good: Vec<T>,
    pub good_index: Vec<usize>,
    pub rejected: Vec<Rejected>,
}

/// Parses every item alone, in batch order; one bad item never blocks the rest.
pub fn split<T>(
    items: &[Value],
    mut parse: impl FnMut(&Value) -> Result<T, (ItemCode, String)>,
) -> Split<T> {
    let mut out = Split {
        good: Vec::with_capacity(items.len()),
        good_index: Vec::with_capacity(items.len()),
        rejected: Vec::new(),
    };
    for (i, item) in items.iter().enumerate() {
        match parse(item) {
            Ok(r) => {
                out.good.push(r);
                out.good_index.push(i);
            }
            Err((code, msg)) => out.rejected.push(Rejected::new(i, code, msg)),
        }
    }
    out
}

/// Counts a batch's verdicts — `(accepted, duplicates, flagged)` — and adds
/// the engine's rejections to `rejected` (then sorted by index). `good_index`
/// maps each verdict back to its item's index in the batch.
pub fn tally(
    verdicts: &[Verdict],
    good_index: &[usize],
    rejected: &mut Vec<Rejected>,
) -> (u64, u64, u64) {
    let (mut accepted, mut duplicates, mut flagged) = (0u64, 0u64, 0u64);
    for (v, &i) in verdicts.iter().zip(good_index) {
        match v {
            Verdict::Accepted { flag } => {
                accepted += 1;
                flagged += u64::from(*flag);
            }
            Verdict::Duplicate => duplicates += 1,
            Verdict::Rejected(c) => {
                let (code, msg) = reject(*c);
                rejected.push(Rejected::new(i, code, msg));
            }
        }
    }
    rejected.sort_by_key(|r| r.index);
    (accepted, duplicates, flagged)
}

/// The message for an engine verdict's code.
pub fn reject(code: RejectCode) -> (ItemCode, &'static str) {
    match code {
        RejectCode::InvalidTime => (
            ItemCode::InvalidTime,
            "more than 5 minutes in the future or older than 30 days",
        ),
        RejectCode::TubeFull => (
            ItemCode::TubeFull,
            "the tube already holds the pool maximum",
        ),
        RejectCode::TubeSiteConflict => (
            ItemCode::TubeSiteConflict,
            "the tube was first used at another site",
        ),
        RejectCode::ConflictingResult => (
            ItemCode::ConflictingResult,
            "the tube already has a different result",
        ),
    }
}

// ---------------------------------------------------------------------------
// This file's endpoints: the route table's entries and their OpenAPI operations.
// ---------------------------------------------------------------------------

/// The error codes of a batch upload, for its operation.
pub(crate) fn doc_errors() -> Vec<Code> {
    [
        &JSON_BODY_ERRORS[..],
        &[
            Code::UnknownField,
            Code::InvalidField,
            Code::EmptyBatch,
            Code::BatchTooLarge,
        ],
        &WRITE_ERRORS[..],
    ]
    .concat()
}

/// The rules every batch upload follows, for its operation's description.
pub(crate) fn doc_rules() -> String {
    format!(
        "The body is an object holding exactly the array: another top-level key is \
         `400 unknown_field`, a missing or non-array one `400 invalid_field`; 1 to {MAX_BATCH} items \
         (0: `400 empty_batch`, more: `413 batch_too_large`). Each item is judged alone, in batch \
         order, so one bad item never blocks the rest: refused items are listed in `rejected` \
         (sorted by `index`) and `accepted + duplicates + len(rejected)` is the batch size. The \
         answer is sent only once the accepted items are durable."
    )
}

/// The schema of a refused item, which both batch answers name.
pub(crate) fn schemas() -> Vec<(&'static str, Value)> {
    vec![(
        "Rejected",
        object(
            "One refused item of a batch.",
            &["index", "code", "message"],
            vec![
                ("index", count("The item's 0-based position in the batch.")),
                ("code", {
                    let mut v = enum_of(ItemCode::ALL.iter().map(|c| c.as_str()));
                    v["description"] = json!(
                        ItemCode::ALL
                            .iter()
                            .map(|c| format!("`{}`: {}.", c.as_str(), item_code_meaning(*c)))
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                    v
                }),
                ("message", string("For humans.")),
            ],
        ),
    )]
}
